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
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/auth/v1/scope.pb.h"
#include "crm/data/v1/annotations.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace crm::data {

// Storage and validation kind of a field.
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
  // For a reference whose module is in another field (rules.reference()
  // .module_field()), that field; otherwise nullptr.
  const google::protobuf::FieldDescriptor* reference_module_field = nullptr;

  // Whether the column stores NULL for an unset value.
  bool nullable() const;
};

// One module's table and the fields of its resource message, in field
// order, derived from the descriptor and each field's field_rules.
struct ModuleSchema {
  crm::auth::v1::Module module;
  std::string table;
  const google::protobuf::Descriptor* resource;
  // Every stored field except id, create_time, update_time and etag, which
  // the store handles itself. Output-only columns (rules.output_only) are
  // among them but callers never write them.
  std::vector<ColumnField> columns;
  // Fields that List may filter or sort by (rules.filterable or
  // rules.sortable), including id, create_time and update_time.
  std::vector<ColumnField> queryable;

  // The column of a stored field other than the four above, or nullptr.
  const ColumnField* FindColumn(absl::string_view field_name) const;
  // The filterable or sortable field named `field_name`, or nullptr.
  const ColumnField* FindQueryable(absl::string_view field_name) const;
};

// Names of the fields every resource message has and the store sets.
inline constexpr absl::string_view kIdField = "id";
inline constexpr absl::string_view kCreateTimeField = "create_time";
inline constexpr absl::string_view kUpdateTimeField = "update_time";
inline constexpr absl::string_view kEtagField = "etag";

// The schema of `module`, or nullptr for MODULE_UNSPECIFIED and unknown values.
const ModuleSchema* SchemaForModule(crm::auth::v1::Module module);

// Every module's schema, built on first use. Aborts at start-up if a
// resource field has a type the mapping does not support, so a proto change
// cannot silently lose data.
const std::vector<ModuleSchema>& AllModuleSchemas();

// The request field that holds a record of `schema` in Create and Update
// requests and in ConvertLeadRequest: the resource name in snake_case, such
// as "lead". Error metadata uses it as the resource type.
std::string RecordFieldName(const ModuleSchema& schema);

// Checks every stored field of `resource` against its rules: required
// fields set, text valid and within its maximum length, formats, defined
// enum values, timestamps within the range DATETIME stores, and a
// reference's module and id set together. Update calls it on the merged
// record, so an update cannot clear a required field.
absl::Status ValidateResource(const ModuleSchema& schema, const google::protobuf::Message& resource);

// Sets unset enum fields marked default_on_create to their first value.
void ApplyCreateDefaults(const ModuleSchema& schema, google::protobuf::Message* resource);

// Clears every field marked output_only, which callers may not set.
void ClearOutputOnlyFields(google::protobuf::Message* resource);

// Whether `value` is a calendar date written as YYYY-MM-DD.
bool IsCalendarDate(absl::string_view value);

// Whether `seconds` since the Unix epoch lies in the range DATETIME columns
// store: 1000-01-01 to 9999-12-31 UTC.
bool IsStorableTime(int64_t seconds);

// Parses a decimal record id; INVALID_ARGUMENT naming `field` otherwise.
absl::Status ParseRecordId(absl::string_view field, absl::string_view value, uint64_t* id);

// Returns the canonical lower-case form of a UUID written as 36 characters
// (8-4-4-4-12 hex digits in either case), or INVALID_ARGUMENT naming `field`.
absl::StatusOr<std::string> CanonicalUuid(absl::string_view field, absl::string_view value);

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_RECORD_SCHEMA_H_
