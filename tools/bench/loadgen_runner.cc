#include "tools/bench/loadgen_runner.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace crm::bench {
namespace {

using Clock = std::chrono::steady_clock;

enum class Phase { kWarmup, kMeasure, kStop };

// A slot waits this long after a failed call before its next one, so a
// server that rejects everything at once does not make the client spin.
constexpr absl::Duration kPauseAfterFailure = absl::Milliseconds(1);

class ClosedLoop {
 public:
  ClosedLoop(Workload& workload, const RunOptions& options) : workload_(workload), options_(options) {}

  RunReport Run();

 private:
  struct Slot {
    int index = 0;
    std::mt19937_64 random;
    Clock::time_point call_start;
    SlotRecord record;
  };

  void StartNext(Slot& slot);
  void OnCallDone(Slot& slot, Method method, grpc::StatusCode code);
  void FinishSlot();
  void RetryLoop();
  std::vector<ProcessSample> SampleWatched();
  RunReport Merge(double window_seconds, const std::vector<ProcessSample>& before,
                  const std::vector<ProcessSample>& after);

  Workload& workload_;
  const RunOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<Phase> phase_{Phase::kWarmup};
  std::atomic<int64_t> next_call_{0};
  std::atomic<int64_t> failed_outside_window_{0};

  absl::Mutex mu_;
  int active_slots_ ABSL_GUARDED_BY(mu_) = 0;
  // Slots whose last call failed, waiting for kPauseAfterFailure. Starting
  // them from the retry thread also keeps a call that fails inside
  // StartCall from recursing into the next one.
  std::deque<Slot*> retry_queue_ ABSL_GUARDED_BY(mu_);
  bool retry_thread_exit_ ABSL_GUARDED_BY(mu_) = false;
};

void ClosedLoop::StartNext(Slot& slot) {
  if (phase_.load() == Phase::kStop) {
    FinishSlot();
    return;
  }
  int64_t call_index = next_call_.fetch_add(1);
  if (options_.call_limit > 0 && call_index >= options_.call_limit) {
    FinishSlot();
    return;
  }
  slot.call_start = Clock::now();
  workload_.StartCall(slot.index, call_index, slot.random,
                      [this, &slot](Method method, grpc::StatusCode code) { OnCallDone(slot, method, code); });
}

void ClosedLoop::OnCallDone(Slot& slot, Method method, grpc::StatusCode code) {
  int64_t latency_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - slot.call_start).count();
  int method_index = static_cast<int>(method);
  int code_index = static_cast<int>(code);
  if (code_index < 0 || code_index >= kStatusCodeCount) code_index = static_cast<int>(grpc::StatusCode::UNKNOWN);

  if (phase_.load() == Phase::kMeasure) {
    slot.record.codes[method_index][code_index] += 1;
    if (code == grpc::StatusCode::OK) slot.record.ok_latency_ns[method_index].push_back(latency_ns);
  } else if (code != grpc::StatusCode::OK) {
    failed_outside_window_.fetch_add(1);
  }

  if (code == grpc::StatusCode::OK) {
    StartNext(slot);
    return;
  }
  absl::MutexLock lock(&mu_);
  retry_queue_.push_back(&slot);
}

void ClosedLoop::FinishSlot() {
  absl::MutexLock lock(&mu_);
  --active_slots_;
}

void ClosedLoop::RetryLoop() {
  while (true) {
    Slot* slot = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return retry_thread_exit_ || !retry_queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (retry_queue_.empty()) return;
      slot = retry_queue_.front();
      retry_queue_.pop_front();
    }
    absl::SleepFor(kPauseAfterFailure);
    StartNext(*slot);
  }
}

std::vector<ProcessSample> ClosedLoop::SampleWatched() {
  std::vector<ProcessSample> samples;
  for (const WatchedProcess& process : options_.watched) {
    absl::StatusOr<ProcessSample> sample = SampleProcess(process.pid);
    if (!sample.ok()) {
      std::cerr << "loadgen: cannot sample " << process.name << " (pid " << process.pid
                << "): " << sample.status().message() << "\n";
      samples.emplace_back();
      continue;
    }
    samples.push_back(*sample);
  }
  return samples;
}

