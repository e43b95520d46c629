#include "services/crm/record_store.h"

#include <cppconn/connection.h>
#include <cppconn/datatype.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/timestamp.pb.h"

namespace crm::data {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::Timestamp;

// Timestamps travel as text in both directions, because the legacy
// connector's getters drop the microseconds of DATETIME(6) columns.
constexpr char kSqlTimeFormat[] = "%Y-%m-%d %H:%M:%E6S";
constexpr char kSelectTimeFormat[] = "'%Y-%m-%d %H:%i:%s.%f'";

std::string FormatSqlTime(absl::Time time) { return absl::FormatTime(kSqlTimeFormat, time, absl::UTCTimeZone()); }

std::string SelectTime(absl::string_view column) {
  return absl::StrCat("DATE_FORMAT(", column, ", ", kSelectTimeFormat, ")");
}

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

absl::Status ParseSqlTime(absl::string_view text, Timestamp* out) {
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(kSqlTimeFormat, text, absl::UTCTimeZone(), &time, &error)) {
    return absl::InternalError(absl::StrCat("stored time is not parseable: ", error));
  }
  SetTimestamp(time, out);
  return absl::OkStatus();
}

// "id, create_time, update_time, <columns...>" in the order ReadRecord expects.
std::string SelectList(const ModuleSchema& schema) {
  std::vector<std::string> parts = {"id", SelectTime("create_time"), SelectTime("update_time")};
  for (const ColumnField& column : schema.columns) {
    const std::string& name = column.field->name();
    parts.push_back(column.kind == FieldKind::kTimestamp ? SelectTime(name) : name);
  }
  return absl::StrJoin(parts, ", ");
}

// Binds the writable columns of `resource` to parameters first_index,
// first_index + 1, ... Returns the next free index.
int BindColumns(const ModuleSchema& schema, const Message& resource, sql::PreparedStatement* statement,
                int first_index) {
  const Reflection* reflection = resource.GetReflection();
  int index = first_index;
  for (const ColumnField& column : schema.columns) {
    const FieldDescriptor* field = column.field;
    switch (column.kind) {
      case FieldKind::kText:
        statement->setString(index, reflection->GetString(resource, field));
        break;
      case FieldKind::kDate: {
        std::string value = reflection->GetString(resource, field);
        if (value.empty()) {
          statement->setNull(index, sql::DataType::DATE);
        } else {
          statement->setString(index, value);
        }
        break;
      }
      case FieldKind::kRecordId: {
        uint64_t id = 0;
        if (absl::SimpleAtoi(reflection->GetString(resource, field), &id) && id != 0) {
          statement->setUInt64(index, id);
        } else {
          statement->setNull(index, sql::DataType::BIGINT);
        }
        break;
      }
      case FieldKind::kEnum:
        statement->setInt(index, reflection->GetEnumValue(resource, field));
        break;
      case FieldKind::kInt64:
        statement->setInt64(index, reflection->GetInt64(resource, field));
        break;
      case FieldKind::kTimestamp:
        if (reflection->HasField(resource, field)) {
          const auto& timestamp = static_cast<const Timestamp&>(reflection->GetMessage(resource, field));
          statement->setString(index, FormatSqlTime(FromTimestamp(timestamp)));
        } else {
          statement->setNull(index, sql::DataType::TIMESTAMP);
        }
        break;
    }
    ++index;
  }
  return index;
}

// Reads a row selected with SelectList into `out`.
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
  int index = 4;
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

absl::Status NotFound(const ModuleSchema& schema, absl::string_view id) {
  return absl::NotFoundError(absl::StrCat(schema.resource->name(), " ", id, " not found"));
}

// The writable fields an update changes: the mask's paths, or every field
// set in `patch` when the mask is empty.
absl::Status FieldsToUpdate(const ModuleSchema& schema, const Message& patch,
                            const google::protobuf::FieldMask& mask, std::vector<const ColumnField*>* fields) {
  if (mask.paths().empty()) {
    const Reflection* reflection = patch.GetReflection();
    for (const ColumnField& column : schema.columns) {
      if (reflection->HasField(patch, column.field)) fields->push_back(&column);
    }
    return absl::OkStatus();
  }
  for (const std::string& path : mask.paths()) {
    if (path == kIdField || path == kCreateTimeField || path == kUpdateTimeField) {
      return absl::InvalidArgumentError(absl::StrCat("update_mask path ", path, " is output only"));
    }
    const ColumnField* column = schema.FindColumn(path);
    if (column == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("update_mask path ", path, " is not a field of ", schema.resource->name()));
    }
    fields->push_back(column);
  }
  return absl::OkStatus();
}

