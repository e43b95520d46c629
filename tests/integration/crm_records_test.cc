// CRM record operations against real servers and MariaDB: round trips,
// update masks, keyset paging with page tokens, and input checks.
#include <set>

#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

class CrmRecordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start();
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_key_ = stack_->NewOrganization();
    token_ = stack_->NewApp(admin_key_, AllScopes()).access_token();
  }

  grpc::Status CreateLead(const crm::data::v1::Lead& lead, crm::data::v1::Lead* out) {
    crm::data::v1::CreateLeadRequest request;
    *request.mutable_lead() = lead;
    crm::data::v1::CreateLeadResponse response;
    grpc::Status status = stack_->crm().CreateLead(WithBearer(token_).get(), request, &response);
    if (out != nullptr) *out = response.lead();
    return status;
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
  std::string token_;
};

TEST_F(CrmRecordsTest, LeadRoundTrip) {
  crm::data::v1::Lead lead;
  lead.set_first_name("Ada");
  lead.set_last_name("Lovelace");
  lead.set_email("ada@example.com");
  lead.set_source("web form");
  crm::data::v1::Lead created;
  ASSERT_TRUE(CreateLead(lead, &created).ok());
  EXPECT_FALSE(created.id().empty());
  EXPECT_EQ(created.status(), crm::data::v1::LEAD_STATUS_NEW);
  EXPECT_GT(created.create_time().seconds(), 0);

  crm::data::v1::GetLeadRequest get;
  get.set_id(created.id());
  crm::data::v1::GetLeadResponse got;
  ASSERT_TRUE(stack_->crm().GetLead(WithBearer(token_).get(), get, &got).ok());
  EXPECT_EQ(got.lead().SerializeAsString(), created.SerializeAsString())
      << got.lead().DebugString() << " vs " << created.DebugString();
}

TEST_F(CrmRecordsTest, TextStoredVerbatim) {
  crm::data::v1::Lead lead;
  lead.set_last_name("O'Brien\"; DROP TABLE leads; --");
  lead.set_company("K\xC3\xB6ln \xF0\x9F\x98\x80 %_\\");
  crm::data::v1::Lead created;
  ASSERT_TRUE(CreateLead(lead, &created).ok());

  crm::data::v1::GetLeadRequest get;
  get.set_id(created.id());
  crm::data::v1::GetLeadResponse got;
  ASSERT_TRUE(stack_->crm().GetLead(WithBearer(token_).get(), get, &got).ok());
  EXPECT_EQ(got.lead().last_name(), lead.last_name());
  EXPECT_EQ(got.lead().company(), lead.company());
}

TEST_F(CrmRecordsTest, TimestampsAndDatesRoundTrip) {
  crm::data::v1::CreateOpportunityRequest request;
  request.mutable_opportunity()->set_name("Renewal");
  request.mutable_opportunity()->set_amount_micros(-1234567);
  request.mutable_opportunity()->set_currency_code("EUR");
  request.mutable_opportunity()->set_close_date("2027-02-28");
  crm::data::v1::CreateOpportunityResponse created;
  ASSERT_TRUE(stack_->crm().CreateOpportunity(WithBearer(token_).get(), request, &created).ok());

  crm::data::v1::CreateActivityRequest activity;
  activity.mutable_activity()->set_type(crm::data::v1::ACTIVITY_TYPE_MEETING);
  activity.mutable_activity()->set_subject("Kick-off");
  activity.mutable_activity()->mutable_due_time()->set_seconds(1800000000);
  activity.mutable_activity()->mutable_due_time()->set_nanos(123456000);
  crm::data::v1::CreateActivityResponse created_activity;
  ASSERT_TRUE(stack_->crm().CreateActivity(WithBearer(token_).get(), activity, &created_activity).ok());

  crm::data::v1::GetOpportunityRequest get;
  get.set_id(created.opportunity().id());
  crm::data::v1::GetOpportunityResponse got;
  ASSERT_TRUE(stack_->crm().GetOpportunity(WithBearer(token_).get(), get, &got).ok());
  EXPECT_EQ(got.opportunity().close_date(), "2027-02-28");
  EXPECT_EQ(got.opportunity().amount_micros(), -1234567);
  EXPECT_EQ(got.opportunity().stage(), crm::data::v1::OPPORTUNITY_STAGE_PROSPECTING);

  crm::data::v1::GetActivityRequest get_activity;
  get_activity.set_id(created_activity.activity().id());
  crm::data::v1::GetActivityResponse got_activity;
  ASSERT_TRUE(stack_->crm().GetActivity(WithBearer(token_).get(), get_activity, &got_activity).ok());
  EXPECT_EQ(got_activity.activity().due_time().seconds(), 1800000000);
  EXPECT_EQ(got_activity.activity().due_time().nanos(), 123456000);
}

