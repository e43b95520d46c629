// Fuzzes the List filter parser and compiler in services/crm/filter.h.
//
// The first input byte picks the module, the rest is the filter text.
// Properties checked on every input:
//   - A rejection is INVALID_ARGUMENT and names a position inside the
//     filter or just after its end.
//   - An accepted filter stays within the documented bounds: at most
//     kMaxFilterComparisons comparisons, and every AND and OR has two or
//     more operands.
//   - The compiled SQL has exactly one bound parameter per placeholder, no
//     parameter is NULL, and the SQL contains nothing but the module's
//     field names, SQL keywords, operators and two fixed literals, so no
//     filter text ever reaches it.
//   - A parsed filter re-formats identically: writing the tree back as
//     filter text and parsing that again gives the same tree.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "services/crm/filter.h"
#include "tests/fuzz/fuzz_check.h"

namespace crm::data {
namespace {

void CheckErrorPosition(const absl::Status& status, absl::string_view filter) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, status.ToString());
  if (filter.size() > kMaxFilterBytes) return;  // The length error names no position.
  absl::string_view message = status.message();
  size_t at = message.rfind(" at position ");
  FUZZ_CHECK(at != absl::string_view::npos, absl::StrCat("the error names no position: ", message));
  long position = 0;
  FUZZ_CHECK(absl::SimpleAtoi(message.substr(at + 13), &position), absl::StrCat("bad position in: ", message));
  FUZZ_CHECK(position >= 1 && position <= static_cast<long>(filter.size()) + 1,
             absl::StrCat("position ", position, " is outside a filter of ", filter.size(), " bytes"));
}

// Counts comparisons and checks the shape of every node.
int CheckTree(const FilterNode& node) {
  switch (node.type) {
    case FilterNode::Type::kComparison:
      FUZZ_CHECK(node.column != nullptr && node.column->rules.filterable(), "a comparison on an unfilterable field");
      FUZZ_CHECK(node.children.empty(), "a comparison with operands");
      return 1;
    case FilterNode::Type::kNot:
      FUZZ_CHECK(node.children.size() == 1, "NOT without exactly one operand");
      return CheckTree(node.children.front());
    case FilterNode::Type::kAnd:
    case FilterNode::Type::kOr: {
      FUZZ_CHECK(node.children.size() >= 2, "AND or OR with fewer than two operands");
      int comparisons = 0;
      for (const FilterNode& child : node.children) comparisons += CheckTree(child);
      return comparisons;
    }
  }
  FUZZ_CHECK(false, "unknown node type");
  return 0;
}

