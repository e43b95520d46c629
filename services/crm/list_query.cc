#include "services/crm/list_query.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/error_details.h"

namespace crm::data {
namespace {

// Tags of the values in an encoded position.
enum PositionTag : char { kNullTag = 0, kInt64Tag = 1, kUint64Tag = 2, kStringTag = 3 };

// INVALID_ORDER_BY whose metadata `position` is the 1-based byte position
// of the problem, as in the message.
absl::Status OrderByError(size_t offset, absl::string_view problem) {
  std::string message = absl::StrCat("order_by: ", problem, " at position ", offset + 1);
  return InvalidFieldError("order_by", message, ErrorReason::kInvalidOrderBy, {{"position", absl::StrCat(offset + 1)}});
}

std::string SortableNames(const ModuleSchema& schema) {
  std::vector<std::string> names;
  for (const ColumnField& column : schema.queryable) {
    if (column.rules.sortable()) names.push_back(column.field->name());
  }
  return absl::StrJoin(names, ", ");
}

void AppendUint64(uint64_t value, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(value >> shift));
}

bool ReadUint64(absl::string_view* in, uint64_t* value) {
  if (in->size() < 8) return false;
  *value = 0;
  for (int i = 0; i < 8; ++i) *value = (*value << 8) | static_cast<unsigned char>((*in)[i]);
  in->remove_prefix(8);
  return true;
}

// Whether a decoded value has the type ColumnValue gives the key's kind.
bool FitsKind(const ColumnField& column, const SqlValue& value) {
  if (std::holds_alternative<std::monostate>(value)) return column.nullable();
  switch (column.kind) {
    case FieldKind::kText:
    case FieldKind::kDate:
    case FieldKind::kTimestamp:
      return std::holds_alternative<std::string>(value);
    case FieldKind::kRecordId:
      return std::holds_alternative<uint64_t>(value);
    case FieldKind::kEnum:
    case FieldKind::kInt64:
      return std::holds_alternative<int64_t>(value);
  }
  return false;
}

}  // namespace

absl::StatusOr<std::vector<SortKey>> ParseOrderBy(const ModuleSchema& schema, absl::string_view order_by) {
  const ColumnField* id = schema.FindQueryable(kIdField);
  if (id == nullptr) {
    return WithErrorInfo(absl::InternalError(absl::StrCat(schema.resource->name(), ".id is not sortable")),
                         ErrorReason::kInternalError);
  }
  if (order_by.size() > kMaxOrderByBytes) {
    return InvalidFieldError(
        "order_by", absl::StrCat("order_by is ", order_by.size(), " bytes long; the maximum is ", kMaxOrderByBytes),
        ErrorReason::kInvalidOrderBy);
  }

  std::vector<SortKey> keys;
  if (!absl::StripAsciiWhitespace(order_by).empty()) {
    std::set<const ColumnField*> seen;
    size_t item_start = 0;
    while (item_start <= order_by.size()) {
      size_t comma = order_by.find(',', item_start);
      size_t item_end = comma == absl::string_view::npos ? order_by.size() : comma;
      absl::string_view item = order_by.substr(item_start, item_end - item_start);

      // Split the item into words, remembering where each starts.
      std::vector<std::pair<size_t, absl::string_view>> words;
      for (size_t i = 0; i < item.size();) {
        if (absl::ascii_isspace(static_cast<unsigned char>(item[i]))) {
          ++i;
          continue;
        }
        size_t start = i;
        while (i < item.size() && !absl::ascii_isspace(static_cast<unsigned char>(item[i]))) ++i;
        words.emplace_back(item_start + start, item.substr(start, i - start));
      }
      if (words.empty()) return OrderByError(item_start, "expected a field name");
      if (words.size() > 2 || (words.size() == 2 && words[1].second != "desc" && words[1].second != "asc")) {
        size_t offset = words.size() > 2 ? words[2].first : words[1].first;
        return OrderByError(offset, "expected \"desc\", \"asc\" or \",\" after a field name");
      }
      const ColumnField* column = schema.FindQueryable(words[0].second);
      if (column == nullptr || !column->rules.sortable()) {
        return OrderByError(words[0].first, absl::StrCat("unknown field \"", words[0].second, "\"; the fields ",
                                                         schema.resource->name(), " sorts by are ",
                                                         SortableNames(schema)));
      }
      if (!seen.insert(column).second) return OrderByError(words[0].first, "repeated field");
      if (!keys.empty() && keys.back().column == id) {
        return OrderByError(words[0].first, "no field may follow id, which is unique");
      }
      if (column != id && static_cast<int>(keys.size()) == kMaxOrderByFields) {
        return OrderByError(words[0].first, absl::StrCat("more than ", kMaxOrderByFields, " fields"));
      }
      keys.push_back(SortKey{column, words.size() == 2 && words[1].second == "desc"});
      if (comma == absl::string_view::npos) break;
      item_start = comma + 1;
    }
  }
  if (keys.empty() || keys.back().column != id) {
    keys.push_back(SortKey{id, !keys.empty() && keys.back().descending});
  }
  return keys;
}

