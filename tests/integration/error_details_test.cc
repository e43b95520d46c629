// Machine-readable error details as a client receives them from real
// servers: the google.rpc.Status in grpc-status-details-bin with its
// ErrorInfo (reason, domain, metadata) and BadRequest field violations.
#include <grpcpp/support/error_details.h>

#include <random>

#include "common/token.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_LEAD;

constexpr char kAuthDomain[] = "auth.crm.example";
constexpr char kDataDomain[] = "data.crm.example";

// What a client can read from a failed call's binary details.
struct Details {
  google::rpc::Status status;
  google::rpc::ErrorInfo info;
  google::rpc::BadRequest bad_request;
  bool has_info = false;
  bool has_bad_request = false;
};

Details ReadDetails(const grpc::Status& status) {
  Details details;
  EXPECT_FALSE(status.error_details().empty()) << "no binary details for: " << status.error_message();
  EXPECT_TRUE(grpc::ExtractErrorDetails(status, &details.status).ok());
  EXPECT_EQ(details.status.code(), static_cast<int>(status.error_code()));
  EXPECT_EQ(details.status.message(), status.error_message());
  for (const google::protobuf::Any& detail : details.status.details()) {
    if (detail.Is<google::rpc::ErrorInfo>()) details.has_info = detail.UnpackTo(&details.info);
    if (detail.Is<google::rpc::BadRequest>()) details.has_bad_request = detail.UnpackTo(&details.bad_request);
  }
  return details;
}

std::string Metadata(const Details& details, const std::string& key) {
  auto found = details.info.metadata().find(key);
  return found == details.info.metadata().end() ? "(missing)" : found->second;
}

// A well-formed token or admin key that the server never issued.
std::string UnissuedCredential(TokenKind kind) {
  std::random_device device;
  return GenerateToken(kind, [&](size_t count) {
    std::string bytes(count, '\0');
    for (char& byte : bytes) byte = static_cast<char>(device());
    return bytes;
  });
}

class ErrorDetailsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start();
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_key_ = stack_->NewOrganization("Acme");
  }

  grpc::Status GetLead(const std::string& token, const std::string& id = "1") {
    crm::data::v1::GetLeadRequest request;
    request.set_id(id);
    crm::data::v1::GetLeadResponse response;
    return stack_->crm().GetLead(WithBearer(token).get(), request, &response);
  }

  grpc::Status CreateApp(const crm::auth::v1::PrivateApp& app, const std::string& admin_key) {
    crm::auth::v1::CreatePrivateAppRequest request;
    *request.mutable_private_app() = app;
    crm::auth::v1::CreatePrivateAppResponse response;
    return stack_->apps().CreatePrivateApp(WithBearer(admin_key).get(), request, &response);
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
};

TEST_F(ErrorDetailsTest, ScopeMissingNamesScopesAndMethod) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  crm::data::v1::ListContactsRequest request;
  crm::data::v1::ListContactsResponse response;
  grpc::Status status = stack_->crm().ListContacts(WithBearer(app.access_token()).get(), request, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  Details details = ReadDetails(status);
  ASSERT_TRUE(details.has_info);
  EXPECT_EQ(details.info.reason(), "SCOPE_MISSING");
  EXPECT_EQ(details.info.domain(), kDataDomain);
  EXPECT_EQ(Metadata(details, "missing_scopes"), "CONTACT:READ");
  EXPECT_EQ(Metadata(details, "required_scopes"), "CONTACT:READ");
  EXPECT_EQ(Metadata(details, "method"), "crm.data.v1.CrmService.ListContacts");
}

TEST_F(ErrorDetailsTest, ScopeMissingListsOnlyTheMissingOnes) {
  // ConvertLead needs Lead Update and Account, Contact and Opportunity
  // Create; this app has only Lead Update and Contact Create.
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, crm::auth::v1::ACTION_UPDATE),
                                         MakeScope(crm::auth::v1::MODULE_CONTACT, crm::auth::v1::ACTION_CREATE)});
  crm::data::v1::ConvertLeadRequest request;
  request.set_id("1");
  crm::data::v1::ConvertLeadResponse response;
  grpc::Status status = stack_->crm().ConvertLead(WithBearer(app.access_token()).get(), request, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  Details details = ReadDetails(status);
  EXPECT_EQ(details.info.reason(), "SCOPE_MISSING");
  EXPECT_EQ(Metadata(details, "missing_scopes"), "ACCOUNT:CREATE,OPPORTUNITY:CREATE");
  EXPECT_EQ(Metadata(details, "required_scopes"), "LEAD:UPDATE,CONTACT:CREATE,ACCOUNT:CREATE,OPPORTUNITY:CREATE");
}