void CopyField(const FieldDescriptor* field, const Message& from, Message* to) {
  const Reflection* reflection = from.GetReflection();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      reflection->SetString(to, field, reflection->GetString(from, field));
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      reflection->SetEnumValue(to, field, reflection->GetEnumValue(from, field));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      reflection->SetInt64(to, field, reflection->GetInt64(from, field));
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      if (reflection->HasField(from, field)) {
        reflection->MutableMessage(to, field)->CopyFrom(reflection->GetMessage(from, field));
      } else {
        reflection->ClearField(to, field);
      }
      break;
    default:
      break;  // AllModuleSchemas() admits no other types.
  }
}

}  // namespace

RecordStore::RecordStore(MysqlPool* pool, PageTokenCodec page_tokens, Clock clock)
    : pool_(pool), page_tokens_(std::move(page_tokens)), clock_(std::move(clock)) {}

absl::Status RecordStore::Create(const ModuleSchema& schema, uint64_t organization_id, Message* resource) {
  ApplyCreateDefaults(schema, resource);
  if (absl::Status status = ValidateResource(schema, *resource); !status.ok()) return status;

  std::vector<std::string> names = {"organization_id", "create_time", "update_time"};
  for (const ColumnField& column : schema.columns) names.push_back(column.field->name());
  std::string sql = absl::StrCat("INSERT INTO ", schema.table, " (", absl::StrJoin(names, ", "), ") VALUES (",
                                 absl::StrJoin(std::vector<std::string>(names.size(), "?"), ", "), ")");
  absl::Time now = absl::FromUnixMicros(absl::ToUnixMicros(clock_()));

  uint64_t id = 0;
  absl::Status status = pool_->Run(absl::StrCat("Create ", schema.resource->name()), [&](sql::Connection& connection) {
    std::unique_ptr<sql::PreparedStatement> insert(connection.prepareStatement(sql));
    insert->setUInt64(1, organization_id);
    insert->setString(2, FormatSqlTime(now));
    insert->setString(3, FormatSqlTime(now));
    BindColumns(schema, *resource, insert.get(), 4);
    insert->executeUpdate();
    std::unique_ptr<sql::Statement> query(connection.createStatement());
    std::unique_ptr<sql::ResultSet> last(query->executeQuery("SELECT LAST_INSERT_ID()"));
    if (!last->next()) return absl::InternalError("LAST_INSERT_ID() returned no row");
    id = last->getUInt64(1);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  const Reflection* reflection = resource->GetReflection();
  const google::protobuf::Descriptor* descriptor = resource->GetDescriptor();
  reflection->SetString(resource, descriptor->FindFieldByName(std::string(kIdField)), std::to_string(id));
  SetTimestamp(now, static_cast<Timestamp*>(
                        reflection->MutableMessage(resource, descriptor->FindFieldByName(std::string(kCreateTimeField)))));
  SetTimestamp(now, static_cast<Timestamp*>(
                        reflection->MutableMessage(resource, descriptor->FindFieldByName(std::string(kUpdateTimeField)))));
  return absl::OkStatus();
}

absl::Status RecordStore::Get(const ModuleSchema& schema, uint64_t organization_id, absl::string_view id,
                              Message* out) {
  uint64_t record_id = 0;
  if (absl::Status status = ParseRecordId("id", id, &record_id); !status.ok()) return status;
  std::string sql =
      absl::StrCat("SELECT ", SelectList(schema), " FROM ", schema.table, " WHERE organization_id = ? AND id = ?");
  return pool_->Run(absl::StrCat("Get ", schema.resource->name()), [&](sql::Connection& connection) {
    std::unique_ptr<sql::PreparedStatement> select(connection.prepareStatement(sql));
    select->setUInt64(1, organization_id);
    select->setUInt64(2, record_id);
    std::unique_ptr<sql::ResultSet> row(select->executeQuery());
    if (!row->next()) return NotFound(schema, id);
    return ReadRecord(schema, *row, out);
  });
}

absl::Status RecordStore::List(const ModuleSchema& schema, uint64_t organization_id, absl::string_view method,
                               int page_size, absl::string_view page_token,
                               absl::FunctionRef<Message*()> add_record, std::string* next_page_token) {
  if (page_size < 0) return absl::InvalidArgumentError("page_size must not be negative");
  if (page_size == 0) page_size = kDefaultPageSize;
  if (page_size > kMaxPageSize) page_size = kMaxPageSize;

  std::string request_scope = absl::StrCat(method, "|organization=", organization_id);
  uint64_t after_id = 0;
  if (!page_token.empty()) {
    absl::StatusOr<uint64_t> decoded = page_tokens_.Decode(request_scope, page_token);
    if (!decoded.ok()) return decoded.status();
    after_id = *decoded;
  }

  // Keyset pagination over the (organization_id, id) primary key: every page
  // is one index range scan, however deep, and rows inserted or deleted
  // while paging never shift the pages that follow.
  std::string sql = absl::StrCat("SELECT ", SelectList(schema), " FROM ", schema.table,
                                 " WHERE organization_id = ? AND id > ? ORDER BY id LIMIT ?");
  next_page_token->clear();
  return pool_->Run(absl::StrCat("List ", schema.resource->name()), [&](sql::Connection& connection) {
    std::unique_ptr<sql::PreparedStatement> select(connection.prepareStatement(sql));
    select->setUInt64(1, organization_id);
    select->setUInt64(2, after_id);
    select->setInt(3, page_size + 1);
    std::unique_ptr<sql::ResultSet> rows(select->executeQuery());
    int count = 0;
    uint64_t last_id = 0;
    while (rows->next()) {
      if (count == page_size) {
        *next_page_token = page_tokens_.Encode(request_scope, last_id);
        break;
      }
      if (absl::Status status = ReadRecord(schema, *rows, add_record()); !status.ok()) return status;
      last_id = rows->getUInt64(1);
      ++count;
    }
    return absl::OkStatus();
  });
}

absl::Status RecordStore::Update(const ModuleSchema& schema, uint64_t organization_id, const Message& patch,
                                 const google::protobuf::FieldMask& mask, Message* out) {
  const std::string id = patch.GetReflection()->GetString(
      patch, patch.GetDescriptor()->FindFieldByName(std::string(kIdField)));
  uint64_t record_id = 0;
  if (absl::Status status = ParseRecordId("id", id, &record_id); !status.ok()) return status;
  std::vector<const ColumnField*> fields;
  if (absl::Status status = FieldsToUpdate(schema, patch, mask, &fields); !status.ok()) return status;

  std::string select_sql = absl::StrCat("SELECT ", SelectList(schema), " FROM ", schema.table,
                                        " WHERE organization_id = ? AND id = ? FOR UPDATE");
  std::vector<std::string> assignments = {"update_time = ?"};
  for (const ColumnField& column : schema.columns) assignments.push_back(absl::StrCat(column.field->name(), " = ?"));
  std::string update_sql = absl::StrCat("UPDATE ", schema.table, " SET ", absl::StrJoin(assignments, ", "),
                                        " WHERE organization_id = ? AND id = ?");

  return pool_->RunInTransaction(absl::StrCat("Update ", schema.resource->name()), [&](sql::Connection& connection) {
    out->Clear();
    std::unique_ptr<sql::PreparedStatement> select(connection.prepareStatement(select_sql));
    select->setUInt64(1, organization_id);
    select->setUInt64(2, record_id);
    std::unique_ptr<sql::ResultSet> row(select->executeQuery());
    if (!row->next()) return NotFound(schema, id);
    if (absl::Status status = ReadRecord(schema, *row, out); !status.ok()) return status;

    for (const ColumnField* column : fields) CopyField(column->field, patch, out);
    if (absl::Status status = ValidateResource(schema, *out); !status.ok()) return status;

    absl::Time now = absl::FromUnixMicros(absl::ToUnixMicros(clock_()));
    std::unique_ptr<sql::PreparedStatement> update(connection.prepareStatement(update_sql));
    update->setString(1, FormatSqlTime(now));
    int next = BindColumns(schema, *out, update.get(), 2);
    update->setUInt64(next, organization_id);
    update->setUInt64(next + 1, record_id);
    update->executeUpdate();
    SetTimestamp(now, static_cast<Timestamp*>(out->GetReflection()->MutableMessage(
                          out, out->GetDescriptor()->FindFieldByName(std::string(kUpdateTimeField)))));
    return absl::OkStatus();
  });
}

absl::Status RecordStore::Delete(const ModuleSchema& schema, uint64_t organization_id, absl::string_view id) {
  uint64_t record_id = 0;
  if (absl::Status status = ParseRecordId("id", id, &record_id); !status.ok()) return status;
  std::string sql = absl::StrCat("DELETE FROM ", schema.table, " WHERE organization_id = ? AND id = ?");
  return pool_->Run(absl::StrCat("Delete ", schema.resource->name()), [&](sql::Connection& connection) {
    std::unique_ptr<sql::PreparedStatement> remove(connection.prepareStatement(sql));
    remove->setUInt64(1, organization_id);
    remove->setUInt64(2, record_id);
    if (remove->executeUpdate() == 0) return NotFound(schema, id);
    return absl::OkStatus();
  });
}

}  // namespace crm::data
