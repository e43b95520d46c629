// CPU time and memory of server processes on the same Linux machine, read
// from /proc, so the load generator can charge server CPU to exactly the
// calls of its measurement window.
#ifndef CRM_TOOLS_BENCH_LOADGEN_PROC_H_
#define CRM_TOOLS_BENCH_LOADGEN_PROC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm::bench {

// A server process to observe, named for the report ("crm", "auth", "db").
struct WatchedProcess {
  std::string name;
  int pid = 0;
};

// Parses "name=pid,name=pid". Returns INVALID_ARGUMENT for a malformed
// entry.
absl::StatusOr<std::vector<WatchedProcess>> ParseWatchedProcesses(absl::string_view spec);

struct ProcessSample {
  // utime + stime, in seconds.
  double cpu_seconds = 0;
  // VmRSS and VmHWM (peak resident set size) from /proc/PID/status, in KiB.
  int64_t vm_rss_kib = 0;
  int64_t vm_hwm_kib = 0;
};

// Returns utime + stime in clock ticks from the text of /proc/PID/stat.
// The process name in parentheses may itself contain spaces and ')', so
// fields are counted from the last ')'.
absl::StatusOr<int64_t> CpuTicksFromStat(absl::string_view stat);

// Returns the value in KiB of a "Key:  123 kB" line of /proc/PID/status, or
// NOT_FOUND.
absl::StatusOr<int64_t> KibFromStatus(absl::string_view status, absl::string_view key);

// Reads /proc/PID/stat and /proc/PID/status. Returns NOT_FOUND when the
// process is gone.
absl::StatusOr<ProcessSample> SampleProcess(int pid);

// CPU seconds (user + system) this process has used so far.
double SelfCpuSeconds();

}  // namespace crm::bench

#endif  // CRM_TOOLS_BENCH_LOADGEN_PROC_H_
