// Private app lifecycle against real servers: token reveal, rotation, scope
// edits, deletion, the 20-app limit under concurrency, and isolation
// between organizations for admin keys and app tokens.
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_CREATE;
using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_CONTACT;
using crm::auth::v1::MODULE_LEAD;

class PrivateAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start();
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_key_ = stack_->NewOrganization("Acme");
  }

  grpc::StatusCode ListLeadsCode(const std::string& token) {
    crm::data::v1::ListLeadsRequest request;
    crm::data::v1::ListLeadsResponse response;
    return stack_->crm().ListLeads(WithBearer(token).get(), request, &response).error_code();
  }

  grpc::StatusCode ListContactsCode(const std::string& token) {
    crm::data::v1::ListContactsRequest request;
    crm::data::v1::ListContactsResponse response;
    return stack_->crm().ListContacts(WithBearer(token).get(), request, &response).error_code();
  }

  std::string RevealToken(const std::string& app_id) {
    crm::auth::v1::GetAccessTokenRequest request;
    request.set_id(app_id);
    crm::auth::v1::GetAccessTokenResponse response;
    grpc::Status status = stack_->apps().GetAccessToken(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.access_token();
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
};

TEST_F(PrivateAppTest, RevealedTokenIsTheOneThatWorks) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  std::string revealed = RevealToken(app.private_app().id());
  EXPECT_EQ(revealed, app.access_token());
  EXPECT_EQ(ListLeadsCode(revealed), grpc::StatusCode::OK);
  EXPECT_EQ(app.private_app().token_hint().substr(0, 7), "crmpat_");
  EXPECT_EQ(app.private_app().token_hint().substr(app.private_app().token_hint().size() - 4),
            revealed.substr(revealed.size() - 4));
}

TEST_F(PrivateAppTest, RotationRejectsOldToken) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  ASSERT_EQ(ListLeadsCode(app.access_token()), grpc::StatusCode::OK);

  crm::auth::v1::RotateAccessTokenRequest rotate;
  rotate.set_id(app.private_app().id());
  crm::auth::v1::RotateAccessTokenResponse rotated;
  ASSERT_TRUE(stack_->apps().RotateAccessToken(WithBearer(admin_key_).get(), rotate, &rotated).ok());

  EXPECT_NE(rotated.access_token(), app.access_token());
  EXPECT_EQ(ListLeadsCode(app.access_token()), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListLeadsCode(rotated.access_token()), grpc::StatusCode::OK);
  EXPECT_EQ(RevealToken(app.private_app().id()), rotated.access_token());
}