// Rotated, deleted, unknown and mistyped tokens get one response, so a
// caller cannot learn which kind of token it has tried.
TEST_F(ErrorDetailsTest, InvalidTokensLookAlike) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  ASSERT_EQ(GetLead(app.access_token()).error_code(), grpc::StatusCode::NOT_FOUND);

  crm::auth::v1::RotateAccessTokenRequest rotate;
  rotate.set_id(app.private_app().id());
  crm::auth::v1::RotateAccessTokenResponse rotated;
  ASSERT_TRUE(stack_->apps().RotateAccessToken(WithBearer(admin_key_).get(), rotate, &rotated).ok());
  stack_->AwaitApplied(rotated.invalidation_sequence());

  grpc::Status old_token = GetLead(app.access_token());
  ASSERT_EQ(old_token.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  Details details = ReadDetails(old_token);
  ASSERT_TRUE(details.has_info);
  EXPECT_EQ(details.info.reason(), "TOKEN_INVALID");
  EXPECT_EQ(details.info.domain(), kDataDomain);

  crm::auth::v1::DeletePrivateAppRequest remove;
  remove.set_id(app.private_app().id());
  crm::auth::v1::DeletePrivateAppResponse removed;
  ASSERT_TRUE(stack_->apps().DeletePrivateApp(WithBearer(admin_key_).get(), remove, &removed).ok());
  stack_->AwaitApplied(removed.invalidation_sequence());

  grpc::Status deleted = GetLead(rotated.access_token());
  grpc::Status unknown = GetLead(UnissuedCredential(TokenKind::kAppToken));
  std::string mistyped_token = rotated.access_token();
  mistyped_token.back() = mistyped_token.back() == 'A' ? 'B' : 'A';
  grpc::Status mistyped = GetLead(mistyped_token);
  for (const grpc::Status* other : {&deleted, &unknown, &mistyped}) {
    EXPECT_EQ(other->error_code(), old_token.error_code());
    EXPECT_EQ(other->error_message(), old_token.error_message());
    EXPECT_EQ(other->error_details(), old_token.error_details());
  }
}

TEST_F(ErrorDetailsTest, MissingMalformedAndUnknownTokens) {
  crm::data::v1::GetLeadRequest request;
  request.set_id("1");
  crm::data::v1::GetLeadResponse response;
  grpc::ClientContext no_header;
  grpc::Status missing = stack_->crm().GetLead(&no_header, request, &response);
  ASSERT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReadDetails(missing).info.reason(), "TOKEN_MISSING");

  grpc::ClientContext basic;
  basic.AddMetadata("authorization", "Basic dXNlcjpwYXNz");
  grpc::Status malformed = stack_->crm().GetLead(&basic, request, &response);
  ASSERT_EQ(malformed.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReadDetails(malformed).info.reason(), "TOKEN_MALFORMED");

  grpc::Status failed_format = GetLead("crmpat_not_a_real_token");
  ASSERT_EQ(failed_format.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReadDetails(failed_format).info.reason(), "TOKEN_INVALID");

  std::string unknown_token = UnissuedCredential(TokenKind::kAppToken);
  grpc::Status unknown = GetLead(unknown_token);
  ASSERT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReadDetails(unknown).info.reason(), "TOKEN_INVALID");
  EXPECT_EQ(unknown.error_details().find(unknown_token), std::string::npos) << "the details repeat the token";
}

