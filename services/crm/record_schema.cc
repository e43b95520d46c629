#include "services/crm/record_schema.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
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

bool IsOutputOnly(const FieldDescriptor* field) {
  return field->name() == kIdField || field->name() == kCreateTimeField || field->name() == kUpdateTimeField;
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
    ModuleSchema schema{table.module, table.table, table.resource, {}};
    for (int i = 0; i < table.resource->field_count(); ++i) {
      const FieldDescriptor* field = table.resource->field(i);
      if (IsOutputOnly(field)) continue;
      crm::data::v1::FieldRules rules = field->options().GetExtension(crm::data::v1::field_rules);
      schema.columns.push_back(ColumnField{field, KindOf(field, rules), rules});
    }
    schemas.push_back(std::move(schema));
  }
  return schemas;
}

bool IsValidDate(absl::string_view value) {
  absl::CivilDay day;
  return value.size() == 10 && absl::ParseCivilTime(value, &day) && absl::FormatCivilTime(day) == value;
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
    if (column.rules.required()) return absl::InvalidArgumentError(absl::StrCat(name, " is required"));
    return absl::OkStatus();
  }
  TextRules text_rules;
  text_rules.max_code_points = column.rules.max_length();
  text_rules.allow_line_breaks = column.rules.format() == crm::data::v1::FIELD_FORMAT_MULTILINE;
  if (absl::Status status = ValidateText(name, value, text_rules); !status.ok()) return status;

  switch (column.rules.format()) {
    case crm::data::v1::FIELD_FORMAT_EMAIL:
      if (!IsValidEmail(value)) {
        return absl::InvalidArgumentError(absl::StrCat(name, " is not an email address"));
      }
      break;
    case crm::data::v1::FIELD_FORMAT_DATE:
      if (!IsValidDate(value)) {
        return absl::InvalidArgumentError(absl::StrCat(name, " must be a calendar date as YYYY-MM-DD"));
      }
      break;
    case crm::data::v1::FIELD_FORMAT_CURRENCY_CODE:
      if (!IsCurrencyCode(value)) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " must be an ISO 4217 code of three upper-case letters, such as EUR"));
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

const ColumnField* ModuleSchema::FindColumn(absl::string_view field_name) const {
  for (const ColumnField& column : columns) {
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

absl::Status ParseRecordId(absl::string_view field, absl::string_view value, uint64_t* id) {
  bool digits_only = !value.empty() && value.size() <= 20 &&
                     std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits_only || !absl::SimpleAtoi(value, id) || *id == 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be a record id: a positive decimal number"));
  }
  return absl::OkStatus();
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
        break;
      }
      case FieldKind::kEnum: {
        int number = reflection->GetEnumValue(resource, field);
        if (field->enum_type()->FindValueByNumber(number) == nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat(field->name(), " has no ", field->enum_type()->name(), " value ", number));
        }
        if (column.rules.required() && number == 0) {
          return absl::InvalidArgumentError(absl::StrCat(field->name(), " is required"));
        }
        break;
      }
      case FieldKind::kInt64:
        break;
      case FieldKind::kTimestamp: {
        if (!reflection->HasField(resource, field)) break;
        const auto& timestamp =
            static_cast<const google::protobuf::Timestamp&>(reflection->GetMessage(resource, field));
        if (timestamp.seconds() < kMinDatetimeSeconds || timestamp.seconds() > kMaxDatetimeSeconds ||
            timestamp.nanos() < 0 || timestamp.nanos() > 999999999) {
          return absl::InvalidArgumentError(
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

}  // namespace crm::data
