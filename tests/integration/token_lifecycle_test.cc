// Token lifecycle against real servers and MariaDB, with two CRM servers
// whose token caches are in use: rotation with an overlap, ending and
// cancelling it, token expiry, GetTokenInfo, the audit log, the reveal
// policy and last_used_time.
#include <google/protobuf/util/time_util.h>

#include <set>

#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_CREATE;
using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_CONTACT;
using crm::auth::v1::MODULE_LEAD;
using google::protobuf::util::TimeUtil;

absl::Time ToTime(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(timestamp));
}

// The server stores times to the microsecond.
absl::Time MicrosFromNow(absl::Duration offset) {
  return absl::FromUnixMicros(absl::ToUnixMicros(absl::Now() + offset));
}

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(time));
}

class TokenLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StackOptions options;
    options.crm_servers = 2;
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_key_ = stack_->NewOrganization("Acme");
    ASSERT_TRUE(stack_->AwaitCurrent());
  }

  grpc::StatusCode ListLeads(size_t server, const std::string& token) {
    crm::data::v1::ListLeadsRequest request;
    crm::data::v1::ListLeadsResponse response;
    return stack_->crm(server).ListLeads(WithBearer(token).get(), request, &response).error_code();
  }

  crm::data::v1::GetServerStatusResponse Status(size_t server) { return stack_->ServerStatus(server); }

  // Calls both CRM servers with `token` and checks that each served calls
  // from its cache, so the checks that follow exercise cached claims.
  void WarmCaches(const std::string& token) {
    for (size_t server = 0; server < 2; ++server) {
      int64_t hits_before = Status(server).cache_hits();
      for (int i = 0; i < 3; ++i) ASSERT_EQ(ListLeads(server, token), grpc::StatusCode::OK) << "server " << server;
      EXPECT_GT(Status(server).cache_hits(), hits_before) << "server " << server;
    }
  }

  void ExpectOnBothServers(const std::string& token, grpc::StatusCode expected, const std::string& label) {
    EXPECT_EQ(ListLeads(0, token), expected) << label << " on CRM server 0";
    EXPECT_EQ(ListLeads(1, token), expected) << label << " on CRM server 1";
  }

  crm::auth::v1::RotateAccessTokenResponse Rotate(const std::string& app_id, absl::Duration overlap) {
    crm::auth::v1::RotateAccessTokenRequest request;
    request.set_id(app_id);
    if (overlap != absl::ZeroDuration()) {
      *request.mutable_previous_token_overlap() = TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(overlap));
    }
    crm::auth::v1::RotateAccessTokenResponse response;
    grpc::Status status = stack_->apps().RotateAccessToken(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  crm::auth::v1::PrivateApp GetApp(const std::string& app_id) {
    crm::auth::v1::GetPrivateAppRequest request;
    request.set_id(app_id);
    crm::auth::v1::GetPrivateAppResponse response;
    grpc::Status status = stack_->apps().GetPrivateApp(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.private_app();
  }

  grpc::Status Reveal(const std::string& app_id, std::string* token) {
    crm::auth::v1::GetAccessTokenRequest request;
    request.set_id(app_id);
    crm::auth::v1::GetAccessTokenResponse response;
    grpc::Status status = stack_->apps().GetAccessToken(WithBearer(admin_key_).get(), request, &response);
    *token = response.access_token();
    return status;
  }

  grpc::Status TokenInfo(const std::string& token, crm::data::v1::GetTokenInfoResponse* response) {
    return stack_->crm().GetTokenInfo(WithBearer(token).get(), {}, response);
  }

  std::vector<crm::auth::v1::AuditEvent> AuditEvents(crm::auth::v1::ListAuditEventsRequest request) {
    crm::auth::v1::ListAuditEventsResponse response;
    grpc::Status status = stack_->apps().ListAuditEvents(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.audit_events().begin(), response.audit_events().end()};
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
};

TEST_F(TokenLifecycleTest, OverlapKeepsBothTokensWorking) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  WarmCaches(app.access_token());

  absl::Time before = absl::Now();
  auto rotated = Rotate(app.private_app().id(), absl::Hours(1));
  absl::Time after = absl::Now();
  stack_->AwaitApplied(rotated.invalidation_sequence());

  ExpectOnBothServers(app.access_token(), grpc::StatusCode::OK, "previous token during the overlap");
  ExpectOnBothServers(rotated.access_token(), grpc::StatusCode::OK, "new token");

  crm::auth::v1::PrivateApp shown = GetApp(app.private_app().id());
  EXPECT_EQ(shown.token_hint(), rotated.private_app().token_hint());
  EXPECT_EQ(shown.previous_token_hint(), app.private_app().token_hint());
  ASSERT_TRUE(shown.has_previous_token_expire_time());
  absl::Time overlap_end = ToTime(shown.previous_token_expire_time());
  EXPECT_GE(overlap_end, before + absl::Hours(1));
  EXPECT_LE(overlap_end, after + absl::Hours(1));
  EXPECT_EQ(rotated.private_app().previous_token_hint(), app.private_app().token_hint());

  crm::data::v1::GetTokenInfoResponse old_info;
  ASSERT_TRUE(TokenInfo(app.access_token(), &old_info).ok());
  EXPECT_EQ(ToTime(old_info.expire_time()), overlap_end);
  crm::data::v1::GetTokenInfoResponse new_info;
  ASSERT_TRUE(TokenInfo(rotated.access_token(), &new_info).ok());
  EXPECT_FALSE(new_info.has_expire_time());

  // A second rotation revokes the token that was previous before it.
  auto again = Rotate(app.private_app().id(), absl::Hours(1));
  stack_->AwaitApplied(again.invalidation_sequence());
  ExpectOnBothServers(app.access_token(), grpc::StatusCode::UNAUTHENTICATED, "token two rotations old");
  ExpectOnBothServers(rotated.access_token(), grpc::StatusCode::OK, "previous token of the second rotation");
  EXPECT_EQ(GetApp(app.private_app().id()).previous_token_hint(), rotated.private_app().token_hint());
}

TEST_F(TokenLifecycleTest, OverlapLimitsAreChecked) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  for (absl::Duration overlap : {absl::Hours(7 * 24) + absl::Seconds(1), absl::Seconds(-1)}) {
    crm::auth::v1::RotateAccessTokenRequest request;
    request.set_id(app.private_app().id());
    *request.mutable_previous_token_overlap() = TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(overlap));
    crm::auth::v1::RotateAccessTokenResponse response;
    EXPECT_EQ(stack_->apps().RotateAccessToken(WithBearer(admin_key_).get(), request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << absl::FormatDuration(overlap);
  }
  auto rotated = Rotate(app.private_app().id(), absl::Hours(7 * 24));
  EXPECT_FALSE(rotated.access_token().empty());
  EXPECT_EQ(ListLeads(0, app.access_token()), grpc::StatusCode::OK);

  // Without an overlap the previous token stops at once, as before.
  auto immediate = Rotate(app.private_app().id(), absl::ZeroDuration());
  stack_->AwaitApplied(immediate.invalidation_sequence());
  ExpectOnBothServers(rotated.access_token(), grpc::StatusCode::UNAUTHENTICATED, "token rotated without overlap");
  EXPECT_TRUE(immediate.private_app().previous_token_hint().empty());
}

TEST_F(TokenLifecycleTest, EndOverlapEnforcedOnEveryInstance) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  auto rotated = Rotate(app.private_app().id(), absl::Hours(1));
  stack_->AwaitApplied(rotated.invalidation_sequence());
  WarmCaches(app.access_token());
  WarmCaches(rotated.access_token());

  crm::auth::v1::EndAccessTokenOverlapRequest request;
  request.set_id(app.private_app().id());
  crm::auth::v1::EndAccessTokenOverlapResponse response;
  ASSERT_TRUE(stack_->apps().EndAccessTokenOverlap(WithBearer(admin_key_).get(), request, &response).ok());
  ASSERT_GT(response.invalidation_sequence(), rotated.invalidation_sequence());
  stack_->AwaitApplied(response.invalidation_sequence());

  ExpectOnBothServers(app.access_token(), grpc::StatusCode::UNAUTHENTICATED, "previous token after the end");
  ExpectOnBothServers(rotated.access_token(), grpc::StatusCode::OK, "current token after the end");
  EXPECT_TRUE(response.private_app().previous_token_hint().empty());
  EXPECT_FALSE(response.private_app().has_previous_token_expire_time());

  EXPECT_EQ(stack_->apps().EndAccessTokenOverlap(WithBearer(admin_key_).get(), request, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(TokenLifecycleTest, CancelRotationEnforcedOnEveryInstance) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  auto rotated = Rotate(app.private_app().id(), absl::Hours(1));
  stack_->AwaitApplied(rotated.invalidation_sequence());
  WarmCaches(app.access_token());
  WarmCaches(rotated.access_token());

  crm::auth::v1::CancelAccessTokenRotationRequest request;
  request.set_id(app.private_app().id());
  crm::auth::v1::CancelAccessTokenRotationResponse response;
  ASSERT_TRUE(stack_->apps().CancelAccessTokenRotation(WithBearer(admin_key_).get(), request, &response).ok());
  stack_->AwaitApplied(response.invalidation_sequence());

  ExpectOnBothServers(rotated.access_token(), grpc::StatusCode::UNAUTHENTICATED, "cancelled token");
  ExpectOnBothServers(app.access_token(), grpc::StatusCode::OK, "restored token");
  EXPECT_EQ(response.private_app().token_hint(), app.private_app().token_hint());
  EXPECT_TRUE(response.private_app().previous_token_hint().empty());

  // The restored token is current again: it no longer expires and is the
  // one revealed.
  crm::data::v1::GetTokenInfoResponse info;
  ASSERT_TRUE(TokenInfo(app.access_token(), &info).ok());
  EXPECT_FALSE(info.has_expire_time());
  std::string revealed;
  ASSERT_TRUE(Reveal(app.private_app().id(), &revealed).ok());
  EXPECT_EQ(revealed, app.access_token());

  EXPECT_EQ(stack_->apps().CancelAccessTokenRotation(WithBearer(admin_key_).get(), request, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

// The end of an overlap reaches no CRM server as an invalidation entry: the
// cached claims carry the expiry, and each server checks it on every hit.
TEST_F(TokenLifecycleTest, OverlapEndsOnScheduleWithoutEntry) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  auto rotated = Rotate(app.private_app().id(), absl::Seconds(2));
  stack_->AwaitApplied(rotated.invalidation_sequence());
  WarmCaches(app.access_token());
  absl::Time overlap_end = ToTime(rotated.private_app().previous_token_expire_time());
  ASSERT_GT(overlap_end, absl::Now()) << "the overlap ended before the caches were warm";

  absl::SleepFor(overlap_end - absl::Now() + absl::Milliseconds(50));
  ExpectOnBothServers(app.access_token(), grpc::StatusCode::UNAUTHENTICATED, "previous token after its overlap");
  ExpectOnBothServers(rotated.access_token(), grpc::StatusCode::OK, "current token");
  EXPECT_EQ(stack_->AppliedSequence(0), rotated.invalidation_sequence());
  EXPECT_EQ(stack_->AppliedSequence(1), rotated.invalidation_sequence());
  EXPECT_TRUE(GetApp(app.private_app().id()).previous_token_hint().empty());
}

TEST_F(TokenLifecycleTest, TokenExpiryShownAndEnforced) {
  crm::auth::v1::CreatePrivateAppRequest create;
  create.mutable_private_app()->set_display_name("Expiring");
  *create.mutable_private_app()->add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
  *create.mutable_private_app()->mutable_token_expire_time() = ToTimestamp(absl::Now() - absl::Seconds(1));
  crm::auth::v1::CreatePrivateAppResponse created;
  EXPECT_EQ(stack_->apps().CreatePrivateApp(WithBearer(admin_key_).get(), create, &created).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  absl::Time expiry = MicrosFromNow(absl::Seconds(2));
  *create.mutable_private_app()->mutable_token_expire_time() = ToTimestamp(expiry);
  ASSERT_TRUE(stack_->apps().CreatePrivateApp(WithBearer(admin_key_).get(), create, &created).ok());
  EXPECT_EQ(ToTime(GetApp(created.private_app().id()).token_expire_time()), expiry);
  WarmCaches(created.access_token());
  crm::data::v1::GetTokenInfoResponse info;
  ASSERT_TRUE(TokenInfo(created.access_token(), &info).ok());
  EXPECT_EQ(ToTime(info.expire_time()), expiry);

  absl::SleepFor(expiry - absl::Now() + absl::Milliseconds(50));
  ExpectOnBothServers(created.access_token(), grpc::StatusCode::UNAUTHENTICATED, "expired token");

  // An expiry set through UpdatePrivateApp applies from its invalidation
  // entry on. Clearing it removes the expiry while the token is valid.
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  WarmCaches(app.access_token());
  crm::auth::v1::UpdatePrivateAppRequest update;
  update.mutable_private_app()->set_id(app.private_app().id());
  absl::Time cleared = MicrosFromNow(absl::Seconds(3));
  *update.mutable_private_app()->mutable_token_expire_time() = ToTimestamp(cleared);
  update.mutable_update_mask()->add_paths("token_expire_time");
  crm::auth::v1::UpdatePrivateAppResponse updated;
  ASSERT_TRUE(stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), update, &updated).ok());
  stack_->AwaitApplied(updated.invalidation_sequence());
  WarmCaches(app.access_token());
  update.mutable_private_app()->clear_token_expire_time();
  ASSERT_TRUE(stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), update, &updated).ok());
  EXPECT_FALSE(updated.private_app().has_token_expire_time());
  stack_->AwaitApplied(updated.invalidation_sequence());
  absl::SleepFor(cleared - absl::Now() + absl::Milliseconds(50));
  ExpectOnBothServers(app.access_token(), grpc::StatusCode::OK, "token past its cleared expiry");

  absl::Time soon = MicrosFromNow(absl::Seconds(2));
  *update.mutable_private_app()->mutable_token_expire_time() = ToTimestamp(soon);
  ASSERT_TRUE(stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), update, &updated).ok());
  ASSERT_GT(updated.invalidation_sequence(), 0);
  EXPECT_EQ(ToTime(updated.private_app().token_expire_time()), soon);
  stack_->AwaitApplied(updated.invalidation_sequence());
  WarmCaches(app.access_token());
  absl::SleepFor(soon - absl::Now() + absl::Milliseconds(50));
  ExpectOnBothServers(app.access_token(), grpc::StatusCode::UNAUTHENTICATED, "token past its updated expiry");

  // An expired token stays expired. Neither a later expiry nor a cleared one
  // brings it back, and the app still shows when it expired.
  *update.mutable_private_app()->mutable_token_expire_time() = ToTimestamp(MicrosFromNow(absl::Hours(1)));
  grpc::Status extended = stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), update, &updated);
  EXPECT_EQ(extended.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << extended.error_message();
  EXPECT_NE(extended.error_message().find("rotate the token"), std::string::npos) << extended.error_message();
  update.mutable_private_app()->clear_token_expire_time();
  EXPECT_EQ(stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), update, &updated).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ToTime(GetApp(app.private_app().id()).token_expire_time()), soon);
  ExpectOnBothServers(app.access_token(), grpc::StatusCode::UNAUTHENTICATED, "expired token after rejected edits");

  // A rotation replaces it, and the new token has the requested expiry.
  crm::auth::v1::RotateAccessTokenRequest rotate;
  rotate.set_id(app.private_app().id());
  absl::Time later = MicrosFromNow(absl::Hours(24));
  *rotate.mutable_new_token_expire_time() = ToTimestamp(later);
  crm::auth::v1::RotateAccessTokenResponse rotated;
  ASSERT_TRUE(stack_->apps().RotateAccessToken(WithBearer(admin_key_).get(), rotate, &rotated).ok());
  EXPECT_EQ(ToTime(rotated.private_app().token_expire_time()), later);
  stack_->AwaitApplied(rotated.invalidation_sequence());
  ExpectOnBothServers(rotated.access_token(), grpc::StatusCode::OK, "rotated token");
}

