// The closed-loop driver of the load generator: `concurrency` slots, each
// with exactly one call in flight, start their next call as soon as the
// previous one completes. A run has a warm-up, whose calls are not counted,
// then a measurement window. Only calls that complete inside the window are
// counted, and server CPU time is sampled at the window's two edges.
#ifndef CRM_TOOLS_BENCH_LOADGEN_RUNNER_H_
#define CRM_TOOLS_BENCH_LOADGEN_RUNNER_H_

#include <grpcpp/support/status.h>

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "tools/bench/loadgen_proc.h"
#include "tools/bench/loadgen_stats.h"

namespace crm::bench {

// Reports the end of one call: the method it called and its status code.
using CallDone = std::function<void(Method method, grpc::StatusCode code)>;

// A source of calls for the runner.
class Workload {
 public:
  virtual ~Workload() = default;

  // Starts one asynchronous call for `slot` (0 to concurrency - 1). The
  // implementation must call `done` exactly once, from any thread, when the
  // call ends, and must not block. `call_index` numbers the run's calls
  // from 0 across all slots. The runner starts a slot's next call only
  // after `done`, so per-slot state needs no lock.
  virtual void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) = 0;
};

struct RunOptions {
  int concurrency = 64;
  absl::Duration warmup = absl::Seconds(2);
  absl::Duration duration = absl::Seconds(10);
  // When above 0, the run makes exactly this many calls with no warm-up,
  // and `duration` only bounds how long it may take.
  int64_t call_limit = 0;
  // Bounds the wait for calls still in flight when the window closes.
  absl::Duration drain_timeout = absl::Seconds(15);
  uint64_t random_seed = 1;
  std::vector<WatchedProcess> watched;
};

// CPU used by one watched process inside the window and its memory at the
// end.
struct ProcessUsage {
  std::string name;
  double cpu_seconds = 0;
  int64_t vm_rss_kib = 0;
  int64_t vm_hwm_kib = 0;
};

struct MethodReport {
  LatencySummary ok_latency;
  CodeCounts codes{};
};

struct RunReport {
  double window_seconds = 0;
  // Calls that completed inside the window, and those of them that were OK.
  int64_t calls = 0;
  int64_t ok_calls = 0;
  CodeCounts codes{};
  LatencySummary ok_latency;
  std::array<MethodReport, kMethodCount> methods;
  // Failed calls during warm-up or after the window closed.
  int64_t failed_outside_window = 0;
  // Calls still in flight when the drain timeout passed.
  int64_t abandoned_calls = 0;
  // False when a call_limit run did not finish its calls within `duration`.
  bool completed = true;
  std::vector<ProcessUsage> processes;
  double client_cpu_seconds = 0;
};

// Runs `workload` with `options` and returns the measurement window's figures.
RunReport RunClosedLoop(Workload& workload, const RunOptions& options);

}  // namespace crm::bench

#endif  // CRM_TOOLS_BENCH_LOADGEN_RUNNER_H_
