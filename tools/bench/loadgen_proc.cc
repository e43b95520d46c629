#include "tools/bench/loadgen_proc.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace crm::bench {
namespace {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::vector<WatchedProcess>> ParseWatchedProcesses(absl::string_view spec) {
  std::vector<WatchedProcess> processes;
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    WatchedProcess process;
    process.name = std::string(parts.first);
    if (process.name.empty() || !absl::SimpleAtoi(parts.second, &process.pid) || process.pid <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --watch entry \"", entry, "\"; expected name=pid, such as crm=1234"));
    }
    processes.push_back(std::move(process));
  }
  return processes;
}

absl::StatusOr<int64_t> CpuTicksFromStat(absl::string_view stat) {
  size_t name_end = stat.rfind(')');
  if (name_end == absl::string_view::npos) return absl::InvalidArgumentError("no ')' in /proc/PID/stat");
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat.substr(name_end + 1), ' ', absl::SkipWhitespace());
  // fields[0] is field 3 (state), so utime (field 14) is fields[11] and
  // stime (field 15) is fields[12]; see proc(5).
  int64_t utime = 0;
  int64_t stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) || !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InvalidArgumentError("cannot read utime and stime from /proc/PID/stat");
  }
  return utime + stime;
}

absl::StatusOr<int64_t> KibFromStatus(absl::string_view status, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, key) || !absl::ConsumePrefix(&line, ":")) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    int64_t value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &value)) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read ", key, " from /proc/PID/status"));
    }
    return value;
  }
  return absl::NotFoundError(absl::StrCat(key, " not in /proc/PID/status"));
}

absl::StatusOr<ProcessSample> SampleProcess(int pid) {
  absl::StatusOr<std::string> stat = ReadWholeFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return stat.status();
  absl::StatusOr<std::string> status = ReadWholeFile(absl::StrCat("/proc/", pid, "/status"));
  if (!status.ok()) return status.status();

  absl::StatusOr<int64_t> ticks = CpuTicksFromStat(*stat);
  if (!ticks.ok()) return ticks.status();
  absl::StatusOr<int64_t> rss = KibFromStatus(*status, "VmRSS");
  if (!rss.ok()) return rss.status();
  absl::StatusOr<int64_t> hwm = KibFromStatus(*status, "VmHWM");
  if (!hwm.ok()) return hwm.status();

  ProcessSample sample;
  sample.cpu_seconds = static_cast<double>(*ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
  sample.vm_rss_kib = *rss;
  sample.vm_hwm_kib = *hwm;
  return sample;
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& time) {
    return static_cast<double>(time.tv_sec) + static_cast<double>(time.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

}  // namespace crm::bench