TEST_F(TokenLifecycleTest, TokenInfoNeedsNoScope) {
  // Contact Create grants no read at all, yet the token may read its own
  // claims.
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_CONTACT, ACTION_CREATE)});
  crm::data::v1::GetTokenInfoResponse info;
  grpc::Status status = TokenInfo(app.access_token(), &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(info.organization_id(), app.private_app().organization_id());
  EXPECT_EQ(info.app_id(), app.private_app().id());
  ASSERT_EQ(info.scopes_size(), 1);
  EXPECT_EQ(info.scopes(0).module(), MODULE_CONTACT);
  EXPECT_EQ(info.scopes(0).action(), ACTION_CREATE);
  EXPECT_FALSE(info.has_expire_time());

  EXPECT_EQ(TokenInfo("", &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  std::string wrong = app.access_token();
  wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
  EXPECT_EQ(TokenInfo(wrong, &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TokenLifecycleTest, AuditLogRecordsEveryAction) {
  absl::Time start = absl::Now() - absl::Seconds(1);
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)}, "Audited");
  const std::string& app_id = app.private_app().id();

  crm::auth::v1::UpdatePrivateAppRequest rename;
  rename.mutable_private_app()->set_id(app_id);
  rename.mutable_private_app()->set_display_name("Audited and renamed");
  rename.mutable_update_mask()->add_paths("display_name");
  crm::auth::v1::UpdatePrivateAppResponse updated;
  ASSERT_TRUE(stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), rename, &updated).ok());

  crm::auth::v1::UpdatePrivateAppRequest rescope;
  rescope.mutable_private_app()->set_id(app_id);
  *rescope.mutable_private_app()->add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
  *rescope.mutable_private_app()->add_scopes() = MakeScope(MODULE_CONTACT, ACTION_READ);
  rescope.mutable_update_mask()->add_paths("scopes");
  ASSERT_TRUE(stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), rescope, &updated).ok());

  std::string revealed;
  ASSERT_TRUE(Reveal(app_id, &revealed).ok());
  auto rotated = Rotate(app_id, absl::Hours(1));
  crm::auth::v1::EndAccessTokenOverlapRequest end;
  end.set_id(app_id);
  crm::auth::v1::EndAccessTokenOverlapResponse ended;
  ASSERT_TRUE(stack_->apps().EndAccessTokenOverlap(WithBearer(admin_key_).get(), end, &ended).ok());
  auto rotated_again = Rotate(app_id, absl::Hours(1));
  crm::auth::v1::CancelAccessTokenRotationRequest cancel;
  cancel.set_id(app_id);
  crm::auth::v1::CancelAccessTokenRotationResponse cancelled;
  ASSERT_TRUE(stack_->apps().CancelAccessTokenRotation(WithBearer(admin_key_).get(), cancel, &cancelled).ok());
  crm::auth::v1::DeletePrivateAppRequest remove;
  remove.set_id(app_id);
  crm::auth::v1::DeletePrivateAppResponse removed;
  ASSERT_TRUE(stack_->apps().DeletePrivateApp(WithBearer(admin_key_).get(), remove, &removed).ok());

  // Newest first; every event names the same admin key, never the key.
  std::vector<crm::auth::v1::AuditEvent> events = AuditEvents({});
  using crm::auth::v1::AuditAction;
  std::vector<AuditAction> expected = {
      crm::auth::v1::AUDIT_ACTION_APP_DELETED,        crm::auth::v1::AUDIT_ACTION_TOKEN_ROTATION_CANCELLED,
      crm::auth::v1::AUDIT_ACTION_TOKEN_ROTATED,      crm::auth::v1::AUDIT_ACTION_TOKEN_OVERLAP_ENDED,
      crm::auth::v1::AUDIT_ACTION_TOKEN_ROTATED,      crm::auth::v1::AUDIT_ACTION_TOKEN_REVEALED,
      crm::auth::v1::AUDIT_ACTION_SCOPES_CHANGED,     crm::auth::v1::AUDIT_ACTION_APP_UPDATED,
      crm::auth::v1::AUDIT_ACTION_APP_CREATED};
  ASSERT_EQ(events.size(), expected.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].action(), expected[i]) << "event " << i;
    EXPECT_EQ(events[i].app_id(), app_id) << "event " << i;
    EXPECT_EQ(events[i].admin_key_id(), events[0].admin_key_id()) << "event " << i;
    EXPECT_GE(ToTime(events[i].create_time()), start) << "event " << i;
  }
  EXPECT_FALSE(events[0].admin_key_id().empty());
  EXPECT_EQ(events[0].admin_key_hint().substr(0, 7), "crmadm_");
  EXPECT_EQ(events[0].admin_key_hint().substr(events[0].admin_key_hint().size() - 4),
            admin_key_.substr(admin_key_.size() - 4));
  EXPECT_EQ(events[0].admin_key_hint().find(admin_key_.substr(7, 32)), std::string::npos);

  const crm::auth::v1::AuditEvent& scope_change = events[6];
  ASSERT_EQ(scope_change.scopes_before_size(), 1);
  EXPECT_EQ(scope_change.scopes_before(0).module(), MODULE_LEAD);
  ASSERT_EQ(scope_change.scopes_after_size(), 2);
  EXPECT_EQ(scope_change.scopes_after(1).module(), MODULE_CONTACT);
  ASSERT_EQ(events[7].changed_fields_size(), 1);
  EXPECT_EQ(events[7].changed_fields(0), "display_name");
  EXPECT_EQ(events[8].scopes_after_size(), 1);
  EXPECT_EQ(events[8].scopes_before_size(), 0);
  EXPECT_EQ(events[0].scopes_before_size(), 2);
  EXPECT_EQ(events[0].scopes_after_size(), 0);
  EXPECT_EQ(events[5].token_hint(), app.private_app().token_hint());
  EXPECT_EQ(events[4].token_hint(), rotated.private_app().token_hint());
  EXPECT_EQ(events[3].token_hint(), app.private_app().token_hint());
  EXPECT_EQ(events[1].token_hint(), rotated_again.private_app().token_hint());

  // Filters.
  crm::auth::v1::ListAuditEventsRequest by_action;
  by_action.set_action(crm::auth::v1::AUDIT_ACTION_TOKEN_ROTATED);
  EXPECT_EQ(AuditEvents(by_action).size(), 2u);
  auto other = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)}, "Other");
  crm::auth::v1::ListAuditEventsRequest by_app;
  by_app.set_app_id(other.private_app().id());
  ASSERT_EQ(AuditEvents(by_app).size(), 1u);
  EXPECT_EQ(AuditEvents(by_app)[0].action(), crm::auth::v1::AUDIT_ACTION_APP_CREATED);
  crm::auth::v1::ListAuditEventsRequest in_future;
  *in_future.mutable_start_time() = ToTimestamp(absl::Now() + absl::Hours(1));
  EXPECT_TRUE(AuditEvents(in_future).empty());
  crm::auth::v1::ListAuditEventsRequest in_past;
  *in_past.mutable_end_time() = ToTimestamp(start);
  EXPECT_TRUE(AuditEvents(in_past).empty());
  crm::auth::v1::ListAuditEventsRequest in_range;
  *in_range.mutable_start_time() = ToTimestamp(start);
  *in_range.mutable_end_time() = ToTimestamp(absl::Now() + absl::Seconds(1));
  EXPECT_EQ(AuditEvents(in_range).size(), 10u);

  // Pages of 4 cover all 10 events once.
  crm::auth::v1::ListAuditEventsRequest page;
  page.set_page_size(4);
  std::set<std::string> seen;
  int pages = 0;
  while (true) {
    crm::auth::v1::ListAuditEventsResponse response;
    ASSERT_TRUE(stack_->apps().ListAuditEvents(WithBearer(admin_key_).get(), page, &response).ok());
    ++pages;
    for (const auto& event : response.audit_events()) EXPECT_TRUE(seen.insert(event.id()).second);
    if (response.next_page_token().empty()) break;
    page.set_page_token(response.next_page_token());
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen.size(), 10u);

  // A page token does not continue a listing with other filters.
  page.set_action(crm::auth::v1::AUDIT_ACTION_APP_CREATED);
  crm::auth::v1::ListAuditEventsResponse response;
  EXPECT_EQ(stack_->apps().ListAuditEvents(WithBearer(admin_key_).get(), page, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Another organization's admin key lists none of these events.
  std::string other_admin = stack_->NewOrganization("Other organization");
  ASSERT_TRUE(stack_->apps().ListAuditEvents(WithBearer(other_admin).get(), {}, &response).ok());
  EXPECT_EQ(response.audit_events_size(), 0);
}

TEST_F(TokenLifecycleTest, RevealCanBeTurnedOff) {
  auto before = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)}, "Before");
  auto keeper = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)}, "Keeper");
  crm::auth::v1::GetOrganizationPolicyResponse policy;
  ASSERT_TRUE(stack_->apps().GetOrganizationPolicy(WithBearer(admin_key_).get(), {}, &policy).ok());
  EXPECT_TRUE(policy.policy().token_reveal_enabled());

  crm::auth::v1::UpdateOrganizationPolicyRequest update;
  update.mutable_policy()->set_token_reveal_enabled(false);
  crm::auth::v1::UpdateOrganizationPolicyResponse updated;
  EXPECT_EQ(stack_->apps().UpdateOrganizationPolicy(WithBearer(admin_key_).get(), update, &updated).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT)
      << "an empty update_mask";
  update.mutable_update_mask()->add_paths("token_reveal_enabled");
  ASSERT_TRUE(stack_->apps().UpdateOrganizationPolicy(WithBearer(admin_key_).get(), update, &updated).ok());
  EXPECT_FALSE(updated.policy().token_reveal_enabled());
  ASSERT_TRUE(stack_->apps().GetOrganizationPolicy(WithBearer(admin_key_).get(), {}, &policy).ok());
  EXPECT_FALSE(policy.policy().token_reveal_enabled());

  std::string revealed;
  EXPECT_EQ(Reveal(before.private_app().id(), &revealed).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(revealed.empty());

  // Creation and rotation still return the token once.
  auto during = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)}, "During");
  ASSERT_FALSE(during.access_token().empty());
  EXPECT_EQ(ListLeads(0, during.access_token()), grpc::StatusCode::OK);
  auto rotated = Rotate(before.private_app().id(), absl::ZeroDuration());
  ASSERT_FALSE(rotated.access_token().empty());
  stack_->AwaitApplied(rotated.invalidation_sequence());
  EXPECT_EQ(ListLeads(0, rotated.access_token()), grpc::StatusCode::OK);

  // Tokens issued while reveal was off (by creation or rotation) stay
  // unrevealable after it is on again; a token issued before can be
  // revealed again.
  update.mutable_policy()->set_token_reveal_enabled(true);
  ASSERT_TRUE(stack_->apps().UpdateOrganizationPolicy(WithBearer(admin_key_).get(), update, &updated).ok());
  EXPECT_EQ(Reveal(during.private_app().id(), &revealed).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reveal(before.private_app().id(), &revealed).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Reveal(keeper.private_app().id(), &revealed).ok());
  EXPECT_EQ(revealed, keeper.access_token());
  auto after = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)}, "After");
  ASSERT_TRUE(Reveal(after.private_app().id(), &revealed).ok());
  EXPECT_EQ(revealed, after.access_token());

  crm::auth::v1::ListAuditEventsRequest policy_events;
  policy_events.set_action(crm::auth::v1::AUDIT_ACTION_POLICY_UPDATED);
  std::vector<crm::auth::v1::AuditEvent> events = AuditEvents(policy_events);
  ASSERT_EQ(events.size(), 2u);
  for (const auto& event : events) {
    EXPECT_TRUE(event.app_id().empty());
    ASSERT_EQ(event.changed_fields_size(), 1);
    EXPECT_EQ(event.changed_fields(0), "token_reveal_enabled");
  }
  // The refused reveals are not audited; the two that worked are.
  crm::auth::v1::ListAuditEventsRequest reveals;
  reveals.set_action(crm::auth::v1::AUDIT_ACTION_TOKEN_REVEALED);
  EXPECT_EQ(AuditEvents(reveals).size(), 2u);
}

