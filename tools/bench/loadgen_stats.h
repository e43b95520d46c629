// Latency and status-code bookkeeping for the load generator. Each
// concurrency slot records into its own SlotRecord without locks, because a
// slot has at most one call in flight. The runner merges the records after
// every slot has stopped.
#ifndef CRM_TOOLS_BENCH_LOADGEN_STATS_H_
#define CRM_TOOLS_BENCH_LOADGEN_STATS_H_

#include <array>
#include <cstdint>
#include <vector>

namespace crm::bench {

// The RPCs the load generator sends; reports break results down by them.
enum class Method {
  kGetLead,
  kCreateLead,
  kUpdateLead,
  kListLeads,
  kCheckToken,
  kCreatePrivateApp,
  kDeletePrivateApp,
  kRotateAccessToken,
};
inline constexpr int kMethodCount = 8;

// The method's name in its service, such as "GetLead".
const char* MethodName(Method method);

// grpc::StatusCode runs from OK (0) to UNAUTHENTICATED (16).
inline constexpr int kStatusCodeCount = 17;
using CodeCounts = std::array<int64_t, kStatusCodeCount>;

// What one slot saw inside the measurement window.
struct SlotRecord {
  // Latencies of successful calls, in nanoseconds, per method.
  std::array<std::vector<int64_t>, kMethodCount> ok_latency_ns;
  // Calls by final status code, per method.
  std::array<CodeCounts, kMethodCount> codes{};
};

// Nearest-rank percentiles of successful calls' latencies; all zero when
// `count` is 0.
struct LatencySummary {
  int64_t count = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
};

// Sorts `latencies_ns` and returns its percentiles.
LatencySummary SummarizeLatencies(std::vector<int64_t> latencies_ns);

// The value at nearest rank ceil(fraction * n) of `sorted`, which must not
// be empty; `fraction` is in (0, 1].
int64_t NearestRank(const std::vector<int64_t>& sorted, double fraction);

}  // namespace crm::bench

#endif  // CRM_TOOLS_BENCH_LOADGEN_STATS_H_
