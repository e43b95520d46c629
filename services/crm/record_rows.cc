#include "services/crm/record_rows.h"

#include <cppconn/datatype.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/error_details.h"

namespace crm::data {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::Timestamp;

constexpr char kSqlTimeFormat[] = "%Y-%m-%d %H:%M:%E6S";
constexpr char kSelectTimeFormat[] = "'%Y-%m-%d %H:%i:%s.%f'";

std::string SelectTime(absl::string_view column) {
  return absl::StrCat("DATE_FORMAT(", column, ", ", kSelectTimeFormat, ")");
}

absl::Status ParseSqlTime(absl::string_view text, Timestamp* out) {
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(kSqlTimeFormat, text, absl::UTCTimeZone(), &time, &error)) {
    return WithErrorInfo(absl::InternalError(absl::StrCat("stored time is not parseable: ", error)),
                         ErrorReason::kInternalError);
  }
  SetTimestamp(time, out);
  return absl::OkStatus();
}

}  // namespace

void BindSqlValue(const SqlValue& value, int index, sql::PreparedStatement* statement) {
  if (std::holds_alternative<std::monostate>(value)) {
    statement->setNull(index, sql::DataType::SQLNULL);
  } else if (const int64_t* number = std::get_if<int64_t>(&value)) {
    statement->setInt64(index, *number);
  } else if (const uint64_t* id = std::get_if<uint64_t>(&value)) {
    statement->setUInt64(index, *id);
  } else {
    statement->setString(index, std::get<std::string>(value));
  }
}

std::string FormatSqlTime(absl::Time time) { return absl::FormatTime(kSqlTimeFormat, time, absl::UTCTimeZone()); }

void SetTimestamp(absl::Time time, Timestamp* out) {
  int64_t micros = absl::ToUnixMicros(time);
  int64_t seconds = micros / 1000000;
  int64_t remainder = micros % 1000000;
  if (remainder < 0) {
    remainder += 1000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(remainder * 1000));
}

absl::Time FromTimestamp(const Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Microseconds(timestamp.nanos() / 1000);
}

void SetTimeField(absl::Time time, absl::string_view field_name, Message* record) {
  const FieldDescriptor* field = record->GetDescriptor()->FindFieldByName(std::string(field_name));
  SetTimestamp(time, static_cast<Timestamp*>(record->GetReflection()->MutableMessage(record, field)));
}

SqlValue ColumnValue(const ColumnField& column, const Message& resource) {
  const Reflection* reflection = resource.GetReflection();
  const FieldDescriptor* field = column.field;
  switch (column.kind) {
    case FieldKind::kText:
      return reflection->GetString(resource, field);
    case FieldKind::kDate: {
      std::string value = reflection->GetString(resource, field);
      if (value.empty()) return std::monostate();
      return value;
    }
    case FieldKind::kRecordId: {
      uint64_t id = 0;
      if (absl::SimpleAtoi(reflection->GetString(resource, field), &id) && id != 0) return id;
      return std::monostate();
    }
    case FieldKind::kEnum:
      return static_cast<int64_t>(reflection->GetEnumValue(resource, field));
    case FieldKind::kInt64:
      return reflection->GetInt64(resource, field);
    case FieldKind::kTimestamp:
      if (!reflection->HasField(resource, field)) return std::monostate();
      return FormatSqlTime(FromTimestamp(static_cast<const Timestamp&>(reflection->GetMessage(resource, field))));
  }
  return std::monostate();
}

std::string SelectList(const ModuleSchema& schema) {
  std::vector<std::string> parts = {"id", SelectTime("create_time"), SelectTime("update_time"), "revision"};
  for (const ColumnField& column : schema.columns) {
    const std::string& name = column.field->name();
    parts.push_back(column.kind == FieldKind::kTimestamp ? SelectTime(name) : name);
  }
  return absl::StrJoin(parts, ", ");
}

int BindColumns(const ModuleSchema& schema, const Message& resource, sql::PreparedStatement* statement,
                int first_index) {
  int index = first_index;
  for (const ColumnField& column : schema.columns) BindSqlValue(ColumnValue(column, resource), index++, statement);
  return index;
}

absl::Status ReadRecord(const ModuleSchema& schema, sql::ResultSet& row, Message* out) {
  const Reflection* reflection = out->GetReflection();
  const google::protobuf::Descriptor* descriptor = out->GetDescriptor();
  reflection->SetString(out, descriptor->FindFieldByName(std::string(kIdField)), std::to_string(row.getUInt64(1)));
  for (auto [index, name] : {std::pair{2, kCreateTimeField}, std::pair{3, kUpdateTimeField}}) {
    Message* time = reflection->MutableMessage(out, descriptor->FindFieldByName(std::string(name)));
    if (absl::Status status = ParseSqlTime(std::string(row.getString(index)), static_cast<Timestamp*>(time));
        !status.ok()) {
      return status;
    }
  }
  reflection->SetString(out, descriptor->FindFieldByName(std::string(kEtagField)), FormatEtag(row.getUInt64(4)));
  int index = 5;
  for (const ColumnField& column : schema.columns) {
    const FieldDescriptor* field = column.field;
    bool is_null = row.isNull(index);
    switch (column.kind) {
      case FieldKind::kText:
      case FieldKind::kDate:
        reflection->SetString(out, field, is_null ? std::string() : std::string(row.getString(index)));
        break;
      case FieldKind::kRecordId:
        reflection->SetString(out, field, is_null ? std::string() : std::to_string(row.getUInt64(index)));
        break;
      case FieldKind::kEnum:
        reflection->SetEnumValue(out, field, row.getInt(index));
        break;
      case FieldKind::kInt64:
        reflection->SetInt64(out, field, row.getInt64(index));
        break;
      case FieldKind::kTimestamp:
        if (is_null) {
          reflection->ClearField(out, field);
        } else if (absl::Status status = ParseSqlTime(std::string(row.getString(index)),
                                                      static_cast<Timestamp*>(reflection->MutableMessage(out, field)));
                   !status.ok()) {
          return status;
        }
        break;
    }
    ++index;
  }
  return absl::OkStatus();
}

std::string FormatEtag(uint64_t revision) { return std::to_string(revision); }

absl::StatusOr<uint64_t> ParseEtag(absl::string_view etag) {
  uint64_t revision = 0;
  bool digits_only = !etag.empty() && etag.size() <= 20 &&
                     std::all_of(etag.begin(), etag.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits_only || !absl::SimpleAtoi(etag, &revision) || revision == 0) {
    return InvalidFieldError("etag", "etag is malformed: pass the etag of a record read from this API unchanged");
  }
  return revision;
}

}  // namespace crm::data
