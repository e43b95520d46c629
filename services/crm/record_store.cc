#include "services/crm/record_store.h"

#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/error_details.h"
#include "common/mysql_pool.h"
#include "services/crm/filter.h"
#include "services/crm/list_query.h"
#include "services/crm/record_references.h"
#include "services/crm/record_rows.h"

namespace crm::data {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

const FieldDescriptor* Field(const Message& message, absl::string_view name) {
  return message.GetDescriptor()->FindFieldByName(std::string(name));
}

// Puts the request field that contains the record before the field
// violations of `status`, whose paths are relative to the record.
absl::Status InRecordField(const ModuleSchema& schema, absl::Status status) {
  return PrefixFieldViolations(std::move(status), RecordFieldName(schema));
}

absl::Status NotFound(const ModuleSchema& schema, absl::string_view id) {
  return WithErrorInfo(absl::NotFoundError(absl::StrCat(schema.resource->name(), " ", id, " not found")),
                       ErrorReason::kResourceNotFound,
                       {{"resource_type", RecordFieldName(schema)}, {"resource_id", std::string(id)}});
}

absl::Status StaleEtag(const ModuleSchema& schema, absl::string_view id) {
  return WithErrorInfo(absl::AbortedError(absl::StrCat(schema.resource->name(), " ", id,
                                                       " changed since the etag was read; read it again and retry")),
                       ErrorReason::kEtagMismatch,
                       {{"resource_type", RecordFieldName(schema)}, {"resource_id", std::string(id)}});
}

// Parses a non-empty etag; an empty one yields std::nullopt (no check).
absl::StatusOr<std::optional<uint64_t>> ParseOptionalEtag(absl::string_view etag) {
  if (etag.empty()) return std::nullopt;
  absl::StatusOr<uint64_t> revision = ParseEtag(etag);
  if (!revision.ok()) return revision.status();
  return std::optional<uint64_t>(*revision);
}

// Prefixes a validation error's message with the record it concerns, for
// calls that write several records, and keeps its details.
absl::Status InRecord(absl::string_view record, absl::Status status) {
  if (status.ok()) return status;
  absl::Status prefixed(status.code(), absl::StrCat(record, ": ", status.message()));
  status.ForEachPayload(
      [&](absl::string_view type_url, const absl::Cord& payload) { prefixed.SetPayload(type_url, payload); });
  return prefixed;
}

// The writable fields an update changes: the mask's paths, or every field
// set in `patch` when the mask is empty.
absl::Status FieldsToUpdate(const ModuleSchema& schema, const Message& patch,
                            const google::protobuf::FieldMask& mask, std::vector<const ColumnField*>* fields) {
  if (mask.paths().empty()) {
    const Reflection* reflection = patch.GetReflection();
    for (const ColumnField& column : schema.columns) {
      if (!column.rules.output_only() && reflection->HasField(patch, column.field)) fields->push_back(&column);
    }
    return absl::OkStatus();
  }
  for (const std::string& path : mask.paths()) {
    const FieldDescriptor* field = schema.resource->FindFieldByName(path);
    if (field == nullptr) {
      return InvalidFieldError("update_mask.paths", absl::StrCat("update_mask path ", path, " is not a field of ",
                                                                 schema.resource->name()));
    }
    const ColumnField* column = schema.FindColumn(path);
    if (column == nullptr || column->rules.output_only()) {
      return InvalidFieldError("update_mask.paths", absl::StrCat("update_mask path ", path, " is output only"));
    }
    if (column->rules.immutable()) {
      return InvalidFieldError("update_mask.paths",
                               absl::StrCat("update_mask path ", path, " is immutable: it is set on create"));
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

// Reads record `id` into `out` and locks its row until the transaction ends.
absl::Status LockRecord(sql::Connection& connection, const ModuleSchema& schema, uint64_t organization_id,
                        uint64_t id, Message* out) {
  sql::PreparedStatement& select = PrepareCached(connection,
      absl::StrCat("SELECT ", SelectList(schema), " FROM ", schema.table,
                   " WHERE organization_id = ? AND id = ? FOR UPDATE"));
  select.setUInt64(1, organization_id);
  select.setUInt64(2, id);
  std::unique_ptr<sql::ResultSet> row(select.executeQuery());
  if (!row->next()) return NotFound(schema, std::to_string(id));
  out->Clear();
  return ReadRecord(schema, *row, out);
}

// Fails with ABORTED when `expected` is set and differs from the etag of
// `current`, a record read under lock.
absl::Status CheckEtag(const ModuleSchema& schema, const Message& current, std::optional<uint64_t> expected) {
  if (!expected.has_value()) return absl::OkStatus();
  const Reflection* reflection = current.GetReflection();
  if (reflection->GetString(current, Field(current, kEtagField)) == FormatEtag(*expected)) return absl::OkStatus();
  return StaleEtag(schema, reflection->GetString(current, Field(current, kIdField)));
}

uint64_t RecordIdOf(const ModuleSchema& schema, const Message& record) {
  return std::get<uint64_t>(ColumnValue(*schema.FindQueryable(kIdField), record));
}

// Inserts `resource`, already validated, and sets its id, times and etag.
// With `returning`, the INSERT itself returns the id (MariaDB).
absl::Status InsertRecord(sql::Connection& connection, const ModuleSchema& schema, uint64_t organization_id,
                          absl::Time now, bool returning, Message* resource) {
  std::vector<std::string> names = {"organization_id", "create_time", "update_time"};
  for (const ColumnField& column : schema.columns) names.push_back(column.field->name());
  sql::PreparedStatement& insert = PrepareCached(connection,
      absl::StrCat("INSERT INTO ", schema.table, " (", absl::StrJoin(names, ", "), ") VALUES (",
                   absl::StrJoin(std::vector<std::string>(names.size(), "?"), ", "), ")",
                   returning ? " RETURNING id" : ""));
  insert.setUInt64(1, organization_id);
  insert.setString(2, FormatSqlTime(now));
  insert.setString(3, FormatSqlTime(now));
  BindColumns(schema, *resource, &insert, 4);
  uint64_t id = 0;
  if (returning) {
    std::unique_ptr<sql::ResultSet> row(insert.executeQuery());
    if (!row->next()) {
      return WithErrorInfo(absl::InternalError("INSERT ... RETURNING id returned no row"),
                           ErrorReason::kInternalError);
    }
    id = row->getUInt64(1);
  } else {
    insert.executeUpdate();
    std::unique_ptr<sql::Statement> query(connection.createStatement());
    std::unique_ptr<sql::ResultSet> last(query->executeQuery("SELECT LAST_INSERT_ID()"));
    if (!last->next()) {
      return WithErrorInfo(absl::InternalError("LAST_INSERT_ID() returned no row"), ErrorReason::kInternalError);
    }
    id = last->getUInt64(1);
  }

  const Reflection* reflection = resource->GetReflection();
  reflection->SetString(resource, Field(*resource, kIdField), std::to_string(id));
  SetTimeField(now, kCreateTimeField, resource);
  SetTimeField(now, kUpdateTimeField, resource);
  reflection->SetString(resource, Field(*resource, kEtagField), FormatEtag(1));
  return absl::OkStatus();
}

// Writes every column of `record`, a record read with LockRecord and
// changed since, bumps its revision and sets its update_time and etag.
absl::Status WriteRecord(sql::Connection& connection, const ModuleSchema& schema, uint64_t organization_id,
                         absl::Time now, Message* record) {
  const Reflection* reflection = record->GetReflection();
  uint64_t id = RecordIdOf(schema, *record);
  absl::StatusOr<uint64_t> revision = ParseEtag(reflection->GetString(*record, Field(*record, kEtagField)));
  if (!revision.ok()) return revision.status();

  std::vector<std::string> assignments = {"update_time = ?", "revision = revision + 1"};
  for (const ColumnField& column : schema.columns) assignments.push_back(absl::StrCat(column.field->name(), " = ?"));
  sql::PreparedStatement& update = PrepareCached(connection,
      absl::StrCat("UPDATE ", schema.table, " SET ", absl::StrJoin(assignments, ", "),
                   " WHERE organization_id = ? AND id = ?"));
  update.setString(1, FormatSqlTime(now));
  int next = BindColumns(schema, *record, &update, 2);
  update.setUInt64(next, organization_id);
  update.setUInt64(next + 1, id);
  update.executeUpdate();

  SetTimeField(now, kUpdateTimeField, record);
  reflection->SetString(record, Field(*record, kEtagField), FormatEtag(*revision + 1));
  return absl::OkStatus();
}

// Applies create defaults, validates and checks references, then inserts.
absl::Status CreateInTransaction(sql::Connection& connection, const ModuleSchema& schema, uint64_t organization_id,
                                 absl::Time now, bool returning, Message* resource) {
  ApplyCreateDefaults(schema, resource);
  if (absl::Status status = ValidateResource(schema, *resource); !status.ok()) return InRecordField(schema, status);
  if (absl::Status status = CheckReferences(connection, schema, organization_id, *resource, nullptr); !status.ok()) {
    return InRecordField(schema, status);
  }
  return InsertRecord(connection, schema, organization_id, now, returning, resource);
}

// The fingerprint input of a List page token. Lengths delimit the filter
// and order_by, so no two requests share one.
std::string ListRequestScope(absl::string_view method, uint64_t organization_id, const ListParams& params) {
  return absl::StrCat(method, "|organization=", organization_id, "|filter=", params.filter.size(), ":",
                      params.filter, "|order_by=", params.order_by.size(), ":", params.order_by);
}

}  // namespace

RecordStore::RecordStore(MysqlPool* pool, PageTokenCodec page_tokens, Clock clock)
    : pool_(pool),
      page_tokens_(std::move(page_tokens)),
      clock_(std::move(clock)),
      insert_returning_(pool->is_mariadb()) {}

absl::Time RecordStore::Now() const { return absl::FromUnixMicros(absl::ToUnixMicros(clock_())); }

absl::Status RecordStore::Create(const ModuleSchema& schema, uint64_t organization_id, absl::string_view request_id,
                                 Message* resource) {
  std::string canonical_request_id;
  if (!request_id.empty()) {
    absl::StatusOr<std::string> canonical = CanonicalUuid("request_id", request_id);
    if (!canonical.ok()) return canonical.status();
    canonical_request_id = *std::move(canonical);
  }
  // Validate before the transaction so that bad input costs no round trip.
  ApplyCreateDefaults(schema, resource);
  if (absl::Status status = ValidateResource(schema, *resource); !status.ok()) return InRecordField(schema, status);
  absl::Time now = Now();
  std::string operation = absl::StrCat("Create ", schema.resource->name());

  if (canonical_request_id.empty() && !SetsAnyReference(schema, *resource)) {
    // One INSERT is atomic on its own, so autocommit saves the round trips
    // of a transaction.
    return pool_->Run(operation, [&](sql::Connection& connection) {
      return InsertRecord(connection, schema, organization_id, now, insert_returning_, resource);
    });
  }
  return pool_->RunInTransaction(operation, [&](sql::Connection& connection) {
    if (!canonical_request_id.empty()) {
      // Claims the request id. A concurrent create with the same id blocks
      // here until this transaction ends, and then finds the record id.
      sql::PreparedStatement& claim = PrepareCached(connection,
          "INSERT INTO create_requests (organization_id, module, request_id, record_id, create_time) "
          "VALUES (?, ?, ?, 0, ?) ON DUPLICATE KEY UPDATE record_id = record_id");
      claim.setUInt64(1, organization_id);
      claim.setInt(2, schema.module);
      claim.setString(3, canonical_request_id);
      claim.setString(4, FormatSqlTime(now));
      claim.executeUpdate();
      sql::PreparedStatement& select = PrepareCached(connection,
          "SELECT record_id FROM create_requests WHERE organization_id = ? AND module = ? AND request_id = ? "
          "FOR UPDATE");
      select.setUInt64(1, organization_id);
      select.setInt(2, schema.module);
      select.setString(3, canonical_request_id);
      std::unique_ptr<sql::ResultSet> row(select.executeQuery());
      uint64_t earlier_id = row->next() ? row->getUInt64(1) : 0;
      if (earlier_id != 0) {
        absl::Status status = LockRecord(connection, schema, organization_id, earlier_id, resource);
        if (absl::IsNotFound(status)) {
          return WithErrorInfo(
              absl::NotFoundError(absl::StrCat(schema.resource->name(), " ", earlier_id, " created for request_id ",
                                               canonical_request_id, " has since been deleted")),
              ErrorReason::kResourceNotFound,
              {{"resource_type", RecordFieldName(schema)},
               {"resource_id", absl::StrCat(earlier_id)},
               {"request_id", canonical_request_id}});
        }
        return status;
      }
    }

    if (absl::Status status =
            CreateInTransaction(connection, schema, organization_id, now, insert_returning_, resource);
        !status.ok()) {
      return status;
    }
    if (!canonical_request_id.empty()) {
      sql::PreparedStatement& record = PrepareCached(connection,
          "UPDATE create_requests SET record_id = ? WHERE organization_id = ? AND module = ? AND request_id = ?");
      record.setUInt64(1, RecordIdOf(schema, *resource));
      record.setUInt64(2, organization_id);
      record.setInt(3, schema.module);
      record.setString(4, canonical_request_id);
      record.executeUpdate();
    }
    return absl::OkStatus();
  });
}

absl::Status RecordStore::Get(const ModuleSchema& schema, uint64_t organization_id, absl::string_view id,
                              Message* out) {
  uint64_t record_id = 0;
  if (absl::Status status = ParseRecordId("id", id, &record_id); !status.ok()) return status;
  std::string sql =
      absl::StrCat("SELECT ", SelectList(schema), " FROM ", schema.table, " WHERE organization_id = ? AND id = ?");
  return pool_->Run(absl::StrCat("Get ", schema.resource->name()), [&](sql::Connection& connection) {
    sql::PreparedStatement& select = PrepareCached(connection, sql);
    select.setUInt64(1, organization_id);
    select.setUInt64(2, record_id);
    std::unique_ptr<sql::ResultSet> row(select.executeQuery());
    if (!row->next()) return NotFound(schema, id);
    return ReadRecord(schema, *row, out);
  });
}

absl::Status RecordStore::List(const ModuleSchema& schema, uint64_t organization_id, absl::string_view method,
                               const ListParams& params, absl::FunctionRef<Message*()> add_record,
                               std::string* next_page_token) {
  int page_size = params.page_size;
  if (page_size < 0) return InvalidFieldError("page_size", "page_size must not be negative");
  if (page_size == 0) page_size = kDefaultPageSize;
  if (page_size > kMaxPageSize) page_size = kMaxPageSize;

  absl::StatusOr<std::vector<SortKey>> keys = ParseOrderBy(schema, params.order_by);
  if (!keys.ok()) return keys.status();
  absl::StatusOr<std::optional<FilterNode>> filter = ParseFilter(schema, params.filter);
  if (!filter.ok()) return filter.status();

  std::string request_scope = ListRequestScope(method, organization_id, params);
  std::vector<SqlCondition> conditions;
  if (filter->has_value()) conditions.push_back(CompileFilter(**filter));
  if (!params.page_token.empty()) {
    absl::StatusOr<std::string> bytes = page_tokens_.DecodePosition(request_scope, params.page_token);
    if (!bytes.ok()) return bytes.status();
    absl::StatusOr<std::vector<SqlValue>> position = DecodePosition(*keys, *bytes);
    if (!position.ok()) return position.status();
    conditions.push_back(AfterPosition(*keys, *position));
  }

  // Keyset pagination: every page starts strictly after the last row of
  // the previous one, so its cost does not grow with depth and rows added
  // or removed meanwhile never shift the pages that follow.
  std::string sql = absl::StrCat("SELECT ", SelectList(schema), " FROM ", schema.table, " WHERE organization_id = ?");
  for (const SqlCondition& condition : conditions) absl::StrAppend(&sql, " AND ", condition.sql);
  absl::StrAppend(&sql, " ORDER BY ", OrderByClause(*keys), " LIMIT ?");

  next_page_token->clear();
  return pool_->Run(absl::StrCat("List ", schema.resource->name()), [&](sql::Connection& connection) {
    sql::PreparedStatement& select = PrepareCached(connection, sql);
    int index = 1;
    select.setUInt64(index++, organization_id);
    for (const SqlCondition& condition : conditions) {
      for (const SqlValue& value : condition.params) BindSqlValue(value, index++, &select);
    }
    select.setInt(index, page_size + 1);
    std::unique_ptr<sql::ResultSet> rows(select.executeQuery());
    int count = 0;
    const Message* last = nullptr;
    while (rows->next()) {
      if (count == page_size) {
        *next_page_token = page_tokens_.EncodePosition(request_scope, EncodePosition(PositionOf(*keys, *last)));
        break;
      }
      Message* record = add_record();
      if (absl::Status status = ReadRecord(schema, *rows, record); !status.ok()) return status;
      last = record;
      ++count;
    }
    return absl::OkStatus();
  });
}

absl::Status RecordStore::Update(const ModuleSchema& schema, uint64_t organization_id, const Message& patch,
                                 const google::protobuf::FieldMask& mask, Message* out) {
  const Reflection* patch_reflection = patch.GetReflection();
  const std::string id = patch_reflection->GetString(patch, Field(patch, kIdField));
  uint64_t record_id = 0;
  if (absl::Status status = ParseRecordId("id", id, &record_id); !status.ok()) return InRecordField(schema, status);
  absl::StatusOr<std::optional<uint64_t>> etag =
      ParseOptionalEtag(patch_reflection->GetString(patch, Field(patch, kEtagField)));
  if (!etag.ok()) return InRecordField(schema, etag.status());
  std::vector<const ColumnField*> fields;
  if (absl::Status status = FieldsToUpdate(schema, patch, mask, &fields); !status.ok()) return status;

  return pool_->RunInTransaction(absl::StrCat("Update ", schema.resource->name()), [&](sql::Connection& connection) {
    if (absl::Status status = LockRecord(connection, schema, organization_id, record_id, out); !status.ok()) {
      return status;
    }
    if (absl::Status status = CheckEtag(schema, *out, *etag); !status.ok()) return status;
    std::unique_ptr<Message> previous(out->New());
    previous->CopyFrom(*out);

    for (const ColumnField* column : fields) {
      // Only an empty mask reaches here with an immutable field; it may
      // repeat the stored value but not change it.
      if (column->rules.immutable() && ColumnValue(*column, patch) != ColumnValue(*column, *previous)) {
        return InRecordField(schema, InvalidFieldError(column->field->name(),
                                                       absl::StrCat(column->field->name(),
                                                                    " is immutable: it cannot change after create")));
      }
      CopyField(column->field, patch, out);
    }
    if (absl::Status status = ValidateResource(schema, *out); !status.ok()) return InRecordField(schema, status);
    if (absl::Status status = CheckReferences(connection, schema, organization_id, *out, previous.get());
        !status.ok()) {
      return InRecordField(schema, status);
    }
    return WriteRecord(connection, schema, organization_id, Now(), out);
  });
}

absl::Status RecordStore::Delete(const ModuleSchema& schema, uint64_t organization_id, absl::string_view id,
                                 absl::string_view etag) {
  uint64_t record_id = 0;
  if (absl::Status status = ParseRecordId("id", id, &record_id); !status.ok()) return status;
  absl::StatusOr<std::optional<uint64_t>> expected_revision = ParseOptionalEtag(etag);
  if (!expected_revision.ok()) return expected_revision.status();

  return pool_->RunInTransaction(absl::StrCat("Delete ", schema.resource->name()), [&](sql::Connection& connection) {
    sql::PreparedStatement& lock = PrepareCached(connection,
        absl::StrCat("SELECT revision FROM ", schema.table, " WHERE organization_id = ? AND id = ? FOR UPDATE"));
    lock.setUInt64(1, organization_id);
    lock.setUInt64(2, record_id);
    std::unique_ptr<sql::ResultSet> row(lock.executeQuery());
    if (!row->next()) return NotFound(schema, id);
    if (expected_revision->has_value() && row->getUInt64(1) != **expected_revision) return StaleEtag(schema, id);

    if (absl::Status status = ApplyDeleteRules(connection, schema, organization_id, record_id, FormatSqlTime(Now()));
        !status.ok()) {
      return status;
    }
    sql::PreparedStatement& remove = PrepareCached(connection,
        absl::StrCat("DELETE FROM ", schema.table, " WHERE organization_id = ? AND id = ?"));
    remove.setUInt64(1, organization_id);
    remove.setUInt64(2, record_id);
    remove.executeUpdate();
    return absl::OkStatus();
  });
}

absl::Status RecordStore::ConvertLead(uint64_t organization_id, const crm::data::v1::ConvertLeadRequest& request,
                                      crm::data::v1::ConvertLeadResponse* response) {
  uint64_t lead_id = 0;
  if (absl::Status status = ParseRecordId("id", request.id(), &lead_id); !status.ok()) return status;
  absl::StatusOr<std::optional<uint64_t>> etag = ParseOptionalEtag(request.etag());
  if (!etag.ok()) return etag.status();
  const ModuleSchema& leads = *SchemaForModule(crm::auth::v1::MODULE_LEAD);
  const ModuleSchema& accounts = *SchemaForModule(crm::auth::v1::MODULE_ACCOUNT);
  const ModuleSchema& contacts = *SchemaForModule(crm::auth::v1::MODULE_CONTACT);
  const ModuleSchema& opportunities = *SchemaForModule(crm::auth::v1::MODULE_OPPORTUNITY);
  absl::Time now = Now();

  return pool_->RunInTransaction("ConvertLead", [&](sql::Connection& connection) {
    response->Clear();
    crm::data::v1::Lead& lead = *response->mutable_lead();
    if (absl::Status status = LockRecord(connection, leads, organization_id, lead_id, &lead); !status.ok()) {
      return status;
    }
    if (absl::Status status = CheckEtag(leads, lead, *etag); !status.ok()) return status;
    if (lead.status() == crm::data::v1::LEAD_STATUS_CONVERTED) {
      return WithErrorInfo(absl::FailedPreconditionError(absl::StrCat("Lead ", lead_id, " is already converted")),
                           ErrorReason::kLeadAlreadyConverted,
                           {{"resource_type", "lead"}, {"resource_id", absl::StrCat(lead_id)}});
    }

    crm::data::v1::Account& account = *response->mutable_account();
    if (request.has_account()) {
      account = request.account();
    } else {
      account.set_name(!lead.company().empty() ? lead.company()
                                               : std::string(absl::StripAsciiWhitespace(
                                                     absl::StrCat(lead.first_name(), " ", lead.last_name()))));
      account.set_phone(lead.phone());
    }
    ClearOutputOnlyFields(&account);
    if (absl::Status status = CreateInTransaction(connection, accounts, organization_id, now, insert_returning_, &account);
        !status.ok()) {
      return InRecord("account", status);
    }

    crm::data::v1::Contact& contact = *response->mutable_contact();
    if (request.has_contact()) {
      contact = request.contact();
    } else {
      contact.set_first_name(lead.first_name());
      contact.set_last_name(lead.last_name());
      contact.set_email(lead.email());
      contact.set_phone(lead.phone());
      contact.set_title(lead.title());
    }
    ClearOutputOnlyFields(&contact);
    contact.set_account_id(account.id());
    if (absl::Status status = CreateInTransaction(connection, contacts, organization_id, now, insert_returning_, &contact);
        !status.ok()) {
      return InRecord("contact", status);
    }

    if (request.has_opportunity()) {
      crm::data::v1::Opportunity& opportunity = *response->mutable_opportunity();
      opportunity = request.opportunity();
      ClearOutputOnlyFields(&opportunity);
      opportunity.set_account_id(account.id());
      if (opportunity.name().empty()) opportunity.set_name(account.name());
      if (absl::Status status = CreateInTransaction(connection, opportunities, organization_id, now, insert_returning_, &opportunity);
          !status.ok()) {
        return InRecord("opportunity", status);
      }
      lead.set_converted_opportunity_id(opportunity.id());
    }

    lead.set_status(crm::data::v1::LEAD_STATUS_CONVERTED);
    lead.set_converted_account_id(account.id());
    lead.set_converted_contact_id(contact.id());
    return WriteRecord(connection, leads, organization_id, now, &lead);
  });
}

absl::StatusOr<int> RecordStore::PurgeCreateRequests(absl::Duration retention, int max_rows) {
  std::string cutoff = FormatSqlTime(Now() - retention);
  int deleted = 0;
  absl::Status status = pool_->Run("purging old request ids", [&](sql::Connection& connection) {
    // Autocommit, so each batch holds its row locks only briefly. The order
    // ends with the primary key, so a statement-based replica deletes the
    // same rows.
    sql::PreparedStatement& remove = PrepareCached(connection,
        "DELETE FROM create_requests WHERE create_time < ?"
        " ORDER BY create_time, organization_id, module, request_id LIMIT ?");
    remove.setString(1, cutoff);
    remove.setInt(2, max_rows);
    deleted = remove.executeUpdate();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return deleted;
}

}  // namespace crm::data