TEST_F(ErrorDetailsTest, BadAdminKeyIsAdminKeyInvalid) {
  std::string unknown_key = UnissuedCredential(TokenKind::kAdminKey);
  crm::auth::v1::ListPrivateAppsRequest request;
  crm::auth::v1::ListPrivateAppsResponse response;
  grpc::Status status = stack_->apps().ListPrivateApps(WithBearer(unknown_key).get(), request, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  Details details = ReadDetails(status);
  ASSERT_TRUE(details.has_info);
  EXPECT_EQ(details.info.reason(), "ADMIN_KEY_INVALID");
  EXPECT_EQ(details.info.domain(), kAuthDomain);
  EXPECT_EQ(status.error_details().find(unknown_key), std::string::npos) << "the details repeat the admin key";
  EXPECT_EQ(status.error_message().find(unknown_key), std::string::npos) << "the message repeats the admin key";

  // A key that fails its format check looks like an unknown one.
  grpc::Status mistyped = stack_->apps().ListPrivateApps(WithBearer("crmadm_short").get(), request, &response);
  EXPECT_EQ(mistyped.error_code(), status.error_code());
  EXPECT_EQ(mistyped.error_message(), status.error_message());
  EXPECT_EQ(mistyped.error_details(), status.error_details());

  grpc::ClientContext basic;
  basic.AddMetadata("authorization", "Basic dXNlcjpwYXNz");
  grpc::Status malformed = stack_->apps().ListPrivateApps(&basic, request, &response);
  ASSERT_EQ(malformed.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReadDetails(malformed).info.reason(), "ADMIN_KEY_MALFORMED");
}

TEST_F(ErrorDetailsTest, InvalidAppCreateListsFieldViolation) {
  crm::auth::v1::PrivateApp app;
  *app.add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
  grpc::Status status = CreateApp(app, admin_key_);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  Details details = ReadDetails(status);
  ASSERT_TRUE(details.has_info);
  EXPECT_EQ(details.info.reason(), "VALIDATION_FAILED");
  EXPECT_EQ(details.info.domain(), kAuthDomain);
  ASSERT_TRUE(details.has_bad_request);
  ASSERT_EQ(details.bad_request.field_violations_size(), 1);
  EXPECT_EQ(details.bad_request.field_violations(0).field(), "private_app.display_name");
  EXPECT_EQ(details.bad_request.field_violations(0).description(), "private_app.display_name is required");

  app.set_display_name("Scopes wrong");
  app.mutable_scopes(0)->set_action(crm::auth::v1::ACTION_UNSPECIFIED);
  Details scopes = ReadDetails(CreateApp(app, admin_key_));
  ASSERT_TRUE(scopes.has_bad_request);
  EXPECT_EQ(scopes.bad_request.field_violations(0).field(), "private_app.scopes[0].action");
}

TEST_F(ErrorDetailsTest, TimeAndPagingErrorsNameTheField) {
  crm::auth::v1::PrivateApp app;
  app.set_display_name("Expired at birth");
  *app.add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
  app.mutable_token_expire_time()->set_seconds(1'577'836'800);  // 2020-01-01
  crm::auth::v1::ListAuditEventsRequest negative_page;
  negative_page.set_page_size(-1);
  crm::auth::v1::ListAuditEventsRequest reversed_range;
  reversed_range.mutable_start_time()->set_seconds(2'000'000'000);
  reversed_range.mutable_end_time()->set_seconds(1'000'000'000);
  crm::auth::v1::RotateAccessTokenRequest long_overlap;
  long_overlap.set_id(stack_->NewApp(admin_key_, AllScopes()).private_app().id());
  long_overlap.mutable_previous_token_overlap()->set_seconds(8 * 24 * 3600);

  crm::auth::v1::ListAuditEventsResponse events;
  crm::auth::v1::RotateAccessTokenResponse rotated;
  struct Case {
    grpc::Status status;
    std::string field;
  } cases[] = {
      {CreateApp(app, admin_key_), "private_app.token_expire_time"},
      {stack_->apps().ListAuditEvents(WithBearer(admin_key_).get(), negative_page, &events), "page_size"},
      {stack_->apps().ListAuditEvents(WithBearer(admin_key_).get(), reversed_range, &events), "start_time"},
      {stack_->apps().RotateAccessToken(WithBearer(admin_key_).get(), long_overlap, &rotated),
       "previous_token_overlap"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.field);
    ASSERT_EQ(test_case.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << test_case.status.error_message();
    Details details = ReadDetails(test_case.status);
    EXPECT_EQ(details.info.reason(), "VALIDATION_FAILED");
    ASSERT_TRUE(details.has_bad_request);
    ASSERT_EQ(details.bad_request.field_violations_size(), 1);
    EXPECT_EQ(details.bad_request.field_violations(0).field(), test_case.field);
  }
}

TEST_F(ErrorDetailsTest, InvalidLogoIsLogoInvalid) {
  crm::auth::v1::PrivateApp app;
  app.set_display_name("Logo");
  app.set_logo("GIF89a not a PNG or JPEG");
  *app.add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
  grpc::Status status = CreateApp(app, admin_key_);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  Details details = ReadDetails(status);
  EXPECT_EQ(details.info.reason(), "LOGO_INVALID");
  ASSERT_TRUE(details.has_bad_request);
  EXPECT_EQ(details.bad_request.field_violations(0).field(), "private_app.logo");
}

TEST_F(ErrorDetailsTest, AppLimitReachedGivesTheLimit) {
  for (int i = 0; i < 20; ++i) stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  crm::auth::v1::PrivateApp app;
  app.set_display_name("One too many");
  *app.add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
  grpc::Status status = CreateApp(app, admin_key_);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  Details details = ReadDetails(status);
  EXPECT_EQ(details.info.reason(), "APP_LIMIT_REACHED");
  EXPECT_EQ(Metadata(details, "max_apps_per_organization"), "20");
}

TEST_F(ErrorDetailsTest, InvalidLeadFieldIsPrefixedWithRequestField) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, crm::auth::v1::ACTION_CREATE)});
  crm::data::v1::CreateLeadRequest request;
  request.mutable_lead()->set_last_name("Lovelace");
  request.mutable_lead()->set_email("not an address");
  crm::data::v1::CreateLeadResponse response;
  grpc::Status status = stack_->crm().CreateLead(WithBearer(app.access_token()).get(), request, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  Details details = ReadDetails(status);
  EXPECT_EQ(details.info.reason(), "VALIDATION_FAILED");
  EXPECT_EQ(details.info.domain(), kDataDomain);
  ASSERT_TRUE(details.has_bad_request);
  ASSERT_EQ(details.bad_request.field_violations_size(), 1);
  EXPECT_EQ(details.bad_request.field_violations(0).field(), "lead.email");
}

TEST_F(ErrorDetailsTest, NotFoundAndStaleEtag) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ),
                                         MakeScope(MODULE_LEAD, crm::auth::v1::ACTION_CREATE),
                                         MakeScope(MODULE_LEAD, crm::auth::v1::ACTION_UPDATE)});
  grpc::Status missing = GetLead(app.access_token(), "987654321");
  ASSERT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  Details not_found = ReadDetails(missing);
  EXPECT_EQ(not_found.info.reason(), "RESOURCE_NOT_FOUND");
  EXPECT_EQ(Metadata(not_found, "resource_type"), "lead");
  EXPECT_EQ(Metadata(not_found, "resource_id"), "987654321");

  crm::data::v1::CreateLeadRequest create;
  create.mutable_lead()->set_last_name("Hopper");
  crm::data::v1::CreateLeadResponse created;
  ASSERT_TRUE(stack_->crm().CreateLead(WithBearer(app.access_token()).get(), create, &created).ok());
  crm::data::v1::UpdateLeadRequest update;
  *update.mutable_lead() = created.lead();
  update.mutable_lead()->set_company("Navy");
  update.mutable_update_mask()->add_paths("company");
  crm::data::v1::UpdateLeadResponse updated;
  ASSERT_TRUE(stack_->crm().UpdateLead(WithBearer(app.access_token()).get(), update, &updated).ok());

  grpc::Status stale = stack_->crm().UpdateLead(WithBearer(app.access_token()).get(), update, &updated);
  ASSERT_EQ(stale.error_code(), grpc::StatusCode::ABORTED);
  Details mismatch = ReadDetails(stale);
  EXPECT_EQ(mismatch.info.reason(), "ETAG_MISMATCH");
  EXPECT_EQ(Metadata(mismatch, "resource_id"), created.lead().id());
}

TEST_F(ErrorDetailsTest, FilterErrorGivesPosition) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  crm::data::v1::ListLeadsRequest request;
  request.set_filter("last_name = \"Hopper\" AND nonsense = 1");
  crm::data::v1::ListLeadsResponse response;
  grpc::Status status = stack_->crm().ListLeads(WithBearer(app.access_token()).get(), request, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  Details details = ReadDetails(status);
  EXPECT_EQ(details.info.reason(), "INVALID_FILTER");
  EXPECT_EQ(Metadata(details, "position"), "26");
  ASSERT_TRUE(details.has_bad_request);
  EXPECT_EQ(details.bad_request.field_violations(0).field(), "filter");

  crm::data::v1::ListLeadsRequest paged;
  paged.set_page_token("bm90IGEgdG9rZW4");
  grpc::Status bad_page = stack_->crm().ListLeads(WithBearer(app.access_token()).get(), paged, &response);
  ASSERT_EQ(bad_page.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ReadDetails(bad_page).info.reason(), "INVALID_PAGE_TOKEN");
}

}  // namespace
}  // namespace crm::testing
