// Revocation across instances: two auth servers and two CRM servers with
// token-check caches on one database. Once a CRM server has applied the
// sequence a mutation returned, no call with the old rights succeeds there.
// A CRM server that loses its invalidation stream never reads its cache.
#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_CONTACT;
using crm::auth::v1::MODULE_LEAD;

struct CallRecord {
  size_t server;
  absl::Time start;
  grpc::StatusCode code;
};

class RevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StackOptions options;
    options.auth_servers = 2;
    options.crm_servers = 2;
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_key_ = stack_->NewOrganization();
    app_ = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ), MakeScope(MODULE_CONTACT, ACTION_READ)});
    ASSERT_TRUE(stack_->AwaitCurrent());
  }

  grpc::StatusCode ListLeads(size_t server, const std::string& token) {
    crm::data::v1::ListLeadsRequest request;
    crm::data::v1::ListLeadsResponse response;
    return stack_->crm(server).ListLeads(WithBearer(token).get(), request, &response).error_code();
  }

  crm::data::v1::GetServerStatusResponse Status(size_t server) { return stack_->ServerStatus(server); }

  // Calls both CRM servers in a loop with `token` until stopped, recording
  // every call's start and result.
  void StartCalling(const std::string& token) {
    caller_ = std::thread([this, token] {
      for (size_t i = 0; !stop_.load(); i = 1 - i) {
        absl::Time start = absl::Now();
        grpc::StatusCode code = ListLeads(i, token);
        absl::MutexLock lock(&mu_);
        calls_.push_back({i, start, code});
      }
    });
  }

  std::vector<CallRecord> StopCalling() {
    stop_ = true;
    caller_.join();
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  // Warms the caches of both servers and checks they are really used, so
  // the revocation checks below exercise the cache, not only live checks.
  void WarmCaches(const std::string& token) {
    for (size_t server = 0; server < 2; ++server) {
      for (int i = 0; i < 5; ++i) ASSERT_EQ(ListLeads(server, token), grpc::StatusCode::OK);
      EXPECT_GT(Status(server).cache_hits(), 0) << "server " << server;
    }
  }

  // Asserts that no call started at or after `enforced` succeeded, and that
  // calls after it on each server were made at all.
  void ExpectNoSuccessAfter(const std::vector<CallRecord>& calls, absl::Time enforced,
                            grpc::StatusCode expected_code) {
    int after[2] = {0, 0};
    for (const CallRecord& call : calls) {
      if (call.start < enforced) continue;
      ++after[call.server];
      EXPECT_EQ(call.code, expected_code) << "server " << call.server << " call started "
                                          << absl::FormatDuration(call.start - enforced) << " after enforcement";
    }
    EXPECT_GT(after[0], 0);
    EXPECT_GT(after[1], 0);
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
  crm::auth::v1::CreatePrivateAppResponse app_;
  std::thread caller_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::vector<CallRecord> calls_ ABSL_GUARDED_BY(mu_);
};

TEST_F(RevocationTest, RotationEnforcedOnEveryInstance) {
  WarmCaches(app_.access_token());
  StartCalling(app_.access_token());
  absl::SleepFor(absl::Milliseconds(50));

  crm::auth::v1::RotateAccessTokenRequest rotate;
  rotate.set_id(app_.private_app().id());
  crm::auth::v1::RotateAccessTokenResponse rotated;
  ASSERT_TRUE(stack_->apps(0).RotateAccessToken(WithBearer(admin_key_).get(), rotate, &rotated).ok());
  ASSERT_GT(rotated.invalidation_sequence(), 0);
  stack_->AwaitApplied(rotated.invalidation_sequence());
  absl::Time enforced = absl::Now();
  absl::SleepFor(absl::Milliseconds(100));

  ExpectNoSuccessAfter(StopCalling(), enforced, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListLeads(0, rotated.access_token()), grpc::StatusCode::OK);
  EXPECT_EQ(ListLeads(1, rotated.access_token()), grpc::StatusCode::OK);
}

TEST_F(RevocationTest, DeletionEnforcedOnEveryInstance) {
  WarmCaches(app_.access_token());
  StartCalling(app_.access_token());
  absl::SleepFor(absl::Milliseconds(50));

  crm::auth::v1::DeletePrivateAppRequest remove;
  remove.set_id(app_.private_app().id());
  crm::auth::v1::DeletePrivateAppResponse removed;
  ASSERT_TRUE(stack_->apps(1).DeletePrivateApp(WithBearer(admin_key_).get(), remove, &removed).ok());
  ASSERT_GT(removed.invalidation_sequence(), 0);
  stack_->AwaitApplied(removed.invalidation_sequence());
  absl::Time enforced = absl::Now();
  absl::SleepFor(absl::Milliseconds(100));

  ExpectNoSuccessAfter(StopCalling(), enforced, grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(RevocationTest, ScopeRemovalEnforcedOnEveryInstance) {
  WarmCaches(app_.access_token());
  StartCalling(app_.access_token());
  absl::SleepFor(absl::Milliseconds(50));

  crm::auth::v1::UpdatePrivateAppRequest update;
  update.mutable_private_app()->set_id(app_.private_app().id());
  *update.mutable_private_app()->add_scopes() = MakeScope(MODULE_CONTACT, ACTION_READ);
  update.mutable_update_mask()->add_paths("scopes");
  crm::auth::v1::UpdatePrivateAppResponse updated;
  ASSERT_TRUE(stack_->apps(0).UpdatePrivateApp(WithBearer(admin_key_).get(), update, &updated).ok());
  ASSERT_GT(updated.invalidation_sequence(), 0);
  stack_->AwaitApplied(updated.invalidation_sequence());
  absl::Time enforced = absl::Now();
  absl::SleepFor(absl::Milliseconds(100));

  ExpectNoSuccessAfter(StopCalling(), enforced, grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(RevocationTest, SurvivesLossOfOneAuthServer) {
  WarmCaches(app_.access_token());
  StartCalling(app_.access_token());
  absl::SleepFor(absl::Milliseconds(50));
  stack_->StopAuthServer(0);
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_TRUE(stack_->AwaitCurrent()) << "watchers moved to the remaining auth server";

  // Changes through the surviving instance are still enforced everywhere.
  crm::auth::v1::RotateAccessTokenRequest rotate;
  rotate.set_id(app_.private_app().id());
  crm::auth::v1::RotateAccessTokenResponse rotated;
  absl::Time rotation_sent = absl::Now();
  ASSERT_TRUE(stack_->apps(1).RotateAccessToken(WithBearer(admin_key_).get(), rotate, &rotated).ok());
  stack_->AwaitApplied(rotated.invalidation_sequence());
  absl::Time enforced = absl::Now();
  absl::SleepFor(absl::Milliseconds(100));

  // Until the rotation, the valid token gets OK or, while a watcher moves
  // to the other auth server, UNAVAILABLE. Between the request and
  // enforcement a live check may already reject it.
  std::vector<CallRecord> calls = StopCalling();
  for (const CallRecord& call : calls) {
    if (call.start >= rotation_sent) continue;
    EXPECT_TRUE(call.code == grpc::StatusCode::OK || call.code == grpc::StatusCode::UNAVAILABLE)
        << "before the rotation, calls succeed or fail UNAVAILABLE, got " << call.code;
  }
  ExpectNoSuccessAfter(calls, enforced, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListLeads(0, rotated.access_token()), grpc::StatusCode::OK);
}

TEST_F(RevocationTest, NoCacheWithoutAuthService) {
  WarmCaches(app_.access_token());
  stack_->StopAuthServer(0);
  stack_->StopAuthServer(1);

  // The streams break with the servers, so the caches are out of use and
  // every call fails closed, although the token is cached and still valid.
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline && (Status(0).watch_state() == crm::data::v1::WATCH_STATE_CURRENT ||
                                    Status(1).watch_state() == crm::data::v1::WATCH_STATE_CURRENT)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  for (size_t server = 0; server < 2; ++server) {
    EXPECT_NE(Status(server).watch_state(), crm::data::v1::WATCH_STATE_CURRENT);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(ListLeads(server, app_.access_token()), grpc::StatusCode::UNAVAILABLE);
  }
}

}  // namespace
}  // namespace crm::testing
