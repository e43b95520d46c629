// The List filter parser and compiler, order_by parsing, keyset positions
// and the page tokens that carry them.
#include "services/crm/filter.h"

#include <random>

#include "absl/strings/escaping.h"
#include "common/page_token.h"
#include "gtest/gtest.h"
#include "services/crm/list_query.h"

namespace crm::data {
namespace {

const ModuleSchema& Leads() { return *SchemaForModule(crm::auth::v1::MODULE_LEAD); }
const ModuleSchema& Activities() { return *SchemaForModule(crm::auth::v1::MODULE_ACTIVITY); }
const ModuleSchema& Messages() { return *SchemaForModule(crm::auth::v1::MODULE_MESSAGE); }

// The parsed tree of `filter` on `schema`, or the error message.
std::string Parsed(const ModuleSchema& schema, absl::string_view filter) {
  absl::StatusOr<std::optional<FilterNode>> node = ParseFilter(schema, filter);
  if (!node.ok()) return absl::StrCat("error: ", node.status().message());
  if (!node->has_value()) return "none";
  return FilterToString(**node);
}

absl::Status ParseStatus(const ModuleSchema& schema, absl::string_view filter) {
  return ParseFilter(schema, filter).status();
}

SqlCondition Compiled(const ModuleSchema& schema, absl::string_view filter) {
  absl::StatusOr<std::optional<FilterNode>> node = ParseFilter(schema, filter);
  EXPECT_TRUE(node.ok()) << filter << ": " << node.status();
  if (!node.ok()) return {};
  EXPECT_TRUE(node->has_value()) << filter;
  if (!node->has_value()) return {};
  return CompileFilter(**node);
}

TEST(FilterParser, EmptyFilterIsNone) {
  EXPECT_EQ("none", Parsed(Leads(), ""));
  EXPECT_EQ("none", Parsed(Leads(), " \t\n"));
}

TEST(FilterParser, OrBindsTighterThanAnd) {
  EXPECT_EQ("(AND (= status 1) (OR (= last_name \"a\") (= last_name \"b\")))",
            Parsed(Leads(), "status = LEAD_STATUS_NEW AND last_name = \"a\" OR last_name = \"b\""));
  EXPECT_EQ("(AND (OR (= status 1) (= status 2)) (= last_name \"a\"))",
            Parsed(Leads(), "status = LEAD_STATUS_NEW OR status = LEAD_STATUS_CONTACTED AND last_name = 'a'"));
}

TEST(FilterParser, ParenthesesGroup) {
  EXPECT_EQ("(OR (AND (= status 1) (= last_name \"a\")) (= last_name \"b\"))",
            Parsed(Leads(), "(status = LEAD_STATUS_NEW AND last_name = \"a\") OR last_name = \"b\""));
  EXPECT_EQ("(= last_name \"a\")", Parsed(Leads(), "((last_name=\"a\"))"));
}

TEST(FilterParser, NotAndMinusNegate) {
  EXPECT_EQ("(NOT (= status 5))", Parsed(Leads(), "NOT status = LEAD_STATUS_CONVERTED"));
  EXPECT_EQ("(NOT (= status 5))", Parsed(Leads(), "-status = LEAD_STATUS_CONVERTED"));
  EXPECT_EQ("(AND (NOT (OR (= status 1) (= status 2))) (is_set email))",
            Parsed(Leads(), "NOT (status = LEAD_STATUS_NEW OR status = LEAD_STATUS_CONTACTED) AND email:*"));
}

TEST(FilterParser, ComparatorsParse) {
  EXPECT_EQ("(AND (!= title \"x\") (< company \"m\") (<= company \"n\") (> email \"a\") (>= email \"b\"))",
            Parsed(Leads(), "title != \"x\" AND company < \"m\" AND company <= \"n\" AND email > \"a\" AND "
                            "email >= \"b\""));
}

TEST(FilterParser, LiteralsConvertToColumnValues) {
  EXPECT_EQ("(>= create_time \"2025-01-31 08:00:00.000000\")",
            Parsed(Leads(), "create_time >= \"2025-01-31T08:00:00Z\""));
  EXPECT_EQ("(< update_time \"2025-01-31 07:00:00.250000\")",
            Parsed(Leads(), "update_time < '2025-01-31T08:00:00.25+01:00'"));
  EXPECT_EQ("(AND (> create_time \"1000-01-01 00:00:00.000000\") (<= create_time \"9999-12-31 23:59:59.999999\"))",
            Parsed(Leads(), "create_time > \"1000-01-01T00:00:00Z\" AND create_time <= \"9999-12-31T23:59:59.999999Z\""))
      << "the ends of the DATETIME range";
  EXPECT_EQ("(= id 42)", Parsed(Leads(), "id = 42"));
  EXPECT_EQ("(= converted_account_id 7)", Parsed(Leads(), "converted_account_id = \"7\""));
  EXPECT_EQ("(= related_module 1)", Parsed(Activities(), "related_module = MODULE_LEAD"));
  EXPECT_EQ("(= type 2)", Parsed(Activities(), "type = \"ACTIVITY_TYPE_CALL\""));

  const ModuleSchema& opportunities = *SchemaForModule(crm::auth::v1::MODULE_OPPORTUNITY);
  EXPECT_EQ("(AND (< amount_micros -2500000) (= close_date \"2026-02-28\"))",
            Parsed(opportunities, "amount_micros < -2500000 AND close_date = \"2026-02-28\""));
}

TEST(FilterParser, TextMatchOperators) {
  EXPECT_EQ("(starts_with last_name \"Love\")", Parsed(Leads(), "last_name:\"Love*\""));
  EXPECT_EQ("(contains last_name \"ove\")", Parsed(Leads(), "last_name:\"ove\""));
  EXPECT_EQ("(contains last_name \"a*\")", Parsed(Leads(), "last_name:\"a\\*\"")) << "escaped star is literal";
  EXPECT_EQ("(contains last_name \"a\\\"b\")", Parsed(Leads(), "last_name:\"a\\\"b\""));
  EXPECT_EQ("(is_set due_time)", Parsed(Activities(), "due_time:*"));
}

TEST(FilterParser, ErrorsNamePosition) {
  struct Case {
    const char* filter;
    const char* message;
  };
  const Case cases[] = {
      {"nope = 1", "unknown field \"nope\"; the fields Lead filters accept are id, first_name"},
      {"last_name = \"a\" AND nope = 1", "at position 21"},
      {"last_name", "expected =, !=, <, <=, >, >= or : after last_name at position 10"},
      {"last_name =", "last_name takes a quoted string at position 12"},
      {"last_name = \"abc", "unterminated string at position 13"},
      {"last_name ! \"a\"", "expected != (use NOT to negate) at position 11"},
      {"last_name = \"a\" and title = \"b\"", "expected AND, OR or the end of the filter"},
      {"last_name = \"a\" title = \"b\"", "at position 17"},
      {"(last_name = \"a\"", "expected ')' at position 17"},
      {"last_name = \"a\")", "at position 16"},
      {"status = \"LEAD_STATUS_NOPE\"", "status takes a LeadStatus value name"},
      {"status = 1", "status takes a LeadStatus value name"},
      {"status:\"NEW\"", "':' with a value applies to text fields only"},
      {"create_time > \"yesterday\"", "create_time takes an RFC 3339 time"},
      {"create_time > \"2025-01-31T08:00:00.0000001Z\"", "at most 6 fraction digits"},
      {"create_time > \"0999-12-31T23:59:59Z\"", "between years 1000 and 9999"},
      {"id = \"abc\"", "id takes a record id"},
      {"last_name = 'a' # comment", "unexpected character '#' at position 17"},
      {"AND last_name = 'a'", "expected a field name at position 1"},
      {"NOT NOT last_name = 'a'", "expected a field name at position 5"},
      {"last_name = 12abc", "malformed number at position 13"},
      {"last_name.first = 'a'", "unexpected character '.' at position 10"},
  };
  for (const Case& c : cases) {
    absl::Status status = ParseStatus(Leads(), c.filter);
    EXPECT_EQ(absl::StatusCode::kInvalidArgument, status.code()) << c.filter;
    EXPECT_NE(status.message().find(c.message), absl::string_view::npos) << c.filter << " -> " << status.message();
  }
}

TEST(FilterParser, UnfilterableFieldRejected) {
  absl::Status status = ParseStatus(Messages(), "body:\"secret\"");
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, status.code());
  EXPECT_NE(status.message().find("unknown field \"body\""), absl::string_view::npos) << status.message();
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, ParseStatus(Leads(), "etag = \"1\"").code());
}

