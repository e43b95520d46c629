#include "services/crm/record_references.h"

#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/error_details.h"
#include "common/mysql_pool.h"
#include "services/crm/record_rows.h"

namespace crm::data {
namespace {

using google::protobuf::Message;

// A column of `referring` that may point at records of `target`.
struct InboundReference {
  const ModuleSchema* referring;
  const ColumnField* column;
};

// The module a reference column of `record` points at, or
// MODULE_UNSPECIFIED when it names none.
crm::auth::v1::Module ReferencedModule(const ColumnField& column, const Message& record) {
  if (column.reference_module_field == nullptr) return column.rules.reference().module();
  return static_cast<crm::auth::v1::Module>(
      record.GetReflection()->GetEnumValue(record, column.reference_module_field));
}

std::vector<InboundReference> ReferencesTo(const ModuleSchema& target) {
  std::vector<InboundReference> references;
  for (const ModuleSchema& referring : AllModuleSchemas()) {
    for (const ColumnField& column : referring.columns) {
      if (!column.rules.has_reference()) continue;
      if (column.reference_module_field != nullptr || column.rules.reference().module() == target.module) {
        references.push_back(InboundReference{&referring, &column});
      }
    }
  }
  return references;
}

// "account_id = ?" or, for a reference that names its module,
// "related_id = ? AND related_module = ?". The parameters are the id and
// then the module.
std::string MatchReference(const ColumnField& column) {
  std::string match = absl::StrCat(column.field->name(), " = ?");
  if (column.reference_module_field != nullptr) {
    absl::StrAppend(&match, " AND ", column.reference_module_field->name(), " = ?");
  }
  return match;
}

void BindMatch(const ColumnField& column, const ModuleSchema& target, uint64_t id, int first_index,
               sql::PreparedStatement* statement) {
  statement->setUInt64(first_index, id);
  if (column.reference_module_field != nullptr) statement->setInt(first_index + 1, target.module);
}

}  // namespace

bool SetsAnyReference(const ModuleSchema& schema, const Message& record) {
  for (const ColumnField& column : schema.columns) {
    if (column.rules.has_reference() && !std::holds_alternative<std::monostate>(ColumnValue(column, record))) {
      return true;
    }
  }
  return false;
}

absl::Status CheckReferences(sql::Connection& connection, const ModuleSchema& schema, uint64_t organization_id,
                             const Message& record, const Message* previous) {
  for (const ColumnField& column : schema.columns) {
    if (!column.rules.has_reference()) continue;
    SqlValue id = ColumnValue(column, record);
    crm::auth::v1::Module module = ReferencedModule(column, record);
    if (std::holds_alternative<std::monostate>(id)) continue;
    if (previous != nullptr && id == ColumnValue(column, *previous) && module == ReferencedModule(column, *previous)) {
      continue;
    }

    const ModuleSchema* referenced = SchemaForModule(module);
    absl::Status missing = InvalidFieldError(
        column.field->name(),
        absl::StrCat(column.field->name(), " ", std::get<uint64_t>(id), " does not name ",
                     referenced == nullptr ? "a record" : absl::StrCat("a ", referenced->resource->name()),
                     " of this organization"));
    if (referenced == nullptr) return missing;
    sql::PreparedStatement& select = PrepareCached(connection,
        absl::StrCat("SELECT 1 FROM ", referenced->table, " WHERE organization_id = ? AND id = ? LOCK IN SHARE MODE"));
    select.setUInt64(1, organization_id);
    select.setUInt64(2, std::get<uint64_t>(id));
    std::unique_ptr<sql::ResultSet> row(select.executeQuery());
    if (!row->next()) return missing;
  }
  return absl::OkStatus();
}

absl::Status ApplyDeleteRules(sql::Connection& connection, const ModuleSchema& target, uint64_t organization_id,
                              uint64_t id, const std::string& now) {
  std::vector<InboundReference> references = ReferencesTo(target);

  // Every restriction is checked before anything is cleared.
  for (const InboundReference& reference : references) {
    if (reference.column->rules.reference().on_delete() != crm::data::v1::DELETE_RULE_RESTRICT) continue;
    sql::PreparedStatement& select = PrepareCached(connection,
        absl::StrCat("SELECT id FROM ", reference.referring->table, " WHERE organization_id = ? AND ",
                     MatchReference(*reference.column), " LIMIT 1 LOCK IN SHARE MODE"));
    select.setUInt64(1, organization_id);
    BindMatch(*reference.column, target, id, 2, &select);
    std::unique_ptr<sql::ResultSet> row(select.executeQuery());
    if (row->next()) {
      uint64_t referring_id = row->getUInt64(1);
      return WithErrorInfo(
          absl::FailedPreconditionError(absl::StrCat(
              target.resource->name(), " ", id, " cannot be deleted while ", reference.referring->resource->name(),
              " ", referring_id, " refers to it in ", reference.column->field->name(), "; delete that ",
              reference.referring->resource->name(), " or change its ", reference.column->field->name(), " first")),
          ErrorReason::kRecordReferenced,
          {{"resource_type", RecordFieldName(target)},
           {"resource_id", absl::StrCat(id)},
           {"referring_type", RecordFieldName(*reference.referring)},
           {"referring_id", absl::StrCat(referring_id)},
           {"referring_field", reference.column->field->name()}});
    }
  }

  for (const InboundReference& reference : references) {
    if (reference.column->rules.reference().on_delete() != crm::data::v1::DELETE_RULE_CLEAR) continue;
    const ColumnField& column = *reference.column;
    std::string assignments = absl::StrCat(column.field->name(), " = NULL");
    if (column.reference_module_field != nullptr) {
      absl::StrAppend(&assignments, ", ", column.reference_module_field->name(), " = 0");
    }
    sql::PreparedStatement& clear = PrepareCached(connection,
        absl::StrCat("UPDATE ", reference.referring->table, " SET ", assignments,
                     ", revision = revision + 1, update_time = ? WHERE organization_id = ? AND ",
                     MatchReference(column)));
    clear.setString(1, now);
    clear.setUInt64(2, organization_id);
    BindMatch(column, target, id, 3, &clear);
    clear.executeUpdate();
  }
  return absl::OkStatus();
}

}  // namespace crm::data
