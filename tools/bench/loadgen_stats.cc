#include "tools/bench/loadgen_stats.h"

#include <algorithm>
#include <cmath>

namespace crm::bench {

const char* MethodName(Method method) {
  switch (method) {
    case Method::kGetLead:
      return "GetLead";
    case Method::kCreateLead:
      return "CreateLead";
    case Method::kUpdateLead:
      return "UpdateLead";
    case Method::kListLeads:
      return "ListLeads";
    case Method::kCheckToken:
      return "CheckToken";
    case Method::kCreatePrivateApp:
      return "CreatePrivateApp";
    case Method::kDeletePrivateApp:
      return "DeletePrivateApp";
    case Method::kRotateAccessToken:
      return "RotateAccessToken";
  }
  return "unknown";
}

int64_t NearestRank(const std::vector<int64_t>& sorted, double fraction) {
  double rank = std::ceil(fraction * static_cast<double>(sorted.size()));
  size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

LatencySummary SummarizeLatencies(std::vector<int64_t> latencies_ns) {
  LatencySummary summary;
  if (latencies_ns.empty()) return summary;
  std::sort(latencies_ns.begin(), latencies_ns.end());
  constexpr double kNanosPerMilli = 1e6;
  summary.count = static_cast<int64_t>(latencies_ns.size());
  summary.p50_ms = static_cast<double>(NearestRank(latencies_ns, 0.50)) / kNanosPerMilli;
  summary.p90_ms = static_cast<double>(NearestRank(latencies_ns, 0.90)) / kNanosPerMilli;
  summary.p99_ms = static_cast<double>(NearestRank(latencies_ns, 0.99)) / kNanosPerMilli;
  summary.max_ms = static_cast<double>(latencies_ns.back()) / kNanosPerMilli;
  return summary;
}

}  // namespace crm::bench
