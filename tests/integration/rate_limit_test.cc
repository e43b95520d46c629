// Rate limits end to end: organization policies set through
// PrivateAppService, CRM servers that take blocks of calls from the auth
// server's shared counters, and the errors and usage figures that clients
// receive. Windows are real 10-second windows and UTC days, so no test asserts
// how calls fall into them: each bound is checked per window touched
// (from the clock before and after the calls) and against the counter rows.
#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <grpcpp/support/error_details.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rate_limit.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_LEAD;

// The details a client reads from a RESOURCE_EXHAUSTED call.
struct LimitDetails {
  std::optional<google::rpc::ErrorInfo> info;
  std::optional<google::rpc::RetryInfo> retry;
};

LimitDetails ReadLimitDetails(const grpc::Status& status) {
  LimitDetails details;
  google::rpc::Status rpc_status;
  EXPECT_TRUE(grpc::ExtractErrorDetails(status, &rpc_status).ok());
  for (const google::protobuf::Any& detail : rpc_status.details()) {
    if (detail.Is<google::rpc::ErrorInfo>()) {
      details.info.emplace();
      EXPECT_TRUE(detail.UnpackTo(&*details.info));
    }
    if (detail.Is<google::rpc::RetryInfo>()) {
      details.retry.emplace();
      EXPECT_TRUE(detail.UnpackTo(&*details.retry));
    }
  }
  return details;
}

absl::Duration RetryDelay(const LimitDetails& details) {
  return absl::Seconds(details.retry->retry_delay().seconds()) +
         absl::Nanoseconds(details.retry->retry_delay().nanos());
}

// Number of 10-second windows, or of UTC days, between two times.
int64_t WindowsTouched(absl::Time start, absl::Time end) {
  return (BurstWindowStart(end) - BurstWindowStart(start)) / kBurstWindowSeconds + 1;
}
int64_t DaysTouched(absl::Time start, absl::Time end) { return (DayStart(end) - DayStart(start)) / kDaySeconds + 1; }

class RateLimitTest : public ::testing::Test {
 protected:
  void StartStack(int crm_servers) {
    StackOptions options;
    options.crm_servers = crm_servers;
    absl::StatusOr<std::unique_ptr<TestStack>> started = TestStack::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    stack_ = *std::move(started);
  }

