// Tests of the load generator's pieces that need no server: percentiles,
// /proc parsing, seed files and the closed loop driven by a fake workload.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <fstream>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tools/bench/loadgen_proc.h"
#include "tools/bench/loadgen_runner.h"
#include "tools/bench/loadgen_scenario.h"
#include "tools/bench/loadgen_stats.h"

namespace crm::bench {
namespace {

TEST(NearestRank, PicksCeilingRank) {
  std::vector<int64_t> sorted = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100};
  EXPECT_EQ(50, NearestRank(sorted, 0.50));
  EXPECT_EQ(90, NearestRank(sorted, 0.90));
  EXPECT_EQ(100, NearestRank(sorted, 0.99));
  EXPECT_EQ(100, NearestRank(sorted, 1.0));
  EXPECT_EQ(10, NearestRank(sorted, 0.01));
}

TEST(SummarizeLatencies, SortsAndConvertsToMilliseconds) {
  std::vector<int64_t> latencies;
  for (int64_t i = 100; i >= 1; --i) latencies.push_back(i * 1'000'000);
  LatencySummary summary = SummarizeLatencies(latencies);
  EXPECT_EQ(100, summary.count);
  EXPECT_DOUBLE_EQ(50.0, summary.p50_ms);
  EXPECT_DOUBLE_EQ(90.0, summary.p90_ms);
  EXPECT_DOUBLE_EQ(99.0, summary.p99_ms);
  EXPECT_DOUBLE_EQ(100.0, summary.max_ms);
}

TEST(SummarizeLatencies, EmptyIsAllZero) {
  LatencySummary summary = SummarizeLatencies({});
  EXPECT_EQ(0, summary.count);
  EXPECT_EQ(0.0, summary.max_ms);
}

TEST(CpuTicksFromStat, AddsUtimeAndStime) {
  // A process name with a space and a ')' must not shift the fields.
  std::string stat = "1234 (crm) server) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
  absl::StatusOr<int64_t> ticks = CpuTicksFromStat(stat);
  ASSERT_TRUE(ticks.ok()) << ticks.status();
  EXPECT_EQ(325, *ticks);
}

TEST(CpuTicksFromStat, RejectsShortLine) {
  EXPECT_FALSE(CpuTicksFromStat("1234 (crm) S 1 2").ok());
  EXPECT_FALSE(CpuTicksFromStat("no parenthesis").ok());
}

TEST(KibFromStatus, ReadsNamedLine) {
  std::string status = "Name:\tcrm_server\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
  EXPECT_EQ(204800, KibFromStatus(status, "VmHWM").value());
  EXPECT_EQ(102400, KibFromStatus(status, "VmRSS").value());
  EXPECT_EQ(absl::StatusCode::kNotFound, KibFromStatus(status, "VmSwap").status().code());
}

TEST(SampleProcess, ReadsOwnProcess) {
  absl::StatusOr<ProcessSample> sample = SampleProcess(getpid());
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_GT(sample->vm_rss_kib, 0);
  EXPECT_GE(sample->vm_hwm_kib, sample->vm_rss_kib);
}

TEST(ParseWatchedProcesses, ParsesPairs) {
  absl::StatusOr<std::vector<WatchedProcess>> processes = ParseWatchedProcesses("crm=12,db=345");
  ASSERT_TRUE(processes.ok()) << processes.status();
  ASSERT_EQ(2u, processes->size());
  EXPECT_EQ("crm", (*processes)[0].name);
  EXPECT_EQ(12, (*processes)[0].pid);
  EXPECT_EQ("db", (*processes)[1].name);
  EXPECT_EQ(345, (*processes)[1].pid);
}

TEST(ParseWatchedProcesses, RejectsMalformedEntries) {
  EXPECT_FALSE(ParseWatchedProcesses("crm").ok());
  EXPECT_FALSE(ParseWatchedProcesses("=12").ok());
  EXPECT_FALSE(ParseWatchedProcesses("crm=abc").ok());
  EXPECT_FALSE(ParseWatchedProcesses("crm=0").ok());
}

// Writes `text` to a new file in the test's temporary folder.
std::string WriteTempFile(absl::string_view name, absl::string_view text) {
  std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << text;
  return path;
}

TEST(ReadTokens, ParsesLinesAndSkipsBlankOnes) {
  std::string path = WriteTempFile("tokens.txt", "7 101 crmpat_a\n\n8 102 crmpat_b\n");
  absl::StatusOr<std::vector<AppToken>> tokens = ReadTokens(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(2u, tokens->size());
  EXPECT_EQ(7u, (*tokens)[0].organization_id);
  EXPECT_EQ("101", (*tokens)[0].app_id);
  EXPECT_EQ("crmpat_b", (*tokens)[1].token);
}

TEST(ReadTokens, NamesMalformedLine) {
  std::string path = WriteTempFile("bad-tokens.txt", "7 101 crmpat_a\nseven 102 crmpat_b\n");
  absl::StatusOr<std::vector<AppToken>> tokens = ReadTokens(path);
  ASSERT_EQ(absl::StatusCode::kInvalidArgument, tokens.status().code());
  EXPECT_NE(std::string::npos, tokens.status().message().find(":2:"));
}

TEST(ReadLeadRanges, ParsesRangesAndRejectsZeroFirstId) {
  absl::StatusOr<std::unordered_map<uint64_t, LeadRange>> ranges =
      ReadLeadRanges(WriteTempFile("leads.txt", "7 1 10000\n8 10001 1000000\n"));
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  EXPECT_EQ(10001u, ranges->at(8).first_id);
  EXPECT_EQ(1000000, ranges->at(8).count);
  EXPECT_FALSE(ReadLeadRanges(WriteTempFile("bad-leads.txt", "7 0 10\n")).ok());
}

TEST(ReadAdminKeys, MissingFileIsNotFound) {
  EXPECT_EQ(absl::StatusCode::kNotFound, ReadAdminKeys("/nonexistent/admin-keys.txt").status().code());
}

// Completes each call on its own thread after a short pause; every tenth
// call (by call index) fails with UNAVAILABLE.
class FakeWorkload : public Workload {
 public:
  FakeWorkload() : thread_([this] { Loop(); }) {}

  ~FakeWorkload() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

  void StartCall(int slot, int64_t call_index, std::mt19937_64& random, CallDone done) override {
    grpc::StatusCode code = call_index % 10 == 9 ? grpc::StatusCode::UNAVAILABLE : grpc::StatusCode::OK;
    absl::MutexLock lock(&mu_);
    pending_.push_back([done = std::move(done), code] { done(Method::kGetLead, code); });
  }

 private:
  void Loop() {
    while (true) {
      std::function<void()> complete;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !pending_.empty(); };
        mu_.Await(absl::Condition(&ready));
        if (pending_.empty()) return;
        complete = std::move(pending_.front());
        pending_.pop_front();
      }
      absl::SleepFor(absl::Microseconds(50));
      complete();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

TEST(RunClosedLoop, CountedRunMakesExactlyTheLimit) {
  FakeWorkload workload;
  RunOptions options;
  options.concurrency = 4;
  options.call_limit = 200;
  options.duration = absl::Seconds(30);
  RunReport report = RunClosedLoop(workload, options);

  EXPECT_TRUE(report.completed);
  EXPECT_EQ(0, report.abandoned_calls);
  EXPECT_EQ(200, report.calls);
  EXPECT_EQ(180, report.ok_calls);
  EXPECT_EQ(20, report.codes[static_cast<int>(grpc::StatusCode::UNAVAILABLE)]);
  EXPECT_EQ(180, report.methods[static_cast<int>(Method::kGetLead)].ok_latency.count);
  EXPECT_EQ(0, report.failed_outside_window);
}

TEST(RunClosedLoop, TimedRunCountsOnlyTheWindow) {
  FakeWorkload workload;
  RunOptions options;
  options.concurrency = 2;
  options.warmup = absl::Milliseconds(100);
  options.duration = absl::Milliseconds(300);
  options.watched.push_back({"self", static_cast<int>(getpid())});
  RunReport report = RunClosedLoop(workload, options);

  EXPECT_TRUE(report.completed);
  EXPECT_EQ(0, report.abandoned_calls);
  EXPECT_GT(report.ok_calls, 0);
  EXPECT_NEAR(0.3, report.window_seconds, 0.1);
  // Warm-up failures are counted apart from the window's codes.
  EXPECT_GT(report.failed_outside_window, 0);
  ASSERT_EQ(1u, report.processes.size());
  EXPECT_EQ("self", report.processes[0].name);
  EXPECT_GE(report.processes[0].cpu_seconds, 0.0);
  EXPECT_GT(report.processes[0].vm_hwm_kib, 0);
}

}  // namespace
}  // namespace crm::bench