std::string OrderByClause(const std::vector<SortKey>& keys) {
  std::vector<std::string> parts;
  for (const SortKey& key : keys) {
    parts.push_back(absl::StrCat(key.column->field->name(), key.descending ? " DESC" : " ASC"));
  }
  return absl::StrJoin(parts, ", ");
}

std::vector<SqlValue> PositionOf(const std::vector<SortKey>& keys, const google::protobuf::Message& record) {
  std::vector<SqlValue> position;
  for (const SortKey& key : keys) position.push_back(ColumnValue(*key.column, record));
  return position;
}

SqlCondition AfterPosition(const std::vector<SortKey>& keys, const std::vector<SqlValue>& position) {
  // Built from the last key outwards:
  //   after_i = key_i beyond v_i OR (key_i equal to v_i AND after_{i+1})
  // where "beyond" follows the key's direction, and NULL sorts first.
  SqlCondition condition;
  for (size_t i = keys.size(); i-- > 0;) {
    const std::string& name = keys[i].column->field->name();
    const SqlValue& value = position[i];
    bool is_null = std::holds_alternative<std::monostate>(value);

    SqlCondition beyond;
    if (is_null) {
      // Ascending, only non-NULL values follow NULL; descending, none do.
      if (!keys[i].descending) beyond.sql = absl::StrCat(name, " IS NOT NULL");
    } else if (keys[i].descending) {
      beyond.sql = keys[i].column->nullable() ? absl::StrCat("(", name, " < ? OR ", name, " IS NULL)")
                                              : absl::StrCat(name, " < ?");
      beyond.params.push_back(value);
    } else {
      beyond.sql = absl::StrCat(name, " > ?");
      beyond.params.push_back(value);
    }

    SqlCondition next;
    if (!condition.sql.empty()) {
      next.sql = is_null ? absl::StrCat("(", name, " IS NULL AND ", condition.sql, ")")
                         : absl::StrCat("(", name, " = ? AND ", condition.sql, ")");
      if (!is_null) next.params.push_back(value);
      next.params.insert(next.params.end(), condition.params.begin(), condition.params.end());
    }

    if (beyond.sql.empty() && next.sql.empty()) {
      condition.sql = "FALSE";
      condition.params.clear();
    } else if (beyond.sql.empty()) {
      condition = std::move(next);
    } else if (next.sql.empty()) {
      condition = std::move(beyond);
    } else {
      condition.sql = absl::StrCat("(", beyond.sql, " OR ", next.sql, ")");
      condition.params = std::move(beyond.params);
      condition.params.insert(condition.params.end(), next.params.begin(), next.params.end());
    }
  }
  return condition;
}

std::string EncodePosition(const std::vector<SqlValue>& position) {
  std::string bytes;
  for (const SqlValue& value : position) {
    if (const int64_t* number = std::get_if<int64_t>(&value)) {
      bytes.push_back(kInt64Tag);
      AppendUint64(static_cast<uint64_t>(*number), &bytes);
    } else if (const uint64_t* id = std::get_if<uint64_t>(&value)) {
      bytes.push_back(kUint64Tag);
      AppendUint64(*id, &bytes);
    } else if (const std::string* text = std::get_if<std::string>(&value)) {
      bytes.push_back(kStringTag);
      AppendUint64(text->size(), &bytes);
      bytes += *text;
    } else {
      bytes.push_back(kNullTag);
    }
  }
  return bytes;
}

absl::StatusOr<std::vector<SqlValue>> DecodePosition(const std::vector<SortKey>& keys, absl::string_view bytes) {
  absl::Status invalid =
      InvalidFieldError("page_token", "page_token does not fit this request's order_by", ErrorReason::kInvalidPageToken);
  std::vector<SqlValue> position;
  for (const SortKey& key : keys) {
    if (bytes.empty()) return invalid;
    char tag = bytes.front();
    bytes.remove_prefix(1);
    uint64_t number = 0;
    SqlValue value;
    if (tag == kInt64Tag || tag == kUint64Tag || tag == kStringTag) {
      if (!ReadUint64(&bytes, &number)) return invalid;
    } else if (tag != kNullTag) {
      return invalid;
    }
    if (tag == kInt64Tag) value = static_cast<int64_t>(number);
    if (tag == kUint64Tag) value = number;
    if (tag == kStringTag) {
      if (number > bytes.size()) return invalid;
      value = std::string(bytes.substr(0, number));
      bytes.remove_prefix(number);
    }
    if (!FitsKind(*key.column, value)) return invalid;
    position.push_back(std::move(value));
  }
  if (!bytes.empty()) return invalid;
  return position;
}

}  // namespace crm::data
