#include "services/crm/record_schema.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/error_details.h"
#include "common/logging.h"
#include "common/text.h"
#include "crm/data/v1/resources.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace crm::data {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Range of MariaDB and MySQL DATETIME: 1000-01-01 to 9999-12-31.
constexpr int64_t kMinDatetimeSeconds = -30610224000;
constexpr int64_t kMaxDatetimeSeconds = 253402300799;

struct ModuleTable {
  crm::auth::v1::Module module;
  const char* table;
  const Descriptor* resource;
};

FieldKind KindOf(const FieldDescriptor* field, const crm::data::v1::FieldRules& rules) {
  if (field->is_repeated()) {
    spdlog::critical("repeated field {} has no column mapping", field->full_name());
    std::abort();
  }
  switch (field->type()) {
    case FieldDescriptor::TYPE_STRING:
      if (rules.format() == crm::data::v1::FIELD_FORMAT_DATE) return FieldKind::kDate;
      if (rules.format() == crm::data::v1::FIELD_FORMAT_RECORD_ID) return FieldKind::kRecordId;
      return FieldKind::kText;
    case FieldDescriptor::TYPE_ENUM:
      return FieldKind::kEnum;
    case FieldDescriptor::TYPE_INT64:
      return FieldKind::kInt64;
    case FieldDescriptor::TYPE_MESSAGE:
      if (field->message_type()->full_name() == "google.protobuf.Timestamp") return FieldKind::kTimestamp;
      break;
    default:
      break;
  }
  spdlog::critical("field {} has a type with no column mapping", field->full_name());
  std::abort();
}

// Whether the store sets the field itself rather than mapping it to a
// column of the same name.
bool IsStoreManaged(const FieldDescriptor* field) {
  return field->name() == kIdField || field->name() == kCreateTimeField || field->name() == kUpdateTimeField ||
         field->name() == kEtagField;
}

[[noreturn]] void AbortOnBadRules(const FieldDescriptor* field, absl::string_view problem) {
  spdlog::critical("field_rules of {} are invalid: {}", field->full_name(), problem);
  std::abort();
}

// Resolves and checks the reference declared on `column`, so that a proto
// mistake stops the server at start-up instead of failing calls.
void ResolveReference(const Descriptor* resource, ColumnField* column) {
  const crm::data::v1::Reference& reference = column->rules.reference();
  if (column->kind != FieldKind::kRecordId) AbortOnBadRules(column->field, "a reference must be a record id");
  bool has_module = reference.module() != crm::auth::v1::MODULE_UNSPECIFIED;
  if (has_module == !reference.module_field().empty()) {
    AbortOnBadRules(column->field, "a reference names either module or module_field");
  }
  if (reference.on_delete() == crm::data::v1::DELETE_RULE_UNSPECIFIED) {
    AbortOnBadRules(column->field, "a reference needs an on_delete rule");
  }
  if (has_module) return;
  const FieldDescriptor* module_field = resource->FindFieldByName(reference.module_field());
  if (module_field == nullptr || module_field->enum_type() != crm::auth::v1::Module_descriptor()) {
    AbortOnBadRules(column->field, "module_field must name a crm.auth.v1.Module field");
  }
  column->reference_module_field = module_field;
}

std::vector<ModuleSchema> BuildSchemas() {
  const ModuleTable tables[] = {
      {crm::auth::v1::MODULE_LEAD, "leads", crm::data::v1::Lead::descriptor()},
      {crm::auth::v1::MODULE_CONTACT, "contacts", crm::data::v1::Contact::descriptor()},
      {crm::auth::v1::MODULE_ACCOUNT, "accounts", crm::data::v1::Account::descriptor()},
      {crm::auth::v1::MODULE_OPPORTUNITY, "opportunities", crm::data::v1::Opportunity::descriptor()},
      {crm::auth::v1::MODULE_ACTIVITY, "activities", crm::data::v1::Activity::descriptor()},
      {crm::auth::v1::MODULE_MESSAGE, "messages", crm::data::v1::Message::descriptor()},
  };
  std::vector<ModuleSchema> schemas;
  for (const ModuleTable& table : tables) {
    ModuleSchema schema{table.module, table.table, table.resource, {}, {}};
    for (int i = 0; i < table.resource->field_count(); ++i) {
      const FieldDescriptor* field = table.resource->field(i);
      crm::data::v1::FieldRules rules = field->options().GetExtension(crm::data::v1::field_rules);
      bool queryable = rules.filterable() || rules.sortable();
      if (IsStoreManaged(field) && !queryable) continue;
      ColumnField column{field, KindOf(field, rules), rules};
      if (rules.has_reference()) ResolveReference(table.resource, &column);
      if (queryable) schema.queryable.push_back(column);
      if (!IsStoreManaged(field)) schema.columns.push_back(column);
    }
    schemas.push_back(std::move(schema));
  }
  return schemas;
}

