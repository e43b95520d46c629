// Scale-out on one machine: three CRM servers and two auth servers, and a
// client that spreads calls round robin over every CRM address. One CRM
// server and one auth server stop under load. At most the calls in flight
// at each stop fail, and the client keeps succeeding afterwards.
#include <atomic>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_LEAD;

constexpr int kClientThreads = 8;

struct Outcome {
  absl::Time end;
  grpc::StatusCode code;
};

double CountGetLead(const Exposition& metrics) {
  return metrics.Sum("grpc_server_handled_total",
                     {{"grpc_service", "crm.data.v1.CrmService"}, {"grpc_method", "ListLeads"}, {"grpc_code", "OK"}});
}

double CountCheckToken(const Exposition& metrics) {
  return metrics.Sum("grpc_server_handled_total",
                     {{"grpc_service", "crm.auth.v1.TokenService"}, {"grpc_method", "CheckToken"}});
}

TEST(ScaleOut, StopsUnderLoadFailOnlyCallsInFlight) {
  StackOptions options;
  options.auth_servers = 2;
  options.crm_servers = 3;
  // Without the cache every call checks its token with an auth server, so
  // both tiers carry the load.
  options.token_cache = false;
  options.metrics = true;
  absl::StatusOr<std::unique_ptr<TestStack>> started = TestStack::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<TestStack> stack = *std::move(started);
  std::string admin_key = stack->NewOrganization();
  std::string token = stack->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ)}).access_token();

  std::vector<std::string> addresses;
  for (size_t i = 0; i < 3; ++i) addresses.push_back(absl::StrCat("127.0.0.1:", stack->crm_port(i)));
  grpc::ChannelArguments arguments;
  arguments.SetLoadBalancingPolicyName("round_robin");
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      absl::StrCat("ipv4:", absl::StrJoin(addresses, ",")), grpc::InsecureChannelCredentials(), arguments);
  std::unique_ptr<crm::data::v1::CrmService::Stub> client = crm::data::v1::CrmService::NewStub(channel);

  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::vector<Outcome> outcomes;
  std::vector<std::thread> threads;
  for (int t = 0; t < kClientThreads; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        crm::data::v1::ListLeadsRequest request;
        crm::data::v1::ListLeadsResponse response;
        grpc::StatusCode code = client->ListLeads(WithBearer(token).get(), request, &response).error_code();
        absl::MutexLock lock(&mu);
        outcomes.push_back(Outcome{absl::Now(), code});
      }
    });
  }

  absl::SleepFor(absl::Seconds(2));
  // Before the stops every CRM server and every auth server took calls.
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_GT(CountGetLead(Scrape(stack->crm_server(i).metrics_port())), 0) << "CRM server " << i;
  }
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_GT(CountCheckToken(Scrape(stack->auth_server(i).metrics_port())), 0) << "auth server " << i;
  }

  absl::Time first_stop = absl::Now();
  stack->StopCrmServer(1);
  absl::SleepFor(absl::Seconds(1));
  stack->StopAuthServer(0);
  absl::Time last_stop = absl::Now();
  absl::SleepFor(absl::Seconds(2));
  stop = true;
  for (std::thread& thread : threads) thread.join();

  int failed_before = 0;
  int failed_during = 0;
  int failed_after = 0;
  int succeeded_after = 0;
  // Calls that ended more than a second after the last stop started after
  // the client and the CRM servers had seen it.
  absl::Time settled = last_stop + absl::Seconds(1);
  for (const Outcome& outcome : outcomes) {
    bool ok = outcome.code == grpc::StatusCode::OK;
    if (outcome.end < first_stop) {
      failed_before += ok ? 0 : 1;
    } else if (outcome.end < settled) {
      failed_during += ok ? 0 : 1;
    } else {
      failed_after += ok ? 0 : 1;
      succeeded_after += ok ? 1 : 0;
    }
  }
  EXPECT_EQ(0, failed_before);
  // Each stop can fail at most the kClientThreads calls in flight.
  EXPECT_LE(failed_during, 2 * kClientThreads);
  EXPECT_EQ(0, failed_after);
  EXPECT_GT(succeeded_after, 0);
  RecordProperty("calls", static_cast<int>(outcomes.size()));
  RecordProperty("failed_during_stops", failed_during);
  std::cout << "scale-out: " << outcomes.size() << " calls, " << failed_during << " failed during the stops, "
            << succeeded_after << " succeeded after them\n";

  // The remaining servers took the calls after the stops.
  for (size_t i : {0, 2}) {
    EXPECT_GT(CountGetLead(Scrape(stack->crm_server(i).metrics_port())), 0) << "CRM server " << i;
  }
  EXPECT_GT(CountCheckToken(Scrape(stack->auth_server(1).metrics_port())), 0);
}

}  // namespace
}  // namespace crm::testing