TEST_F(CrmRecordsTest, UpdateWithMask) {
  crm::data::v1::Lead lead;
  lead.set_last_name("Lovelace");
  lead.set_company("Analytical Engines");
  crm::data::v1::Lead created;
  ASSERT_TRUE(CreateLead(lead, &created).ok());

  crm::data::v1::UpdateLeadRequest update;
  update.mutable_lead()->set_id(created.id());
  update.mutable_lead()->set_title("Countess");
  update.mutable_lead()->set_company("ignored: not in the mask");
  update.mutable_update_mask()->add_paths("title");
  crm::data::v1::UpdateLeadResponse updated;
  ASSERT_TRUE(stack_->crm().UpdateLead(WithBearer(token_).get(), update, &updated).ok());
  EXPECT_EQ(updated.lead().title(), "Countess");
  EXPECT_EQ(updated.lead().company(), "Analytical Engines");
  EXPECT_EQ(updated.lead().last_name(), "Lovelace");

  // An empty mask changes every field set in the request.
  crm::data::v1::UpdateLeadRequest implicit;
  implicit.mutable_lead()->set_id(created.id());
  implicit.mutable_lead()->set_company("Babbage & Co");
  ASSERT_TRUE(stack_->crm().UpdateLead(WithBearer(token_).get(), implicit, &updated).ok());
  EXPECT_EQ(updated.lead().company(), "Babbage & Co");
  EXPECT_EQ(updated.lead().title(), "Countess");
}