// Splits compiled SQL into words and symbols and checks each against what
// the compiler may write.
void CheckSql(const ModuleSchema& schema, const SqlCondition& condition) {
  absl::flat_hash_set<std::string> allowed = {"AND", "OR", "NOT", "IS", "NULL", "LIKE", "ESCAPE", "'!'", "''", "0",
                                              "(",   ")",  "?",   "=",  "<>",   "<",    "<=",     ">",   ">="};
  for (const ColumnField& column : schema.queryable) allowed.insert(column.field->name());

  size_t placeholders = 0;
  int open_parentheses = 0;
  const std::string& sql = condition.sql;
  size_t i = 0;
  while (i < sql.size()) {
    if (sql[i] == ' ') {
      ++i;
      continue;
    }
    size_t start = i;
    if (absl::ascii_isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_') {
      while (i < sql.size() && (absl::ascii_isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_')) ++i;
    } else if (sql[i] == '\'') {
      i = sql.find('\'', i + 1);
      FUZZ_CHECK(i != std::string::npos, absl::StrCat("unterminated literal in SQL: ", sql));
      ++i;
    } else if (sql.compare(i, 2, "<>") == 0 || sql.compare(i, 2, "<=") == 0 || sql.compare(i, 2, ">=") == 0) {
      i += 2;
    } else {
      ++i;
    }
    std::string word = sql.substr(start, i - start);
    FUZZ_CHECK(allowed.contains(word), absl::StrCat("unexpected \"", word, "\" in SQL: ", sql));
    if (word == "?") ++placeholders;
    if (word == "(") ++open_parentheses;
    if (word == ")") --open_parentheses;
    FUZZ_CHECK(open_parentheses >= 0, absl::StrCat("unbalanced parentheses in SQL: ", sql));
  }
  FUZZ_CHECK(open_parentheses == 0, absl::StrCat("unbalanced parentheses in SQL: ", sql));
  FUZZ_CHECK(placeholders == condition.params.size(),
             absl::StrCat(placeholders, " placeholders but ", condition.params.size(), " parameters in: ", sql));
  for (const SqlValue& param : condition.params) {
    FUZZ_CHECK(!std::holds_alternative<std::monostate>(param), "a NULL parameter");
  }
}

// A double-quoted filter string whose parse gives back `text`.
std::string Quote(absl::string_view text, bool escape_trailing_star) {
  std::string quoted = "\"";
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool last = i + 1 == text.size();
    if (c == '"' || c == '\\' || (c == '*' && last && escape_trailing_star)) quoted.push_back('\\');
    quoted.push_back(c);
  }
  return quoted + "\"";
}

std::string FormatValue(const ColumnField& column, const SqlValue& value) {
  switch (column.kind) {
    case FieldKind::kText:
    case FieldKind::kDate:
      return Quote(std::get<std::string>(value), false);
    case FieldKind::kRecordId:
      return absl::StrCat(std::get<uint64_t>(value));
    case FieldKind::kInt64:
      return absl::StrCat(std::get<int64_t>(value));
    case FieldKind::kEnum: {
      const google::protobuf::EnumValueDescriptor* named =
          column.field->enum_type()->FindValueByNumber(static_cast<int>(std::get<int64_t>(value)));
      FUZZ_CHECK(named != nullptr, "an enum comparison with an undefined number");
      return named->name();
    }
    case FieldKind::kTimestamp: {
      // The compiled value is "YYYY-MM-DD HH:MM:SS.ffffff" in UTC.
      std::string time = std::get<std::string>(value);
      FUZZ_CHECK(time.size() == 26 && time[10] == ' ', absl::StrCat("unexpected SQL time ", time));
      time[10] = 'T';
      return Quote(time + "Z", false);
    }
  }
  FUZZ_CHECK(false, "unknown field kind");
  return "";
}

absl::string_view ComparatorText(FilterOperator op) {
  switch (op) {
    case FilterOperator::kEqual:
      return "=";
    case FilterOperator::kNotEqual:
      return "!=";
    case FilterOperator::kLess:
      return "<";
    case FilterOperator::kLessOrEqual:
      return "<=";
    case FilterOperator::kGreater:
      return ">";
    case FilterOperator::kGreaterOrEqual:
      return ">=";
    default:
      return "";
  }
}

// Writes `node` as filter text, with parentheses only where the grammar
// needs them, so the text nests no deeper than the filter it came from.
std::string Format(const FilterNode& node) {
  auto operand = [](const FilterNode& child, bool needs_parentheses) {
    std::string text = Format(child);
    return needs_parentheses ? absl::StrCat("(", text, ")") : text;
  };
  switch (node.type) {
    case FilterNode::Type::kComparison: {
      const std::string& name = node.column->field->name();
      switch (node.op) {
        case FilterOperator::kIsSet:
          return absl::StrCat(name, ":*");
        case FilterOperator::kContains:
          return absl::StrCat(name, ":", Quote(std::get<std::string>(node.value), true));
        case FilterOperator::kStartsWith:
          return absl::StrCat(name, ":", Quote(std::get<std::string>(node.value) + "*", false));
        default:
          return absl::StrCat(name, " ", ComparatorText(node.op), " ", FormatValue(*node.column, node.value));
      }
    }
    case FilterNode::Type::kNot:
      return absl::StrCat(
          "NOT ", operand(node.children.front(), node.children.front().type != FilterNode::Type::kComparison));
    case FilterNode::Type::kAnd:
    case FilterNode::Type::kOr: {
      bool is_and = node.type == FilterNode::Type::kAnd;
      std::vector<std::string> parts;
      for (const FilterNode& child : node.children) {
        // OR binds tighter than AND, so only an OR inside an AND goes bare.
        bool bare = child.type == FilterNode::Type::kComparison || child.type == FilterNode::Type::kNot ||
                    (is_and && child.type == FilterNode::Type::kOr);
        parts.push_back(operand(child, !bare));
      }
      return absl::StrJoin(parts, is_and ? " AND " : " OR ");
    }
  }
  return "";
}

void CheckReformat(const ModuleSchema& schema, const FilterNode& node) {
  std::string text = Format(node);
  if (text.size() > kMaxFilterBytes) return;  // Times grow to 27 characters.
  absl::StatusOr<std::optional<FilterNode>> again = ParseFilter(schema, text);
  FUZZ_CHECK(again.ok(), absl::StrCat("the re-formatted filter ", text, " fails: ", again.status().message()));
  FUZZ_CHECK(again->has_value(), absl::StrCat("the re-formatted filter ", text, " is empty"));
  FUZZ_CHECK(FilterToString(**again) == FilterToString(node),
             absl::StrCat("re-formatting changed the filter: ", FilterToString(node), " became ",
                          FilterToString(**again), " through ", text));
}

}  // namespace
}  // namespace crm::data

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crm::data;
  if (size == 0) return 0;
  const std::vector<ModuleSchema>& schemas = AllModuleSchemas();
  const ModuleSchema& schema = schemas[data[0] % schemas.size()];
  absl::string_view filter(reinterpret_cast<const char*>(data) + 1, size - 1);

  absl::StatusOr<std::optional<FilterNode>> node = ParseFilter(schema, filter);
  if (!node.ok()) {
    CheckErrorPosition(node.status(), filter);
    return 0;
  }
  if (!node->has_value()) return 0;
  FUZZ_CHECK(CheckTree(**node) <= kMaxFilterComparisons, "more comparisons than the maximum");
  CheckSql(schema, CompileFilter(**node));
  CheckReformat(schema, **node);
  return 0;
}