TEST(FilterParser, PositionCountsCodePoints) {
  absl::Status status = ParseStatus(Leads(), "last_name = \"\xC3\xBC\xC3\xBC\" AND nope = 1");
  EXPECT_NE(status.message().find("at position 22"), absl::string_view::npos) << status.message();
}

TEST(FilterParser, LengthBounded) {
  std::string filter = "last_name = \"" + std::string(kMaxFilterBytes, 'a') + "\"";
  absl::Status status = ParseStatus(Leads(), filter);
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, status.code());
  EXPECT_NE(status.message().find("maximum is 2048"), absl::string_view::npos) << status.message();
}

TEST(FilterParser, DepthBounded) {
  auto nested = [](int levels) {
    return std::string(levels, '(') + "last_name = \"a\"" + std::string(levels, ')');
  };
  EXPECT_TRUE(ParseStatus(Leads(), nested(kMaxFilterDepth)).ok());
  absl::Status status = ParseStatus(Leads(), nested(kMaxFilterDepth + 1));
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, status.code());
  EXPECT_NE(status.message().find("deeper than 8 levels at position 9"), absl::string_view::npos)
      << status.message();
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            ParseStatus(Leads(), std::string(kMaxFilterDepth, '(') + "NOT last_name = 'a'" +
                                     std::string(kMaxFilterDepth, ')'))
                .code())
      << "NOT counts as a level";
}