bool IsValidEmail(absl::string_view value) {
  size_t at = value.find('@');
  if (at == absl::string_view::npos || at == 0 || at + 1 == value.size()) return false;
  if (value.find('@', at + 1) != absl::string_view::npos) return false;
  for (char c : value) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsCurrencyCode(absl::string_view value) {
  if (value.size() != 3) return false;
  for (char c : value) {
    if (!absl::ascii_isupper(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

absl::Status ValidateString(const ColumnField& column, absl::string_view value) {
  const std::string& name = column.field->name();
  if (value.empty()) {
    if (column.rules.required()) return InvalidFieldError(name, absl::StrCat(name, " is required"));
    return absl::OkStatus();
  }
  TextRules text_rules;
  text_rules.max_code_points = column.rules.max_length();
  text_rules.allow_line_breaks = column.rules.format() == crm::data::v1::FIELD_FORMAT_MULTILINE;
  if (absl::Status status = ValidateText(name, value, text_rules); !status.ok()) return status;

  switch (column.rules.format()) {
    case crm::data::v1::FIELD_FORMAT_EMAIL:
      if (!IsValidEmail(value)) {
        return InvalidFieldError(name, absl::StrCat(name, " is not an email address"));
      }
      break;
    case crm::data::v1::FIELD_FORMAT_DATE:
      if (!IsCalendarDate(value)) {
        return InvalidFieldError(name, absl::StrCat(name, " must be a calendar date as YYYY-MM-DD"));
      }
      break;
    case crm::data::v1::FIELD_FORMAT_CURRENCY_CODE:
      if (!IsCurrencyCode(value)) {
        return InvalidFieldError(
            name, absl::StrCat(name, " must be an ISO 4217 code of three upper-case letters, such as EUR"));
      }
      break;
    case crm::data::v1::FIELD_FORMAT_RECORD_ID: {
      uint64_t id = 0;
      return ParseRecordId(name, value, &id);
    }
    default:
      break;
  }
  return absl::OkStatus();
}

}  // namespace

bool IsCalendarDate(absl::string_view value) {
  absl::CivilDay day;
  return value.size() == 10 && absl::ParseCivilTime(value, &day) && absl::FormatCivilTime(day) == value;
}

bool IsStorableTime(int64_t seconds) { return seconds >= kMinDatetimeSeconds && seconds <= kMaxDatetimeSeconds; }

bool ColumnField::nullable() const {
  bool stored_as_null = kind == FieldKind::kDate || kind == FieldKind::kRecordId || kind == FieldKind::kTimestamp;
  return stored_as_null && !IsStoreManaged(field);
}

const ColumnField* ModuleSchema::FindColumn(absl::string_view field_name) const {
  for (const ColumnField& column : columns) {
    if (column.field->name() == field_name) return &column;
  }
  return nullptr;
}

const ColumnField* ModuleSchema::FindQueryable(absl::string_view field_name) const {
  for (const ColumnField& column : queryable) {
    if (column.field->name() == field_name) return &column;
  }
  return nullptr;
}

const std::vector<ModuleSchema>& AllModuleSchemas() {
  static const std::vector<ModuleSchema>* schemas = new std::vector<ModuleSchema>(BuildSchemas());
  return *schemas;
}

const ModuleSchema* SchemaForModule(crm::auth::v1::Module module) {
  for (const ModuleSchema& schema : AllModuleSchemas()) {
    if (schema.module == module) return &schema;
  }
  return nullptr;
}

std::string RecordFieldName(const ModuleSchema& schema) {
  std::string name;
  for (char c : schema.resource->name()) {
    if (absl::ascii_isupper(static_cast<unsigned char>(c)) && !name.empty()) name.push_back('_');
    name.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  return name;
}

absl::Status ParseRecordId(absl::string_view field, absl::string_view value, uint64_t* id) {
  bool digits_only = !value.empty() && value.size() <= 20 &&
                     std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits_only || !absl::SimpleAtoi(value, id) || *id == 0) {
    return InvalidFieldError(field, absl::StrCat(field, " must be a record id: a positive decimal number"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CanonicalUuid(absl::string_view field, absl::string_view value) {
  bool valid = value.size() == 36;
  for (size_t i = 0; valid && i < value.size(); ++i) {
    bool hyphen_position = i == 8 || i == 13 || i == 18 || i == 23;
    valid = hyphen_position ? value[i] == '-' : absl::ascii_isxdigit(static_cast<unsigned char>(value[i]));
  }
  if (!valid) {
    return InvalidFieldError(
        field, absl::StrCat(field, " must be a UUID of 36 characters, such as 7f9c24e5-3b1a-4c8e-9d2f-0a6b5c4d3e21"));
  }
  return absl::AsciiStrToLower(value);
}

absl::Status ValidateResource(const ModuleSchema& schema, const Message& resource) {
  const Reflection* reflection = resource.GetReflection();
  for (const ColumnField& column : schema.columns) {
    const FieldDescriptor* field = column.field;
    switch (column.kind) {
      case FieldKind::kText:
      case FieldKind::kDate:
      case FieldKind::kRecordId: {
        std::string scratch;
        const std::string& value = reflection->GetStringReference(resource, field, &scratch);
        if (absl::Status status = ValidateString(column, value); !status.ok()) return status;
        if (column.reference_module_field != nullptr &&
            value.empty() != (reflection->GetEnumValue(resource, column.reference_module_field) == 0)) {
          return InvalidFieldError(field->name(), absl::StrCat(column.reference_module_field->name(), " and ",
                                                               field->name(), " must be set together"));
        }
        break;
      }
      case FieldKind::kEnum: {
        int number = reflection->GetEnumValue(resource, field);
        if (field->enum_type()->FindValueByNumber(number) == nullptr) {
          return InvalidFieldError(field->name(),
                                   absl::StrCat(field->name(), " has no ", field->enum_type()->name(), " value ", number));
        }
        if (column.rules.required() && number == 0) {
          return InvalidFieldError(field->name(), absl::StrCat(field->name(), " is required"));
        }
        break;
      }
      case FieldKind::kInt64:
        break;
      case FieldKind::kTimestamp: {
        if (!reflection->HasField(resource, field)) break;
        const auto& timestamp =
            static_cast<const google::protobuf::Timestamp&>(reflection->GetMessage(resource, field));
        if (!IsStorableTime(timestamp.seconds()) || timestamp.nanos() < 0 || timestamp.nanos() > 999999999) {
          return InvalidFieldError(field->name(),
                                   absl::StrCat(field->name(), " must lie between 1000-01-01 and 9999-12-31 UTC"));
        }
        break;
      }
    }
  }
  return absl::OkStatus();
}

void ApplyCreateDefaults(const ModuleSchema& schema, Message* resource) {
  const Reflection* reflection = resource->GetReflection();
  for (const ColumnField& column : schema.columns) {
    if (column.kind != FieldKind::kEnum || !column.rules.default_on_create()) continue;
    if (reflection->GetEnumValue(*resource, column.field) != 0) continue;
    const google::protobuf::EnumDescriptor* type = column.field->enum_type();
    for (int i = 0; i < type->value_count(); ++i) {
      if (type->value(i)->number() != 0) {
        reflection->SetEnumValue(resource, column.field, type->value(i)->number());
        break;
      }
    }
  }
}

void ClearOutputOnlyFields(Message* resource) {
  const Descriptor* descriptor = resource->GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->options().GetExtension(crm::data::v1::field_rules).output_only()) {
      resource->GetReflection()->ClearField(resource, field);
    }
  }
}

}  // namespace crm::data
