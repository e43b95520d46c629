#include "services/crm/filter.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/error_details.h"
#include "common/text.h"

namespace crm::data {
namespace {

enum class TokenType { kIdentifier, kString, kNumber, kComparator, kColon, kStar, kMinus, kLeftParen, kRightParen, kEnd };

struct Token {
  TokenType type;
  // Byte offset of the token's first character in the filter.
  size_t offset;
  // The identifier, number or comparator as written; a string's unescaped
  // contents.
  std::string text;
  // For strings: whether the last character came from an escape, so that
  // "abc\*" is a literal star rather than a prefix match.
  bool escaped_last = false;
};

bool IsIdentifierStart(char c) { return absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsIdentifierChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

class FilterParser {
 public:
  FilterParser(const ModuleSchema& schema, absl::string_view filter) : schema_(schema), filter_(filter) {}

  absl::StatusOr<std::optional<FilterNode>> Parse() {
    if (filter_.size() > kMaxFilterBytes) {
      return InvalidFieldError(
          "filter", absl::StrCat("filter is ", filter_.size(), " bytes long; the maximum is ", kMaxFilterBytes),
          ErrorReason::kInvalidFilter);
    }
    if (absl::Status status = Tokenize(); !status.ok()) return status;
    if (tokens_.front().type == TokenType::kEnd) return std::nullopt;
    absl::StatusOr<FilterNode> root = ParseExpression(0);
    if (!root.ok()) return root.status();
    if (Peek().type != TokenType::kEnd) {
      return ErrorAt(Peek().offset, "expected AND, OR or the end of the filter (AND, OR and NOT are upper case)");
    }
    return std::optional<FilterNode>(*std::move(root));
  }

 private:
  // INVALID_FILTER whose metadata `position` is the 1-based character
  // position of the problem, as in the message.
  absl::Status ErrorAt(size_t offset, absl::string_view problem) const {
    long position = CountUtf8CodePoints(filter_.substr(0, offset));
    if (position < 0) position = static_cast<long>(offset);
    std::string message = absl::StrCat("filter: ", problem, " at position ", position + 1);
    return InvalidFieldError("filter", message, ErrorReason::kInvalidFilter,
                             {{"position", absl::StrCat(position + 1)}});
  }

  absl::Status Tokenize() {
    size_t i = 0;
    while (i < filter_.size()) {
      char c = filter_[i];
      if (IsBlank(c)) {
        ++i;
        continue;
      }
      size_t start = i;
      if (c == '(' || c == ')' || c == ':' || c == '*') {
        TokenType type = c == '(' ? TokenType::kLeftParen
                         : c == ')' ? TokenType::kRightParen
                         : c == ':' ? TokenType::kColon
                                    : TokenType::kStar;
        tokens_.push_back(Token{type, start, std::string(1, c)});
        ++i;
      } else if (c == '=' || c == '<' || c == '>' || c == '!') {
        bool with_equals = i + 1 < filter_.size() && filter_[i + 1] == '=';
        if (c == '!' && !with_equals) return ErrorAt(start, "expected != (use NOT to negate)");
        size_t length = (with_equals && c != '=') ? 2 : 1;
        tokens_.push_back(Token{TokenType::kComparator, start, std::string(filter_.substr(i, length))});
        i += length;
      } else if (c == '"' || c == '\'') {
        Token token{TokenType::kString, start, ""};
        ++i;
        bool closed = false;
        while (i < filter_.size()) {
          char next = filter_[i++];
          if (next == c) {
            closed = true;
            break;
          }
          token.escaped_last = next == '\\';
          if (token.escaped_last) {
            if (i == filter_.size()) break;
            next = filter_[i++];
          }
          token.text.push_back(next);
        }
        if (!closed) return ErrorAt(start, "unterminated string");
        tokens_.push_back(std::move(token));
      } else if (IsDigit(c) || (c == '-' && i + 1 < filter_.size() && IsDigit(filter_[i + 1]))) {
        ++i;
        while (i < filter_.size() && IsDigit(filter_[i])) ++i;
        if (i < filter_.size() && IsIdentifierChar(filter_[i])) return ErrorAt(start, "malformed number");
        tokens_.push_back(Token{TokenType::kNumber, start, std::string(filter_.substr(start, i - start))});
      } else if (c == '-') {
        tokens_.push_back(Token{TokenType::kMinus, start, "-"});
        ++i;
      } else if (IsIdentifierStart(c)) {
        while (i < filter_.size() && IsIdentifierChar(filter_[i])) ++i;
        tokens_.push_back(Token{TokenType::kIdentifier, start, std::string(filter_.substr(start, i - start))});
      } else if (absl::ascii_isprint(static_cast<unsigned char>(c))) {
        return ErrorAt(start, absl::StrCat("unexpected character '", std::string(1, c), "'"));
      } else {
        return ErrorAt(start, "unexpected character");
      }
    }
    tokens_.push_back(Token{TokenType::kEnd, filter_.size(), ""});
    return absl::OkStatus();
  }

  const Token& Peek() const { return tokens_[next_]; }
  const Token& Take() { return tokens_[next_ == tokens_.size() - 1 ? next_ : next_++]; }
  bool PeekKeyword(absl::string_view keyword) const {
    return Peek().type == TokenType::kIdentifier && Peek().text == keyword;
  }

  absl::Status CheckDepth(int depth, size_t offset) const {
    if (depth > kMaxFilterDepth) {
      return ErrorAt(offset, absl::StrCat("parentheses and NOT nest deeper than ", kMaxFilterDepth, " levels"));
    }
    return absl::OkStatus();
  }

  // Parses operands separated by `keyword` with `parse_operand`, folding
  // two or more into one node of `type`.
  template <typename ParseOperand>
  absl::StatusOr<FilterNode> ParseChain(absl::string_view keyword, FilterNode::Type type, int depth,
                                        ParseOperand parse_operand) {
    absl::StatusOr<FilterNode> first = parse_operand(depth);
    if (!first.ok() || !PeekKeyword(keyword)) return first;
    FilterNode chain;
    chain.type = type;
    chain.children.push_back(*std::move(first));
    while (PeekKeyword(keyword)) {
      Take();
      absl::StatusOr<FilterNode> operand = parse_operand(depth);
      if (!operand.ok()) return operand.status();
      chain.children.push_back(*std::move(operand));
    }
    return chain;
  }

  absl::StatusOr<FilterNode> ParseExpression(int depth) {
    return ParseChain("AND", FilterNode::Type::kAnd, depth, [this](int d) { return ParseFactor(d); });
  }

  absl::StatusOr<FilterNode> ParseFactor(int depth) {
    return ParseChain("OR", FilterNode::Type::kOr, depth, [this](int d) { return ParseTerm(d); });
  }

  absl::StatusOr<FilterNode> ParseTerm(int depth) {
    if (!PeekKeyword("NOT") && Peek().type != TokenType::kMinus) return ParseSimple(depth);
    const Token& negation = Take();
    if (absl::Status status = CheckDepth(depth + 1, negation.offset); !status.ok()) return status;
    absl::StatusOr<FilterNode> operand = ParseSimple(depth + 1);
    if (!operand.ok()) return operand.status();
    FilterNode node;
    node.type = FilterNode::Type::kNot;
    node.children.push_back(*std::move(operand));
    return node;
  }

  absl::StatusOr<FilterNode> ParseSimple(int depth) {
    if (Peek().type != TokenType::kLeftParen) return ParseComparison();
    const Token& open = Take();
    if (absl::Status status = CheckDepth(depth + 1, open.offset); !status.ok()) return status;
    absl::StatusOr<FilterNode> inner = ParseExpression(depth + 1);
    if (!inner.ok()) return inner.status();
    if (Peek().type != TokenType::kRightParen) return ErrorAt(Peek().offset, "expected ')'");
    Take();
    return inner;
  }

  absl::StatusOr<FilterNode> ParseComparison() {
    const Token& name = Take();
    bool is_keyword = name.text == "AND" || name.text == "OR" || name.text == "NOT";
    if (name.type != TokenType::kIdentifier || is_keyword) return ErrorAt(name.offset, "expected a field name");
    const ColumnField* column = schema_.FindQueryable(name.text);
    if (column == nullptr || !column->rules.filterable()) {
      return ErrorAt(name.offset, absl::StrCat("unknown field \"", name.text, "\"; the fields ",
                                               schema_.resource->name(), " filters accept are ", FilterableNames()));
    }
    if (++comparisons_ > kMaxFilterComparisons) {
      return ErrorAt(name.offset, absl::StrCat("more than ", kMaxFilterComparisons, " comparisons"));
    }

    FilterNode node;
    node.column = column;
    const Token& operation = Take();
    if (operation.type == TokenType::kColon) {
      const Token& operand = Take();
      if (operand.type == TokenType::kStar) {
        node.op = FilterOperator::kIsSet;
        return node;
      }
      if (column->kind != FieldKind::kText) {
        return ErrorAt(operation.offset, absl::StrCat("':' with a value applies to text fields only; ",
                                                      name.text, " takes ':*' or a comparison"));
      }
      if (operand.type != TokenType::kString) return ErrorAt(operand.offset, "expected a quoted string or *");
      std::string text = operand.text;
      node.op = FilterOperator::kContains;
      if (!text.empty() && text.back() == '*' && !operand.escaped_last) {
        text.pop_back();
        node.op = FilterOperator::kStartsWith;
      }
      node.value = std::move(text);
      return node;
    }
    if (operation.type != TokenType::kComparator) {
      return ErrorAt(operation.offset, absl::StrCat("expected =, !=, <, <=, >, >= or : after ", name.text));
    }
    node.op = operation.text == "="    ? FilterOperator::kEqual
              : operation.text == "!=" ? FilterOperator::kNotEqual
              : operation.text == "<"  ? FilterOperator::kLess
              : operation.text == "<=" ? FilterOperator::kLessOrEqual
              : operation.text == ">"  ? FilterOperator::kGreater
                                       : FilterOperator::kGreaterOrEqual;
    absl::StatusOr<SqlValue> value = ConvertValue(*column, Take());
    if (!value.ok()) return value.status();
    node.value = *std::move(value);
    return node;
  }

  // Converts a literal to the value `column` stores, so that comparisons
  // happen on the column's own type.
  absl::StatusOr<SqlValue> ConvertValue(const ColumnField& column, const Token& literal) const {
    const std::string& name = column.field->name();
    bool is_string = literal.type == TokenType::kString;
    switch (column.kind) {
      case FieldKind::kText:
        if (is_string) return literal.text;
        return ErrorAt(literal.offset, absl::StrCat(name, " takes a quoted string"));
      case FieldKind::kDate:
        if (is_string && IsCalendarDate(literal.text)) return literal.text;
        return ErrorAt(literal.offset, absl::StrCat(name, " takes a date as a string such as \"2025-01-31\""));
      case FieldKind::kRecordId: {
        uint64_t id = 0;
        if ((is_string || literal.type == TokenType::kNumber) && ParseRecordId(name, literal.text, &id).ok()) {
          return id;
        }
        return ErrorAt(literal.offset, absl::StrCat(name, " takes a record id such as \"42\""));
      }
      case FieldKind::kEnum: {
        const google::protobuf::EnumDescriptor* type = column.field->enum_type();
        const google::protobuf::EnumValueDescriptor* value = nullptr;
        if (is_string || literal.type == TokenType::kIdentifier) value = type->FindValueByName(literal.text);
        if (value != nullptr) return static_cast<int64_t>(value->number());
        return ErrorAt(literal.offset,
                       absl::StrCat(name, " takes a ", type->name(), " value name such as ", type->value(0)->name()));
      }
      case FieldKind::kInt64: {
        int64_t number = 0;
        if (literal.type == TokenType::kNumber && absl::SimpleAtoi(literal.text, &number)) return number;
        return ErrorAt(literal.offset, absl::StrCat(name, " takes a whole number within 64 bits"));
      }
      case FieldKind::kTimestamp: {
        absl::Time time;
        std::string error;
        if (!is_string || !absl::ParseTime(absl::RFC3339_full, literal.text, &time, &error)) {
          return ErrorAt(literal.offset, absl::StrCat(name, " takes an RFC 3339 time as a string such as "
                                                            "\"2025-01-31T08:00:00Z\""));
        }
        // Nanoseconds since 1970 overflow int64 within the DATETIME range,
        // so the precision check goes through microseconds.
        bool whole_micros = absl::FromUnixMicros(absl::ToUnixMicros(time)) == time;
        if (!IsStorableTime(absl::ToUnixSeconds(time)) || !whole_micros) {
          return ErrorAt(literal.offset,
                         absl::StrCat(name, " takes times between years 1000 and 9999 with at most 6 fraction digits"));
        }
        return FormatSqlTime(time);
      }
    }
    return ErrorAt(literal.offset, "unsupported field kind");
  }

  std::string FilterableNames() const {
    std::vector<std::string> names;
    for (const ColumnField& column : schema_.queryable) {
      if (column.rules.filterable()) names.push_back(column.field->name());
    }
    return absl::StrJoin(names, ", ");
  }

  const ModuleSchema& schema_;
  const absl::string_view filter_;
  std::vector<Token> tokens_;
  size_t next_ = 0;
  int comparisons_ = 0;
};

absl::string_view ComparatorSql(FilterOperator op) {
  switch (op) {
    case FilterOperator::kEqual:
      return "=";
    case FilterOperator::kNotEqual:
      return "<>";
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

// Escapes LIKE wildcards with '!', the escape character the SQL names.
std::string EscapeLike(absl::string_view text) {
  std::string escaped;
  for (char c : text) {
    if (c == '!' || c == '%' || c == '_') escaped.push_back('!');
    escaped.push_back(c);
  }
  return escaped;
}

void CompileComparison(const FilterNode& node, SqlCondition* out) {
  const ColumnField& column = *node.column;
  const std::string& name = column.field->name();
  switch (node.op) {
    case FilterOperator::kIsSet:
      if (column.nullable()) {
        absl::StrAppend(&out->sql, name, " IS NOT NULL");
      } else if (column.kind == FieldKind::kText) {
        absl::StrAppend(&out->sql, name, " <> ''");
      } else {
        absl::StrAppend(&out->sql, name, " <> 0");
      }
      return;
    case FilterOperator::kContains:
    case FilterOperator::kStartsWith: {
      std::string pattern = EscapeLike(std::get<std::string>(node.value));
      absl::StrAppend(&out->sql, name, " LIKE ? ESCAPE '!'");
      out->params.push_back(node.op == FilterOperator::kContains ? absl::StrCat("%", pattern, "%")
                                                                 : absl::StrCat(pattern, "%"));
      return;
    }
    default:
      break;
  }
  // A NULL column makes `column op ?` NULL; these forms keep the result
  // TRUE or FALSE: an unset value equals nothing and differs from anything.
  absl::string_view comparator = ComparatorSql(node.op);
  if (!column.nullable()) {
    absl::StrAppend(&out->sql, name, " ", comparator, " ?");
  } else if (node.op == FilterOperator::kNotEqual) {
    absl::StrAppend(&out->sql, "(", name, " IS NULL OR ", name, " <> ?)");
  } else {
    absl::StrAppend(&out->sql, "(", name, " IS NOT NULL AND ", name, " ", comparator, " ?)");
  }
  out->params.push_back(node.value);
}

void Compile(const FilterNode& node, SqlCondition* out) {
  switch (node.type) {
    case FilterNode::Type::kComparison:
      CompileComparison(node, out);
      return;
    case FilterNode::Type::kNot:
      out->sql += "NOT (";
      Compile(node.children.front(), out);
      out->sql += ")";
      return;
    case FilterNode::Type::kAnd:
    case FilterNode::Type::kOr: {
      absl::string_view separator = node.type == FilterNode::Type::kAnd ? " AND " : " OR ";
      out->sql += "(";
      for (size_t i = 0; i < node.children.size(); ++i) {
        if (i > 0) absl::StrAppend(&out->sql, separator);
        Compile(node.children[i], out);
      }
      out->sql += ")";
      return;
    }
  }
}

std::string ValueToString(const SqlValue& value) {
  if (const int64_t* number = std::get_if<int64_t>(&value)) return std::to_string(*number);
  if (const uint64_t* id = std::get_if<uint64_t>(&value)) return std::to_string(*id);
  if (const std::string* text = std::get_if<std::string>(&value)) return absl::StrCat("\"", absl::CEscape(*text), "\"");
  return "NULL";
}

absl::string_view OperatorName(FilterOperator op) {
  switch (op) {
    case FilterOperator::kContains:
      return "contains";
    case FilterOperator::kStartsWith:
      return "starts_with";
    case FilterOperator::kIsSet:
      return "is_set";
    case FilterOperator::kNotEqual:
      return "!=";
    default:
      return ComparatorSql(op);
  }
}

}  // namespace

absl::StatusOr<std::optional<FilterNode>> ParseFilter(const ModuleSchema& schema, absl::string_view filter) {
  return FilterParser(schema, filter).Parse();
}

SqlCondition CompileFilter(const FilterNode& node) {
  SqlCondition condition;
  Compile(node, &condition);
  return condition;
}

std::string FilterToString(const FilterNode& node) {
  switch (node.type) {
    case FilterNode::Type::kComparison:
      if (node.op == FilterOperator::kIsSet) return absl::StrCat("(is_set ", node.column->field->name(), ")");
      return absl::StrCat("(", OperatorName(node.op), " ", node.column->field->name(), " ", ValueToString(node.value),
                          ")");
    case FilterNode::Type::kNot:
      return absl::StrCat("(NOT ", FilterToString(node.children.front()), ")");
    case FilterNode::Type::kAnd:
    case FilterNode::Type::kOr: {
      std::string text = node.type == FilterNode::Type::kAnd ? "(AND" : "(OR";
      for (const FilterNode& child : node.children) absl::StrAppend(&text, " ", FilterToString(child));
      return text + ")";
    }
  }
  return "";
}

}  // namespace crm::data