TEST(FilterParser, ComparisonCountBounded) {
  std::string filter = "last_name = 'a'";
  for (int i = 1; i < kMaxFilterComparisons; ++i) filter += " OR last_name = 'a'";
  EXPECT_TRUE(ParseStatus(Leads(), filter).ok());
  filter += " OR last_name = 'a'";
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, ParseStatus(Leads(), filter).code());
}

// Random byte strings and random recombinations of filter tokens either
// parse or fail with INVALID_ARGUMENT, and never crash.
TEST(FilterParser, FuzzedInputOnlyOkOrInvalid) {
  std::mt19937 random(20250131);
  const std::vector<std::string> pieces = {
      "last_name", "status", "create_time", "id", "due_time", " = ", "!=", "<", "<=", ">", ">=", ":", "*", "(", ")",
      " AND ", " OR ", "NOT ", "-", "\"a\"", "'b*'", "\"\\", "42", "-7", "LEAD_STATUS_NEW", "\"2025-01-01T00:00:00Z\"",
      " ", "\xC3\xBC", "\x01", "\"", "'"};
  int accepted = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string filter;
    int length = static_cast<int>(random() % 12);
    for (int i = 0; i < length; ++i) {
      if (round % 2 == 0) {
        filter += pieces[random() % pieces.size()];
      } else {
        filter.push_back(static_cast<char>(random() % 256));
      }
    }
    absl::StatusOr<std::optional<FilterNode>> node = ParseFilter(Leads(), filter);
    if (node.ok()) {
      ++accepted;
      if (node->has_value()) {
        EXPECT_FALSE(CompileFilter(**node).sql.empty());
      }
    } else {
      EXPECT_EQ(absl::StatusCode::kInvalidArgument, node.status().code()) << absl::CEscape(filter);
    }
  }
  EXPECT_GT(accepted, 100) << "the fuzzer should reach valid filters too";
}