  std::string NewToken(const std::string& admin_key, std::string* app_id = nullptr) {
    crm::auth::v1::CreatePrivateAppResponse created = stack_->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ)});
    if (app_id != nullptr) *app_id = created.private_app().id();
    return created.access_token();
  }

  grpc::Status SetLimits(const std::string& admin_key, int32_t burst_limit, int64_t daily_limit,
                         crm::auth::v1::UpdateOrganizationPolicyResponse* response = nullptr) {
    crm::auth::v1::UpdateOrganizationPolicyRequest request;
    request.mutable_policy()->set_burst_limit_per_10s(burst_limit);
    request.mutable_policy()->set_daily_limit(daily_limit);
    request.mutable_update_mask()->add_paths("burst_limit_per_10s");
    request.mutable_update_mask()->add_paths("daily_limit");
    crm::auth::v1::UpdateOrganizationPolicyResponse ignored;
    return stack_->apps().UpdateOrganizationPolicy(WithBearer(admin_key).get(), request,
                                                   response == nullptr ? &ignored : response);
  }

  grpc::Status ListLeads(const std::string& token, size_t crm_index = 0) {
    crm::data::v1::ListLeadsRequest request;
    crm::data::v1::ListLeadsResponse response;
    return stack_->crm(crm_index).ListLeads(WithBearer(token).get(), request, &response);
  }

  crm::auth::v1::GetApiUsageResponse Usage(const std::string& admin_key) {
    crm::auth::v1::GetApiUsageResponse response;
    grpc::Status status =
        stack_->apps().GetApiUsage(WithBearer(admin_key).get(), crm::auth::v1::GetApiUsageRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // The granted counts of the app's window rows, by window start.
  std::map<int64_t, int64_t> WindowCounters(const std::string& app_id) {
    std::map<int64_t, int64_t> counters;
    absl::Status status = stack_->auth_pool().Run("reading quota windows", [&](sql::Connection& connection) {
      sql::PreparedStatement* select =
          &PrepareCached(connection, "SELECT window_start, used_calls FROM quota_windows WHERE app_id = ?");
      select->setString(1, app_id);
      std::unique_ptr<sql::ResultSet> rows(select->executeQuery());
      while (rows->next()) counters[rows->getInt64(1)] = rows->getInt64(2);
      return absl::OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
    return counters;
  }

  std::unique_ptr<TestStack> stack_;
};

TEST_F(RateLimitTest, BurstLimitRejectsWithRetryInfo) {
  StartStack(1);
  std::string admin_key = stack_->NewOrganization();
  std::string app_id;
  std::string token = NewToken(admin_key, &app_id);
  ASSERT_TRUE(SetLimits(admin_key, 5, 0).ok());

  // 15 calls take far less than 10 s, so they touch at most two windows
  // and at least 5 must be rejected.
  int admitted = 0;
  int rejected = 0;
  absl::Time start = absl::Now();
  for (int i = 0; i < 15; ++i) {
    grpc::Status status = ListLeads(token);
    if (status.ok()) {
      ++admitted;
      continue;
    }
    ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    ++rejected;
    LimitDetails details = ReadLimitDetails(status);
    ASSERT_TRUE(details.info.has_value());
    EXPECT_EQ(details.info->reason(), "RATE_LIMITED");
    EXPECT_EQ(details.info->domain(), "data.crm.example");
    EXPECT_EQ(details.info->metadata().at("limit"), "5");
    EXPECT_EQ(details.info->metadata().at("window"), "10s");
    EXPECT_EQ(details.info->metadata().at("app_id"), app_id);
    ASSERT_TRUE(details.retry.has_value());
    EXPECT_GT(RetryDelay(details), absl::ZeroDuration());
    EXPECT_LE(RetryDelay(details), absl::Seconds(10));
  }
  int64_t windows = WindowsTouched(start, absl::Now());
  EXPECT_GE(admitted, 5);
  EXPECT_LE(admitted, 5 * windows);
  EXPECT_EQ(admitted + rejected, 15);
  if (windows == 1) {
    EXPECT_EQ(admitted, 5);
  }

  // A block is one call at this limit, so the counters contain exactly the
  // admitted calls, and no window contains more than the limit.
  int64_t granted = 0;
  for (const auto& [window_start, used] : WindowCounters(app_id)) {
    EXPECT_LE(used, 5) << "window " << window_start;
    granted += used;
  }
  EXPECT_EQ(granted, admitted);
}

TEST_F(RateLimitTest, OtherOrganizationUnaffected) {
  StartStack(1);
  std::string limited_key = stack_->NewOrganization("Limited");
  std::string limited_token = NewToken(limited_key);
  std::string other_key = stack_->NewOrganization("Other");
  std::string other_app_id;
  std::string other_token = NewToken(other_key, &other_app_id);
  ASSERT_TRUE(SetLimits(limited_key, 1, 0).ok());
  // Limits with blocks of one call, so the usage counts equal the calls.
  ASSERT_TRUE(SetLimits(other_key, 30, 0).ok());

  int limited_admitted = 0;
  int limited_rejected = 0;
  for (int i = 0; i < 5; ++i) {
    grpc::Status status = ListLeads(limited_token);
    if (status.ok()) ++limited_admitted;
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++limited_rejected;
  }
  EXPECT_GE(limited_rejected, 3);

  for (int i = 0; i < 20; ++i) {
    grpc::Status status = ListLeads(other_token);
    ASSERT_TRUE(status.ok()) << "call " << i << ": " << status.error_message();
  }

  crm::auth::v1::GetApiUsageResponse usage = Usage(other_key);
  EXPECT_EQ(usage.daily_calls(), 20) << "the other organization's counters must count only its own calls";
  ASSERT_EQ(usage.apps_size(), 1);
  EXPECT_EQ(usage.apps(0).app_id(), other_app_id);
  EXPECT_EQ(usage.apps(0).daily_calls(), 20);
  EXPECT_EQ(Usage(limited_key).daily_calls(), limited_admitted)
      << "the limited organization's counters must count only its own admitted calls";
}

TEST_F(RateLimitTest, TwoInstancesNeverAdmitMoreThanLimit) {
  StartStack(2);
  std::string admin_key = stack_->NewOrganization();
  std::string app_id;
  std::string token = NewToken(admin_key, &app_id);
  // 40 makes blocks of 2 calls, so both instances have blocks at once.
  constexpr int kLimit = 40;
  constexpr int kCallsPerThread = 30;
  constexpr int kThreadsPerInstance = 4;
  ASSERT_TRUE(SetLimits(admin_key, kLimit, 0).ok());

  std::atomic<int> admitted{0};
  std::atomic<int> rejected{0};
  std::atomic<int> other{0};
  absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (size_t instance = 0; instance < 2; ++instance) {
    for (int t = 0; t < kThreadsPerInstance; ++t) {
      threads.emplace_back([&, instance] {
        for (int i = 0; i < kCallsPerThread; ++i) {
          grpc::Status status = ListLeads(token, instance);
          if (status.ok()) {
            ++admitted;
          } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
            ++rejected;
          } else {
            ++other;
          }
        }
      });
    }
  }
  for (std::thread& thread : threads) thread.join();
  int64_t windows = WindowsTouched(start, absl::Now());

  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(admitted + rejected, 2 * kThreadsPerInstance * kCallsPerThread);
  EXPECT_LE(admitted.load(), kLimit * windows) << "over " << windows << " window(s)";
  EXPECT_GT(rejected.load(), 0);

  int64_t granted = 0;
  for (const auto& [window_start, used] : WindowCounters(app_id)) {
    EXPECT_LE(used, kLimit) << "window " << window_start;
    granted += used;
  }
  // Unused parts of blocks are granted but not admitted.
  EXPECT_LE(admitted.load(), granted);
}

TEST_F(RateLimitTest, DailyLimitSharedByAppsAndInstances) {
  StartStack(2);
  std::string admin_key = stack_->NewOrganization();
  std::string token_a = NewToken(admin_key);
  std::string token_b = NewToken(admin_key);
  constexpr int kDailyLimit = 12;
  ASSERT_TRUE(SetLimits(admin_key, 0, kDailyLimit).ok());

  int admitted = 0;
  int rejected = 0;
  absl::Time start = absl::Now();
  for (int i = 0; i < 24; ++i) {
    grpc::Status status = ListLeads(i % 2 == 0 ? token_a : token_b, static_cast<size_t>(i / 2 % 2));
    if (status.ok()) {
      ++admitted;
      continue;
    }
    ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    ++rejected;
    LimitDetails details = ReadLimitDetails(status);
    ASSERT_TRUE(details.info.has_value());
    EXPECT_EQ(details.info->reason(), "DAILY_LIMIT_EXCEEDED");
    EXPECT_EQ(details.info->metadata().at("limit"), absl::StrCat(kDailyLimit));
    EXPECT_EQ(details.info->metadata().at("window"), "1d");
    ASSERT_TRUE(details.retry.has_value());
    EXPECT_GT(RetryDelay(details), absl::ZeroDuration());
    EXPECT_LE(RetryDelay(details), absl::Hours(24));
  }
  int64_t days = DaysTouched(start, absl::Now());
  EXPECT_LE(admitted, kDailyLimit * days);
  if (days == 1) {
    EXPECT_EQ(admitted, kDailyLimit);
    EXPECT_EQ(rejected, 24 - kDailyLimit);
    EXPECT_EQ(Usage(admin_key).daily_calls(), kDailyLimit);
  }
}

TEST_F(RateLimitTest, PolicyChangeTakesEffect) {
  StartStack(1);
  std::string admin_key = stack_->NewOrganization();
  std::string token = NewToken(admin_key);
  ASSERT_TRUE(SetLimits(admin_key, 2, 0).ok());

  // At most two windows pass during these calls, so a rejection comes
  // within 5 calls.
  bool limited = false;
  for (int i = 0; i < 5 && !limited; ++i) {
    limited = ListLeads(token).error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
  }
  ASSERT_TRUE(limited);

  ASSERT_TRUE(SetLimits(admin_key, 1000, 0).ok());
  for (int i = 0; i < 10; ++i) {
    grpc::Status status = ListLeads(token);
    ASSERT_TRUE(status.ok()) << "call " << i << " after raising the limit: " << status.error_message();
  }
}

TEST_F(RateLimitTest, PolicyValidatedDefaultedAndAudited) {
  StartStack(1);
  std::string admin_key = stack_->NewOrganization();

  crm::auth::v1::GetOrganizationPolicyResponse before;
  ASSERT_TRUE(stack_->apps()
                  .GetOrganizationPolicy(WithBearer(admin_key).get(), crm::auth::v1::GetOrganizationPolicyRequest(),
                                         &before)
                  .ok());
  EXPECT_EQ(before.policy().burst_limit_per_10s(), 0) << "a new organization uses the server default";
  EXPECT_EQ(before.policy().daily_limit(), 0);
  EXPECT_TRUE(before.policy().token_reveal_enabled());

  EXPECT_EQ(SetLimits(admin_key, -1, 0).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(SetLimits(admin_key, kMaxBurstLimitPer10s + 1, 0).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(SetLimits(admin_key, 0, -5).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(SetLimits(admin_key, 0, kMaxDailyLimit + 1).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  crm::auth::v1::UpdateOrganizationPolicyResponse updated;
  ASSERT_TRUE(SetLimits(admin_key, kMaxBurstLimitPer10s, 3000, &updated).ok());
  EXPECT_EQ(updated.policy().burst_limit_per_10s(), kMaxBurstLimitPer10s);
  EXPECT_EQ(updated.policy().daily_limit(), 3000);
  EXPECT_TRUE(updated.policy().token_reveal_enabled()) << "fields outside the mask keep their value";

  crm::auth::v1::ListAuditEventsResponse events;
  ASSERT_TRUE(stack_->apps()
                  .ListAuditEvents(WithBearer(admin_key).get(), crm::auth::v1::ListAuditEventsRequest(), &events)
                  .ok());
  ASSERT_GE(events.audit_events_size(), 1);
  const crm::auth::v1::AuditEvent& newest = events.audit_events(0);
  EXPECT_EQ(newest.action(), crm::auth::v1::AUDIT_ACTION_POLICY_UPDATED);
  ASSERT_EQ(newest.changed_fields_size(), 2);
  EXPECT_EQ(newest.changed_fields(0), "burst_limit_per_10s");
  EXPECT_EQ(newest.changed_fields(1), "daily_limit");

  // 0 returns a limit to the server default, which the stack sets to the
  // maximum.
  ASSERT_TRUE(SetLimits(admin_key, 0, 0).ok());
  crm::auth::v1::GetApiUsageResponse usage = Usage(admin_key);
  EXPECT_EQ(usage.daily_limit(), kMaxDailyLimit);
}

TEST_F(RateLimitTest, UsageMatchesCallsMade) {
  StartStack(1);
  std::string admin_key = stack_->NewOrganization();
  std::string app_a;
  std::string app_b;
  std::string token_a = NewToken(admin_key, &app_a);
  std::string token_b = NewToken(admin_key, &app_b);
  // Blocks of one call, so every granted call is a call made.
  ASSERT_TRUE(SetLimits(admin_key, 30, 1000).ok());

  absl::Time start = absl::Now();
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(ListLeads(token_a).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ListLeads(token_b).ok());
  crm::auth::v1::GetApiUsageResponse usage = Usage(admin_key);
  bool one_window = WindowsTouched(start, absl::Now()) == 1;

  EXPECT_EQ(usage.daily_limit(), 1000);
  if (DaysTouched(start, absl::Now()) == 1) {
    EXPECT_EQ(usage.daily_calls(), 10);
  }
  ASSERT_EQ(usage.apps_size(), 2);
  EXPECT_EQ(usage.apps(0).app_id(), app_a);
  EXPECT_EQ(usage.apps(1).app_id(), app_b);
  EXPECT_EQ(usage.apps(0).burst_limit_per_10s(), 30);
  EXPECT_EQ(usage.apps(0).daily_calls(), 7);
  EXPECT_EQ(usage.apps(1).daily_calls(), 3);
  EXPECT_LE(usage.apps(0).window_calls(), 7);
  EXPECT_LE(usage.apps(1).window_calls(), 3);
  if (one_window) {
    EXPECT_EQ(usage.apps(0).window_calls(), 7);
    EXPECT_EQ(usage.apps(1).window_calls(), 3);
  }
  EXPECT_EQ(usage.window_start_time().seconds() % kBurstWindowSeconds, 0);
  EXPECT_EQ(usage.day_start_time().seconds() % kDaySeconds, 0);
}

TEST_F(RateLimitTest, CountersPurgedAfterRetention) {
  StartStack(1);
  std::string admin_key = stack_->NewOrganization();
  std::string app_id;
  std::string token = NewToken(admin_key, &app_id);
  ASSERT_TRUE(ListLeads(token).ok());
  ASSERT_FALSE(WindowCounters(app_id).empty());

  // To a store whose clock is three days ahead, today's rows are expired.
  crm::auth::AuthStore later(&stack_->auth_pool(), stack_->secrets(), RandomBytes,
                             [] { return absl::Now() + absl::Hours(72); });
  absl::StatusOr<int> purged = later.PurgeQuotaCounters(1000);
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_GE(*purged, 2) << "the window row and the day row";
  EXPECT_TRUE(WindowCounters(app_id).empty());
}

}  // namespace
}  // namespace crm::testing
