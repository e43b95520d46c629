// The mapping between CRM resource messages and their table rows, derived
// once from the proto descriptors: each module has one table, and each field
// of its resource message is one column of the same name. Field kinds come
// from the field's type and its (crm.data.v1.field_rules) option, so the six
// modules share one implementation of storage and validation.
#ifndef CRM_SERVICES_CRM_RECORD_SCHEMA_H_
#define CRM_SERVICES_CRM_RECORD_SCHEMA_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "crm/auth/v1/scope.pb.h"
#include "crm/data/v1/annotations.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace crm::data {

// How a field is stored and checked.
enum class FieldKind {
  kText,      // string; VARCHAR or TEXT, '' when unset
  kDate,      // string YYYY-MM-DD; DATE, NULL when unset
  kRecordId,  // string decimal id; BIGINT UNSIGNED, NULL when unset
  kEnum,      // enum number; INT
  kInt64,     // int64; BIGINT
  kTimestamp  // google.protobuf.Timestamp; DATETIME(6), NULL when unset
};

struct ColumnField {
  const google::protobuf::FieldDescriptor* field;
  FieldKind kind;
  crm::data::v1::FieldRules rules;
};

// One module's table and the writable fields of its resource message, in
// field order. The output-only fields id, create_time and update_time are
// not in `columns`; the store handles them.
struct ModuleSchema {
  crm::auth::v1::Module module;
  std::string table;
  const google::protobuf::Descriptor* resource;
  std::vector<ColumnField> columns;

  // The column of a writable field, or nullptr.
  const ColumnField* FindColumn(absl::string_view field_name) const;
};

// Names of the output-only fields every resource message has.
inline constexpr absl::string_view kIdField = "id";
inline constexpr absl::string_view kCreateTimeField = "create_time";
inline constexpr absl::string_view kUpdateTimeField = "update_time";

// The schema of `module`, or nullptr for MODULE_UNSPECIFIED and unknown values.
const ModuleSchema* SchemaForModule(crm::auth::v1::Module module);

// Every module's schema, built on first use. Aborts at start-up if a
// resource field has a type the mapping does not support, so a proto change
// cannot silently lose data.
const std::vector<ModuleSchema>& AllModuleSchemas();

// Checks every writable field of `resource` against its rules: required
// fields set, text valid and within its maximum length, formats, defined
// enum values and timestamps within the range DATETIME stores. Update calls
// it on the merged record, so an update cannot clear a required field.
absl::Status ValidateResource(const ModuleSchema& schema, const google::protobuf::Message& resource);

// Sets unset enum fields marked default_on_create to their first value.
void ApplyCreateDefaults(const ModuleSchema& schema, google::protobuf::Message* resource);

// Parses a decimal record id; INVALID_ARGUMENT naming `field` otherwise.
absl::Status ParseRecordId(absl::string_view field, absl::string_view value, uint64_t* id);

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_RECORD_SCHEMA_H_