TEST(FilterCompiler, ValuesAreParameters) {
  SqlCondition condition = Compiled(Leads(), "last_name = \"x' OR 1=1 --\" AND status != LEAD_STATUS_NEW");
  EXPECT_EQ("(last_name = ? AND status <> ?)", condition.sql);
  ASSERT_EQ(2u, condition.params.size());
  EXPECT_EQ(SqlValue(std::string("x' OR 1=1 --")), condition.params[0]);
  EXPECT_EQ(SqlValue(int64_t{1}), condition.params[1]);
}

TEST(FilterCompiler, NullableColumnsStayTwoValued) {
  EXPECT_EQ("(due_time IS NOT NULL AND due_time < ?)", Compiled(Activities(), "due_time < \"2025-01-01T00:00:00Z\"").sql);
  EXPECT_EQ("(related_id IS NULL OR related_id <> ?)", Compiled(Activities(), "related_id != 5").sql);
  EXPECT_EQ("NOT ((related_id IS NOT NULL AND related_id = ?))", Compiled(Activities(), "NOT related_id = 5").sql);
  EXPECT_EQ("due_time IS NOT NULL", Compiled(Activities(), "due_time:*").sql);
  EXPECT_EQ("status <> 0", Compiled(Activities(), "status:*").sql);
  EXPECT_EQ("subject <> ''", Compiled(Activities(), "subject:*").sql);
  EXPECT_EQ("id = ?", Compiled(Activities(), "id = 3").sql) << "id is never NULL";
}

TEST(FilterCompiler, LikeWildcardsEscaped) {
  SqlCondition prefix = Compiled(Leads(), "last_name:\"50%_off!*\"");
  EXPECT_EQ("last_name LIKE ? ESCAPE '!'", prefix.sql);
  EXPECT_EQ(SqlValue(std::string("50!%!_off!!%")), prefix.params.at(0));
  SqlCondition contains = Compiled(Leads(), "company:\"a_b\"");
  EXPECT_EQ(SqlValue(std::string("%a!_b%")), contains.params.at(0));
}

std::string OrderOf(const ModuleSchema& schema, absl::string_view order_by) {
  absl::StatusOr<std::vector<SortKey>> keys = ParseOrderBy(schema, order_by);
  if (!keys.ok()) return absl::StrCat("error: ", keys.status().message());
  return OrderByClause(*keys);
}

TEST(OrderBy, IdEndsEveryOrder) {
  EXPECT_EQ("id ASC", OrderOf(Leads(), ""));
  EXPECT_EQ("id DESC", OrderOf(Leads(), "id desc"));
  EXPECT_EQ("last_name DESC, id DESC", OrderOf(Leads(), "last_name desc"));
  EXPECT_EQ("last_name ASC, create_time DESC, id DESC", OrderOf(Leads(), " last_name ,create_time  desc"));
  EXPECT_EQ("status DESC, email ASC, id ASC", OrderOf(Leads(), "status desc, email asc"));
  EXPECT_EQ("status ASC, id DESC", OrderOf(Leads(), "status, id desc"));
}

