// References between records, driven by the (field_rules).reference
// options: every write checks that a reference names a record of the same
// organization, and every delete applies the delete rule of each reference
// to the deleted record. Both run inside the caller's transaction on
// `connection` and let sql::SQLException propagate to the pool.
#ifndef CRM_SERVICES_CRM_RECORD_REFERENCES_H_
#define CRM_SERVICES_CRM_RECORD_REFERENCES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "services/crm/record_schema.h"

namespace sql {
class Connection;
}  // namespace sql

namespace crm::data {

// Checks every reference of `record` that is set and, when `previous` is
// given, differs from it. A reference to a missing record and one to
// another organization's record get the same INVALID_ARGUMENT message.
// Each referenced row stays share-locked until the transaction ends, so a
// concurrent delete waits and then finds the new reference.
absl::Status CheckReferences(sql::Connection& connection, const ModuleSchema& schema, uint64_t organization_id,
                             const google::protobuf::Message& record, const google::protobuf::Message* previous);

// Returns whether `record` sets any reference field, that is whether
// CheckReferences would read another row.
bool SetsAnyReference(const ModuleSchema& schema, const google::protobuf::Message& record);

// Applies the delete rules of all references to record `id` of `target`.
// Returns FAILED_PRECONDITION when a DELETE_RULE_RESTRICT reference to it
// exists. Otherwise clears every DELETE_RULE_CLEAR reference and its module
// field, bumps the referring records' revision and sets their update_time
// to `now`, a DATETIME(6) value from FormatSqlTime. The caller must hold
// the row lock of the target record.
absl::Status ApplyDeleteRules(sql::Connection& connection, const ModuleSchema& target, uint64_t organization_id,
                              uint64_t id, const std::string& now);

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_RECORD_REFERENCES_H_