TEST_F(TokenLifecycleTest, LastUsedShownAfterReport) {
  auto app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  EXPECT_FALSE(GetApp(app.private_app().id()).has_last_used_time());

  absl::Time before = absl::Now();
  ASSERT_EQ(ListLeads(0, app.access_token()), grpc::StatusCode::OK);
  ASSERT_EQ(ListLeads(0, app.access_token()), grpc::StatusCode::OK);
  ASSERT_TRUE(stack_->crm_server(0).FlushTokenUsage().ok());
  absl::Time after = absl::Now();

  crm::auth::v1::PrivateApp shown = GetApp(app.private_app().id());
  ASSERT_TRUE(shown.has_last_used_time());
  absl::Time last_used = ToTime(shown.last_used_time());
  EXPECT_GE(last_used, absl::FromUnixSeconds(absl::ToUnixSeconds(before) / 60 * 60));
  EXPECT_LE(last_used, after);
  EXPECT_EQ(absl::ToUnixMicros(last_used) % 60000000, 0) << "stored to the minute";
  EXPECT_EQ(shown.last_used_peer(), "127.0.0.1");

  // During an overlap the previous token's use is shown apart from the
  // current token's, from the reports of any CRM server.
  auto rotated = Rotate(app.private_app().id(), absl::Hours(1));
  stack_->AwaitApplied(rotated.invalidation_sequence());
  EXPECT_FALSE(rotated.private_app().has_last_used_time());
  ASSERT_EQ(ListLeads(1, app.access_token()), grpc::StatusCode::OK);
  ASSERT_TRUE(stack_->crm_server(1).FlushTokenUsage().ok());
  shown = GetApp(app.private_app().id());
  EXPECT_TRUE(shown.has_previous_token_last_used_time());
  EXPECT_FALSE(shown.has_last_used_time());
}

}  // namespace
}  // namespace crm::testing