TEST(OrderBy, ErrorsNamePosition) {
  struct Case {
    const char* order_by;
    const char* message;
  };
  const Case cases[] = {
      {"nope", "unknown field \"nope\"; the fields Lead sorts by are id, last_name, email"},
      {"last_name, first_name", "unknown field \"first_name\"" /* filterable, not sortable */},
      {"last_name, first_name", "at position 12"},
      {"last_name up", "expected \"desc\", \"asc\" or \",\" after a field name at position 11"},
      {"last_name desc desc", "at position 16"},
      {"last_name DESC", "at position 11"},
      {"last_name,", "expected a field name at position 11"},
      {"last_name, last_name desc", "repeated field at position 12"},
      {"id, last_name", "no field may follow id"},
      {"last_name, email, company, status", "more than 3 fields at position 28"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<SortKey>> keys = ParseOrderBy(Leads(), c.order_by);
    EXPECT_EQ(absl::StatusCode::kInvalidArgument, keys.status().code()) << c.order_by;
    EXPECT_NE(keys.status().message().find(c.message), absl::string_view::npos)
        << c.order_by << " -> " << keys.status().message();
  }
  EXPECT_TRUE(ParseOrderBy(Leads(), "last_name, email, company, id desc").ok()) << "id does not count";
}

TEST(KeysetPosition, MixedDirectionsExpand) {
  std::vector<SortKey> keys = *ParseOrderBy(Leads(), "status desc, last_name");
  SqlCondition after = AfterPosition(keys, {int64_t{2}, std::string("Lovelace"), uint64_t{9}});
  EXPECT_EQ("(status < ? OR (status = ? AND (last_name > ? OR (last_name = ? AND id > ?))))", after.sql);
  ASSERT_EQ(5u, after.params.size());
  EXPECT_EQ(SqlValue(uint64_t{9}), after.params[4]);
}

TEST(KeysetPosition, NullsSortFirst) {
  std::vector<SortKey> ascending = *ParseOrderBy(Activities(), "due_time");
  EXPECT_EQ("(due_time IS NOT NULL OR (due_time IS NULL AND id > ?))",
            AfterPosition(ascending, {std::monostate(), uint64_t{4}}).sql);
  EXPECT_EQ("(due_time > ? OR (due_time = ? AND id > ?))",
            AfterPosition(ascending, {std::string("2025-01-01 00:00:00.000000"), uint64_t{4}}).sql);

  std::vector<SortKey> descending = *ParseOrderBy(Activities(), "due_time desc");
  EXPECT_EQ("(due_time IS NULL AND id < ?)", AfterPosition(descending, {std::monostate(), uint64_t{4}}).sql);
  EXPECT_EQ("((due_time < ? OR due_time IS NULL) OR (due_time = ? AND id < ?))",
            AfterPosition(descending, {std::string("2025-01-01 00:00:00.000000"), uint64_t{4}}).sql);
}

TEST(KeysetPosition, RoundTripsAndChecksKinds) {
  std::vector<SortKey> keys = *ParseOrderBy(Activities(), "due_time desc, status");
  std::vector<SqlValue> position = {std::monostate(), int64_t{-3}, uint64_t{77}};
  absl::StatusOr<std::vector<SqlValue>> decoded = DecodePosition(keys, EncodePosition(position));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(position, *decoded);

  std::vector<SortKey> text_keys = *ParseOrderBy(Leads(), "last_name");
  EXPECT_FALSE(DecodePosition(text_keys, EncodePosition(position)).ok()) << "wrong count";
  EXPECT_FALSE(DecodePosition(text_keys, EncodePosition({int64_t{1}, uint64_t{2}})).ok()) << "wrong kind";
  EXPECT_FALSE(DecodePosition(text_keys, EncodePosition({std::monostate(), uint64_t{2}})).ok())
      << "last_name is never NULL";
  std::string truncated = EncodePosition({std::string("Lovelace"), uint64_t{2}});
  truncated.pop_back();
  EXPECT_FALSE(DecodePosition(text_keys, truncated).ok());
}

TEST(PageTokenPosition, RoundTripAndBinding) {
  PageTokenCodec codec(std::string(32, 'k'));
  std::string position("\x00\x01 bytes", 8);
  std::string token = codec.EncodePosition("ListLeads|organization=1", position);
  absl::StatusOr<std::string> decoded = codec.DecodePosition("ListLeads|organization=1", token);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(position, *decoded);

  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            codec.DecodePosition("ListLeads|organization=2", token).status().code());
  EXPECT_FALSE(PageTokenCodec(std::string(32, 'x')).DecodePosition("ListLeads|organization=1", token).ok());
  EXPECT_FALSE(codec.DecodePosition("ListLeads|organization=1", codec.Encode("ListLeads|organization=1", 5)).ok())
      << "an id-only token is not a position token";
  for (size_t i = 0; i < token.size(); ++i) {
    std::string tampered = token;
    tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(codec.DecodePosition("ListLeads|organization=1", tampered).ok()) << "position " << i;
  }
  EXPECT_FALSE(codec.DecodePosition("ListLeads|organization=1", std::string(10000, 'A')).ok());
}

}  // namespace
}  // namespace crm::data
