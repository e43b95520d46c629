// Measures how fast a revocation reaches every CRM instance, and what the
// token-check cache saves, on an in-process system of two auth servers and
// two CRM servers over loopback. Prints a markdown table.
//
// Run through tools/bench-revocation.sh, which starts MariaDB and sets
// CRM_TEST_DB_SOCKET.
#include <algorithm>
#include <atomic>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "tests/integration/test_stack.h"

ABSL_FLAG(int, revocations, 200, "Rotations to time");
ABSL_FLAG(int, seconds, 5, "Seconds of load for each throughput figure");
ABSL_FLAG(int, concurrency, 16, "Client threads for the throughput figures");

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_LEAD;

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(fraction * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

// Rotates the app's token `count` times through alternating auth servers and
// returns, per rotation, the milliseconds from the reply to the moment both
// CRM servers had applied its invalidation and rejected the old token.
std::vector<double> TimeRevocations(TestStack& stack, const std::string& admin_key, const std::string& app_id,
                                    std::string token, int count, int* still_accepted) {
  std::vector<double> latencies;
  for (int i = 0; i < count; ++i) {
    crm::auth::v1::RotateAccessTokenRequest rotate;
    rotate.set_id(app_id);
    crm::auth::v1::RotateAccessTokenResponse rotated;
    grpc::Status status = stack.apps(i % 2).RotateAccessToken(WithBearer(admin_key).get(), rotate, &rotated);
    absl::Time replied = absl::Now();
    if (!status.ok()) {
      std::cerr << "rotation failed: " << status.error_message() << "\n";
      continue;
    }
    for (size_t server = 0; server < 2; ++server) {
      while (stack.AppliedSequence(server) < rotated.invalidation_sequence()) {
        absl::SleepFor(absl::Microseconds(200));
      }
    }
    latencies.push_back(absl::ToDoubleMilliseconds(absl::Now() - replied));

    for (size_t server = 0; server < 2; ++server) {
      crm::data::v1::ListLeadsRequest request;
      crm::data::v1::ListLeadsResponse response;
      if (stack.crm(server).ListLeads(WithBearer(token).get(), request, &response).ok()) ++*still_accepted;
      // Warm the new token into both caches, so the next rotation revokes a
      // cached entry.
      stack.crm(server).ListLeads(WithBearer(rotated.access_token()).get(), request, &response);
    }
    token = rotated.access_token();
  }
  return latencies;
}

// Calls GetLead from `threads` threads for `duration`; returns successful
// calls per second and counts failures.
double MeasureGetLead(TestStack& stack, const std::string& token, const std::string& lead_id, int threads,
                      absl::Duration duration, int64_t* failures) {
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      crm::data::v1::GetLeadRequest request;
      request.set_id(lead_id);
      crm::data::v1::GetLeadResponse response;
      while (!stop.load(std::memory_order_relaxed)) {
        grpc::ClientContext context;
        context.AddMetadata("authorization", "Bearer " + token);
        if (stack.crm(t % 2).GetLead(&context, request, &response).ok()) {
          ok.fetch_add(1, std::memory_order_relaxed);
        } else {
          failed.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  absl::SleepFor(duration);
  stop = true;
  for (std::thread& worker : workers) worker.join();
  *failures = failed.load();
  return static_cast<double>(ok.load()) / absl::ToDoubleSeconds(duration);
}

struct Throughput {
  double calls_per_second = 0;
  int64_t failures = 0;
};

Throughput GetLeadThroughput(bool token_cache, int threads, absl::Duration duration) {
  StackOptions options;
  options.auth_servers = 2;
  options.crm_servers = 2;
  options.token_cache = token_cache;
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
  if (!stack.ok()) {
    std::cerr << "cannot start the system: " << stack.status() << "\n";
    std::exit(1);
  }
  std::string admin_key = (*stack)->NewOrganization();
  std::string token =
      (*stack)->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ), MakeScope(MODULE_LEAD, crm::auth::v1::ACTION_CREATE)})
          .access_token();
  crm::data::v1::CreateLeadRequest create;
  create.mutable_lead()->set_last_name("Benchmark");
  crm::data::v1::CreateLeadResponse created;
  (*stack)->crm().CreateLead(WithBearer(token).get(), create, &created);

  // Warm-up, so both runs measure steady state.
  int64_t ignored = 0;
  MeasureGetLead(**stack, token, created.lead().id(), threads, absl::Seconds(1), &ignored);
  Throughput result;
  result.calls_per_second = MeasureGetLead(**stack, token, created.lead().id(), threads, duration, &result.failures);
  return result;
}

int Run() {
  spdlog::set_level(spdlog::level::warn);
  StackOptions options;
  options.auth_servers = 2;
  options.crm_servers = 2;
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
  if (!stack.ok()) {
    std::cerr << "cannot start the system: " << stack.status() << "\n";
    return 1;
  }
  std::string admin_key = (*stack)->NewOrganization();
  auto app = (*stack)->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ)});
  absl::SleepFor(absl::Milliseconds(500));  // Let both watchers become current.

  int still_accepted = 0;
  std::vector<double> latencies = TimeRevocations(**stack, admin_key, app.private_app().id(), app.access_token(),
                                                  absl::GetFlag(FLAGS_revocations), &still_accepted);
  stack->reset();
  if (latencies.empty()) {
    std::cerr << "no rotation succeeded\n";
    return 1;
  }

  absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  int threads = absl::GetFlag(FLAGS_concurrency);
  Throughput cached = GetLeadThroughput(true, threads, duration);
  Throughput uncached = GetLeadThroughput(false, threads, duration);

  std::cout << "| figure | value |\n|---|---|\n";
  std::cout << absl::StrFormat("| revocations timed | %d |\n", latencies.size());
  std::cout << absl::StrFormat("| revocation latency p50 | %.2f ms |\n", Percentile(latencies, 0.50));
  std::cout << absl::StrFormat("| revocation latency p99 | %.2f ms |\n", Percentile(latencies, 0.99));
  std::cout << absl::StrFormat("| revocation latency max | %.2f ms |\n", Percentile(latencies, 1.0));
  std::cout << absl::StrFormat("| old token accepted after enforcement | %d calls |\n", still_accepted);
  std::cout << absl::StrFormat("| GetLead calls/s, cache on (%d threads) | %.0f (%d failed) |\n", threads,
                               cached.calls_per_second, cached.failures);
  std::cout << absl::StrFormat("| GetLead calls/s, cache off (%d threads) | %.0f (%d failed) |\n", threads,
                               uncached.calls_per_second, uncached.failures);
  std::cout << absl::StrFormat("| cache on / cache off | %.2fx |\n",
                               cached.calls_per_second / std::max(uncached.calls_per_second, 1.0));
  return still_accepted == 0 ? 0 : 1;
}

}  // namespace
}  // namespace crm::testing

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return crm::testing::Run();
}