TEST_F(PrivateAppTest, ScopeEditKeepsTokenAndAppliesNextCall) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  ASSERT_EQ(ListContactsCode(app.access_token()), grpc::StatusCode::PERMISSION_DENIED);

  crm::auth::v1::UpdatePrivateAppRequest update;
  update.mutable_private_app()->set_id(app.private_app().id());
  *update.mutable_private_app()->add_scopes() = MakeScope(MODULE_CONTACT, ACTION_READ);
  update.mutable_update_mask()->add_paths("scopes");
  crm::auth::v1::UpdatePrivateAppResponse updated;
  ASSERT_TRUE(stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), update, &updated).ok());

  EXPECT_EQ(RevealToken(app.private_app().id()), app.access_token());
  EXPECT_EQ(updated.private_app().token_hint(), app.private_app().token_hint());
  EXPECT_EQ(ListContactsCode(app.access_token()), grpc::StatusCode::OK);
  EXPECT_EQ(ListLeadsCode(app.access_token()), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(PrivateAppTest, DeleteRevokesToken) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  ASSERT_EQ(ListLeadsCode(app.access_token()), grpc::StatusCode::OK);

  crm::auth::v1::DeletePrivateAppRequest request;
  request.set_id(app.private_app().id());
  crm::auth::v1::DeletePrivateAppResponse response;
  ASSERT_TRUE(stack_->apps().DeletePrivateApp(WithBearer(admin_key_).get(), request, &response).ok());

  EXPECT_EQ(ListLeadsCode(app.access_token()), grpc::StatusCode::UNAUTHENTICATED);
  crm::auth::v1::GetPrivateAppRequest get;
  get.set_id(app.private_app().id());
  crm::auth::v1::GetPrivateAppResponse got;
  EXPECT_EQ(stack_->apps().GetPrivateApp(WithBearer(admin_key_).get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(PrivateAppTest, FortyConcurrentCreatesLeaveTwenty) {
  absl::Mutex mu;
  int created = 0;
  int limit_errors = 0;
  std::vector<std::string> other_errors;
  std::vector<std::thread> threads;
  for (int i = 0; i < 40; ++i) {
    threads.emplace_back([&, i] {
      crm::auth::v1::CreatePrivateAppRequest request;
      request.mutable_private_app()->set_display_name(absl::StrCat("App ", i));
      *request.mutable_private_app()->add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
      crm::auth::v1::CreatePrivateAppResponse response;
      grpc::Status status = stack_->apps().CreatePrivateApp(WithBearer(admin_key_).get(), request, &response);
      absl::MutexLock lock(&mu);
      if (status.ok()) {
        ++created;
      } else if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        ++limit_errors;
      } else {
        other_errors.push_back(absl::StrCat(status.error_code(), " ", status.error_message()));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(created, 20);
  EXPECT_EQ(limit_errors, 20);
  EXPECT_TRUE(other_errors.empty()) << other_errors.front();

  crm::auth::v1::ListPrivateAppsRequest list;
  list.set_page_size(20);
  crm::auth::v1::ListPrivateAppsResponse apps;
  ASSERT_TRUE(stack_->apps().ListPrivateApps(WithBearer(admin_key_).get(), list, &apps).ok());
  EXPECT_EQ(apps.private_apps_size(), 20);
  EXPECT_TRUE(apps.next_page_token().empty());
}

TEST_F(PrivateAppTest, AdminKeyIsolatedToItsOrganization) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  std::string other_admin = stack_->NewOrganization("Other");
  const std::string& id = app.private_app().id();

  crm::auth::v1::GetPrivateAppRequest get;
  get.set_id(id);
  crm::auth::v1::GetPrivateAppResponse got;
  EXPECT_EQ(stack_->apps().GetPrivateApp(WithBearer(other_admin).get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);

  crm::auth::v1::GetAccessTokenRequest reveal;
  reveal.set_id(id);
  crm::auth::v1::GetAccessTokenResponse revealed;
  EXPECT_EQ(stack_->apps().GetAccessToken(WithBearer(other_admin).get(), reveal, &revealed).error_code(),
            grpc::StatusCode::NOT_FOUND);

  crm::auth::v1::RotateAccessTokenRequest rotate;
  rotate.set_id(id);
  crm::auth::v1::RotateAccessTokenResponse rotated;
  EXPECT_EQ(stack_->apps().RotateAccessToken(WithBearer(other_admin).get(), rotate, &rotated).error_code(),
            grpc::StatusCode::NOT_FOUND);

  crm::auth::v1::UpdatePrivateAppRequest update;
  update.mutable_private_app()->set_id(id);
  update.mutable_private_app()->set_display_name("Hijacked");
  update.mutable_update_mask()->add_paths("display_name");
  crm::auth::v1::UpdatePrivateAppResponse updated;
  EXPECT_EQ(stack_->apps().UpdatePrivateApp(WithBearer(other_admin).get(), update, &updated).error_code(),
            grpc::StatusCode::NOT_FOUND);

  crm::auth::v1::DeletePrivateAppRequest remove;
  remove.set_id(id);
  crm::auth::v1::DeletePrivateAppResponse removed;
  EXPECT_EQ(stack_->apps().DeletePrivateApp(WithBearer(other_admin).get(), remove, &removed).error_code(),
            grpc::StatusCode::NOT_FOUND);

  crm::auth::v1::ListPrivateAppsRequest list;
  crm::auth::v1::ListPrivateAppsResponse listed;
  ASSERT_TRUE(stack_->apps().ListPrivateApps(WithBearer(other_admin).get(), list, &listed).ok());
  EXPECT_EQ(listed.private_apps_size(), 0);

  // Nothing changed for the owner: same name, same working token.
  ASSERT_TRUE(stack_->apps().GetPrivateApp(WithBearer(admin_key_).get(), get, &got).ok());
  EXPECT_EQ(got.private_app().display_name(), "Test app");
  EXPECT_EQ(ListLeadsCode(app.access_token()), grpc::StatusCode::OK);
}

TEST_F(PrivateAppTest, AppTokenIsolatedToItsOrganization) {
  auto all = AllScopes();
  auto owner = stack_->NewApp(admin_key_, all, "Owner");
  auto intruder = stack_->NewApp(stack_->NewOrganization("Other"), all, "Intruder");

  crm::data::v1::CreateLeadRequest create;
  create.mutable_lead()->set_last_name("Secret");
  crm::data::v1::CreateLeadResponse created;
  ASSERT_TRUE(stack_->crm().CreateLead(WithBearer(owner.access_token()).get(), create, &created).ok());
  const std::string& id = created.lead().id();

  crm::data::v1::GetLeadRequest get;
  get.set_id(id);
  crm::data::v1::GetLeadResponse got;
  EXPECT_EQ(stack_->crm().GetLead(WithBearer(intruder.access_token()).get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);

  crm::data::v1::UpdateLeadRequest update;
  update.mutable_lead()->set_id(id);
  update.mutable_lead()->set_last_name("Changed");
  update.mutable_update_mask()->add_paths("last_name");
  crm::data::v1::UpdateLeadResponse updated;
  EXPECT_EQ(stack_->crm().UpdateLead(WithBearer(intruder.access_token()).get(), update, &updated).error_code(),
            grpc::StatusCode::NOT_FOUND);

  crm::data::v1::DeleteLeadRequest remove;
  remove.set_id(id);
  crm::data::v1::DeleteLeadResponse removed;
  EXPECT_EQ(stack_->crm().DeleteLead(WithBearer(intruder.access_token()).get(), remove, &removed).error_code(),
            grpc::StatusCode::NOT_FOUND);

  crm::data::v1::ListLeadsRequest list;
  crm::data::v1::ListLeadsResponse listed;
  ASSERT_TRUE(stack_->crm().ListLeads(WithBearer(intruder.access_token()).get(), list, &listed).ok());
  EXPECT_EQ(listed.leads_size(), 0);

  ASSERT_TRUE(stack_->crm().GetLead(WithBearer(owner.access_token()).get(), get, &got).ok());
  EXPECT_EQ(got.lead().last_name(), "Secret");
}

TEST_F(PrivateAppTest, CredentialsAreNotInterchangeable) {
  auto app = stack_->NewApp(admin_key_, AllScopes());

  EXPECT_EQ(ListLeadsCode(admin_key_), grpc::StatusCode::UNAUTHENTICATED) << "admin key on CrmService";

  crm::auth::v1::ListPrivateAppsRequest list;
  crm::auth::v1::ListPrivateAppsResponse listed;
  EXPECT_EQ(stack_->apps().ListPrivateApps(WithBearer(app.access_token()).get(), list, &listed).error_code(),
            grpc::StatusCode::UNAUTHENTICATED)
      << "app token on PrivateAppService";
}

TEST_F(PrivateAppTest, BadTokensAreUnauthenticated) {
  auto app = stack_->NewApp(admin_key_, AllScopes());
  std::string token = app.access_token();
  std::string wrong_checksum = token;
  wrong_checksum.back() = wrong_checksum.back() == 'A' ? 'B' : 'A';

  EXPECT_EQ(ListLeadsCode(""), grpc::StatusCode::UNAUTHENTICATED) << "missing";
  EXPECT_EQ(ListLeadsCode("garbage"), grpc::StatusCode::UNAUTHENTICATED) << "malformed";
  EXPECT_EQ(ListLeadsCode(token.substr(0, token.size() - 1)), grpc::StatusCode::UNAUTHENTICATED) << "truncated";
  EXPECT_EQ(ListLeadsCode(wrong_checksum), grpc::StatusCode::UNAUTHENTICATED) << "checksum";

  // A well-formed token that was never issued.
  crm::auth::v1::DeletePrivateAppRequest remove;
  remove.set_id(app.private_app().id());
  crm::auth::v1::DeletePrivateAppResponse removed;
  ASSERT_TRUE(stack_->apps().DeletePrivateApp(WithBearer(admin_key_).get(), remove, &removed).ok());
  EXPECT_EQ(ListLeadsCode(token), grpc::StatusCode::UNAUTHENTICATED) << "unknown";

  crm::data::v1::ListLeadsRequest request;
  crm::data::v1::ListLeadsResponse response;
  grpc::ClientContext basic;
  basic.AddMetadata("authorization", "Basic dXNlcjpwYXNz");
  EXPECT_EQ(stack_->crm().ListLeads(&basic, request, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace crm::testing