RunReport ClosedLoop::Merge(double window_seconds, const std::vector<ProcessSample>& before,
                            const std::vector<ProcessSample>& after) {
  RunReport report;
  report.window_seconds = window_seconds;
  report.failed_outside_window = failed_outside_window_.load();

  std::vector<int64_t> all_ok;
  for (int method = 0; method < kMethodCount; ++method) {
    std::vector<int64_t> method_ok;
    for (const std::unique_ptr<Slot>& slot : slots_) {
      const std::vector<int64_t>& latencies = slot->record.ok_latency_ns[method];
      method_ok.insert(method_ok.end(), latencies.begin(), latencies.end());
      for (int code = 0; code < kStatusCodeCount; ++code) {
        int64_t count = slot->record.codes[method][code];
        report.methods[method].codes[code] += count;
        report.codes[code] += count;
        report.calls += count;
      }
    }
    all_ok.insert(all_ok.end(), method_ok.begin(), method_ok.end());
    report.methods[method].ok_latency = SummarizeLatencies(std::move(method_ok));
  }
  report.ok_calls = report.codes[static_cast<int>(grpc::StatusCode::OK)];
  report.ok_latency = SummarizeLatencies(std::move(all_ok));

  for (size_t i = 0; i < options_.watched.size(); ++i) {
    ProcessUsage usage;
    usage.name = options_.watched[i].name;
    usage.cpu_seconds = after[i].cpu_seconds - before[i].cpu_seconds;
    usage.vm_rss_kib = after[i].vm_rss_kib;
    usage.vm_hwm_kib = after[i].vm_hwm_kib;
    report.processes.push_back(usage);
  }
  return report;
}

RunReport ClosedLoop::Run() {
  const bool limited = options_.call_limit > 0;
  for (int i = 0; i < options_.concurrency; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->index = i;
    slot->random.seed(options_.random_seed * 1000003 + static_cast<uint64_t>(i));
    slots_.push_back(std::move(slot));
  }
  {
    absl::MutexLock lock(&mu_);
    active_slots_ = options_.concurrency;
  }
  std::thread retry_thread([this] { RetryLoop(); });
  auto all_finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_slots_ == 0; };

  std::vector<ProcessSample> before;
  double client_cpu_before = 0;
  Clock::time_point window_start;
  if (limited) {
    // A counted run measures from its first call to its last.
    phase_ = Phase::kMeasure;
    before = SampleWatched();
    client_cpu_before = SelfCpuSeconds();
    window_start = Clock::now();
  }
  for (const std::unique_ptr<Slot>& slot : slots_) StartNext(*slot);

  bool completed = true;
  if (limited) {
    absl::MutexLock lock(&mu_);
    completed = mu_.AwaitWithTimeout(absl::Condition(&all_finished), options_.duration);
  } else {
    absl::SleepFor(options_.warmup);
    before = SampleWatched();
    client_cpu_before = SelfCpuSeconds();
    window_start = Clock::now();
    phase_ = Phase::kMeasure;
    absl::SleepFor(options_.duration);
  }
  phase_ = Phase::kStop;
  Clock::time_point window_end = Clock::now();
  std::vector<ProcessSample> after = SampleWatched();
  double client_cpu_after = SelfCpuSeconds();

  int abandoned = 0;
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&all_finished), options_.drain_timeout);
    abandoned = active_slots_;
    retry_thread_exit_ = true;
  }
  retry_thread.join();

  double window_seconds = std::chrono::duration<double>(window_end - window_start).count();
  RunReport report = Merge(window_seconds, before, after);
  report.completed = completed;
  report.abandoned_calls = abandoned;
  report.client_cpu_seconds = client_cpu_after - client_cpu_before;
  return report;
}

}  // namespace

RunReport RunClosedLoop(Workload& workload, const RunOptions& options) {
  auto loop = std::make_unique<ClosedLoop>(workload, options);
  RunReport report = loop->Run();
  if (report.abandoned_calls > 0) {
    // The abandoned calls' callbacks may still run and touch the loop and
    // its slots, so it must never be freed; the caller exits soon after.
    static_cast<void>(loop.release());
  }
  return report;
}

}  // namespace crm::bench
