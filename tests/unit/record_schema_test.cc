// Validation of CRM records through the descriptor-driven field rules.
#include "services/crm/record_schema.h"

#include "crm/data/v1/resources.pb.h"
#include "gtest/gtest.h"

namespace crm::data {
namespace {

using crm::data::v1::Lead;
using crm::data::v1::Opportunity;

const ModuleSchema& LeadSchema() { return *SchemaForModule(crm::auth::v1::MODULE_LEAD); }
const ModuleSchema& OpportunitySchema() { return *SchemaForModule(crm::auth::v1::MODULE_OPPORTUNITY); }

Lead ValidLead() {
  Lead lead;
  lead.set_last_name("Lovelace");
  lead.set_email("ada@example.com");
  return lead;
}

TEST(RecordSchema, EveryModuleHasColumns) {
  ASSERT_EQ(AllModuleSchemas().size(), 6u);
  for (const ModuleSchema& schema : AllModuleSchemas()) {
    EXPECT_FALSE(schema.columns.empty()) << schema.table;
    EXPECT_EQ(schema.FindColumn("id"), nullptr) << "id is output only";
    EXPECT_EQ(schema.FindColumn("create_time"), nullptr);
  }
  EXPECT_EQ(SchemaForModule(crm::auth::v1::MODULE_UNSPECIFIED), nullptr);
}

TEST(RecordSchema, ValidLeadPasses) { EXPECT_TRUE(ValidateResource(LeadSchema(), ValidLead()).ok()); }

TEST(RecordSchema, RequiredFieldMissing) {
  Lead lead = ValidLead();
  lead.clear_last_name();
  absl::Status status = ValidateResource(LeadSchema(), lead);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("last_name"), absl::string_view::npos);
}

TEST(RecordSchema, TextTooLong) {
  Lead lead = ValidLead();
  lead.set_first_name(std::string(101, 'a'));
  EXPECT_EQ(ValidateResource(LeadSchema(), lead).code(), absl::StatusCode::kInvalidArgument);
  lead.set_first_name(std::string(100, 'a'));
  EXPECT_TRUE(ValidateResource(LeadSchema(), lead).ok());
}

TEST(RecordSchema, LengthCountsCodePoints) {
  Lead lead = ValidLead();
  std::string hundred_umlauts;
  for (int i = 0; i < 100; ++i) hundred_umlauts += "\xC3\xBC";
  lead.set_first_name(hundred_umlauts);
  EXPECT_TRUE(ValidateResource(LeadSchema(), lead).ok());
}

TEST(RecordSchema, ControlCharacterRejected) {
  Lead lead = ValidLead();
  lead.set_company("Acme\x01");
  EXPECT_EQ(ValidateResource(LeadSchema(), lead).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RecordSchema, InvalidEmailRejected) {
  for (const char* email : {"no-at-sign", "@example.com", "ada@", "a b@example.com", "a@b@c"}) {
    Lead lead = ValidLead();
    lead.set_email(email);
    EXPECT_EQ(ValidateResource(LeadSchema(), lead).code(), absl::StatusCode::kInvalidArgument) << email;
  }
}

TEST(RecordSchema, UnknownEnumValueRejected) {
  Lead lead = ValidLead();
  lead.GetReflection()->SetEnumValue(&lead, Lead::descriptor()->FindFieldByName("status"), 99);
  EXPECT_EQ(ValidateResource(LeadSchema(), lead).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RecordSchema, DateAndCurrencyChecked) {
  Opportunity opportunity;
  opportunity.set_name("Renewal");
  opportunity.set_close_date("2026-02-28");
  opportunity.set_currency_code("EUR");
  EXPECT_TRUE(ValidateResource(OpportunitySchema(), opportunity).ok());

  for (const char* date : {"2026-02-30", "2026-2-28", "28.02.2026", "2026-02-28T00:00"}) {
    Opportunity bad = opportunity;
    bad.set_close_date(date);
    EXPECT_EQ(ValidateResource(OpportunitySchema(), bad).code(), absl::StatusCode::kInvalidArgument) << date;
  }
  for (const char* currency : {"eur", "EU", "EURO", "E1R"}) {
    Opportunity bad = opportunity;
    bad.set_currency_code(currency);
    EXPECT_EQ(ValidateResource(OpportunitySchema(), bad).code(), absl::StatusCode::kInvalidArgument) << currency;
  }
}

TEST(RecordSchema, RecordIdMustBeDecimal) {
  Opportunity opportunity;
  opportunity.set_name("Renewal");
  for (const char* id : {"abc", "-1", "0", "1e3", "123456789012345678901", " 12"}) {
    opportunity.set_account_id(id);
    EXPECT_EQ(ValidateResource(OpportunitySchema(), opportunity).code(), absl::StatusCode::kInvalidArgument)
        << id;
  }
  opportunity.set_account_id("42");
  EXPECT_TRUE(ValidateResource(OpportunitySchema(), opportunity).ok());
}

TEST(RecordSchema, TimestampOutsideDatetimeRange) {
  crm::data::v1::Activity activity;
  activity.set_type(crm::data::v1::ACTIVITY_TYPE_CALL);
  activity.set_subject("Call back");
  const ModuleSchema& schema = *SchemaForModule(crm::auth::v1::MODULE_ACTIVITY);
  activity.mutable_due_time()->set_seconds(253402300800);  // 10000-01-01
  EXPECT_EQ(ValidateResource(schema, activity).code(), absl::StatusCode::kInvalidArgument);
  activity.mutable_due_time()->set_seconds(1767225600);  // 2026-01-01
  EXPECT_TRUE(ValidateResource(schema, activity).ok());
}

TEST(RecordSchema, CreateDefaultsOnlyWhereMarked) {
  Lead lead = ValidLead();
  ApplyCreateDefaults(LeadSchema(), &lead);
  EXPECT_EQ(lead.status(), crm::data::v1::LEAD_STATUS_NEW);

  crm::data::v1::Activity activity;
  ApplyCreateDefaults(*SchemaForModule(crm::auth::v1::MODULE_ACTIVITY), &activity);
  EXPECT_EQ(activity.status(), crm::data::v1::ACTIVITY_STATUS_OPEN);
  EXPECT_EQ(activity.type(), crm::data::v1::ACTIVITY_TYPE_UNSPECIFIED) << "type is required, never defaulted";
  EXPECT_EQ(activity.related_module(), crm::auth::v1::MODULE_UNSPECIFIED);
}

}  // namespace
}  // namespace crm::data