TEST_F(CrmRecordsTest, UpdateRejectsBadMasksAndValues) {
  crm::data::v1::Lead lead;
  lead.set_last_name("Lovelace");
  crm::data::v1::Lead created;
  ASSERT_TRUE(CreateLead(lead, &created).ok());

  for (const char* path : {"id", "create_time", "update_time", "no_such_field"}) {
    crm::data::v1::UpdateLeadRequest update;
    update.mutable_lead()->set_id(created.id());
    update.mutable_update_mask()->add_paths(path);
    crm::data::v1::UpdateLeadResponse updated;
    EXPECT_EQ(stack_->crm().UpdateLead(WithBearer(token_).get(), update, &updated).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << path;
  }

  // Clearing a required field through the mask is rejected.
  crm::data::v1::UpdateLeadRequest clear;
  clear.mutable_lead()->set_id(created.id());
  clear.mutable_update_mask()->add_paths("last_name");
  crm::data::v1::UpdateLeadResponse updated;
  EXPECT_EQ(stack_->crm().UpdateLead(WithBearer(token_).get(), clear, &updated).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  crm::data::v1::UpdateLeadRequest missing;
  missing.mutable_lead()->set_id("999999999");
  missing.mutable_lead()->set_title("x");
  EXPECT_EQ(stack_->crm().UpdateLead(WithBearer(token_).get(), missing, &updated).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(CrmRecordsTest, CreateRejectsInvalidInput) {
  crm::data::v1::Lead no_name;
  EXPECT_EQ(CreateLead(no_name, nullptr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  crm::data::v1::Lead long_name;
  long_name.set_last_name(std::string(101, 'x'));
  EXPECT_EQ(CreateLead(long_name, nullptr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  crm::data::v1::CreateLeadRequest empty;
  crm::data::v1::CreateLeadResponse response;
  EXPECT_EQ(stack_->crm().CreateLead(WithBearer(token_).get(), empty, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  crm::data::v1::ListLeadsRequest list;
  crm::data::v1::ListLeadsResponse leads;
  ASSERT_TRUE(stack_->crm().ListLeads(WithBearer(token_).get(), list, &leads).ok());
  EXPECT_EQ(leads.leads_size(), 0) << "rejected creates stored nothing";
}

TEST_F(CrmRecordsTest, ListPagesThroughAllRecords) {
  std::set<std::string> created_ids;
  for (int i = 0; i < 7; ++i) {
    crm::data::v1::Lead lead;
    lead.set_last_name(absl::StrCat("Lead ", i));
    crm::data::v1::Lead created;
    ASSERT_TRUE(CreateLead(lead, &created).ok());
    created_ids.insert(created.id());
  }

  std::set<std::string> listed_ids;
  std::string page_token;
  int pages = 0;
  do {
    crm::data::v1::ListLeadsRequest request;
    request.set_page_size(3);
    request.set_page_token(page_token);
    crm::data::v1::ListLeadsResponse response;
    ASSERT_TRUE(stack_->crm().ListLeads(WithBearer(token_).get(), request, &response).ok());
    EXPECT_LE(response.leads_size(), 3);
    for (const auto& lead : response.leads()) EXPECT_TRUE(listed_ids.insert(lead.id()).second) << "repeated id";
    page_token = response.next_page_token();
    ++pages;
  } while (!page_token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(listed_ids, created_ids);
}

TEST_F(CrmRecordsTest, ListRejectsBadPaging) {
  crm::data::v1::ListLeadsRequest negative;
  negative.set_page_size(-1);
  crm::data::v1::ListLeadsResponse response;
  EXPECT_EQ(stack_->crm().ListLeads(WithBearer(token_).get(), negative, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  crm::data::v1::ListLeadsRequest garbage;
  garbage.set_page_token("not-a-token");
  EXPECT_EQ(stack_->crm().ListLeads(WithBearer(token_).get(), garbage, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // A token issued to another organization is rejected.
  std::string other_token = stack_->NewApp(stack_->NewOrganization("Other"), AllScopes()).access_token();
  for (int i = 0; i < 2; ++i) {
    crm::data::v1::Lead lead;
    lead.set_last_name("Other");
    crm::data::v1::CreateLeadRequest create;
    *create.mutable_lead() = lead;
    crm::data::v1::CreateLeadResponse created;
    ASSERT_TRUE(stack_->crm().CreateLead(WithBearer(other_token).get(), create, &created).ok());
  }
  crm::data::v1::ListLeadsRequest first;
  first.set_page_size(1);
  ASSERT_TRUE(stack_->crm().ListLeads(WithBearer(other_token).get(), first, &response).ok());
  ASSERT_FALSE(response.next_page_token().empty());
  crm::data::v1::ListLeadsRequest foreign;
  foreign.set_page_token(response.next_page_token());
  EXPECT_EQ(stack_->crm().ListLeads(WithBearer(token_).get(), foreign, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Oversized pages are capped, not rejected.
  crm::data::v1::ListLeadsRequest huge;
  huge.set_page_size(2147483647);
  EXPECT_TRUE(stack_->crm().ListLeads(WithBearer(token_).get(), huge, &response).ok());
}

TEST_F(CrmRecordsTest, DeleteThenGetIsNotFound) {
  crm::data::v1::Lead lead;
  lead.set_last_name("Gone");
  crm::data::v1::Lead created;
  ASSERT_TRUE(CreateLead(lead, &created).ok());

  crm::data::v1::DeleteLeadRequest remove;
  remove.set_id(created.id());
  crm::data::v1::DeleteLeadResponse removed;
  ASSERT_TRUE(stack_->crm().DeleteLead(WithBearer(token_).get(), remove, &removed).ok());
  EXPECT_EQ(stack_->crm().DeleteLead(WithBearer(token_).get(), remove, &removed).error_code(),
            grpc::StatusCode::NOT_FOUND);

  crm::data::v1::GetLeadRequest get;
  get.set_id(created.id());
  crm::data::v1::GetLeadResponse got;
  EXPECT_EQ(stack_->crm().GetLead(WithBearer(token_).get(), get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  get.set_id("not-a-number");
  EXPECT_EQ(stack_->crm().GetLead(WithBearer(token_).get(), get, &got).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace crm::testing
