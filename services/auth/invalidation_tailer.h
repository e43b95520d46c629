// Follows the invalidation log for one auth server instance, so that every
// instance can serve TokenService.WatchInvalidations.
//
// A background thread reads the entries after the last one it has read,
// every poll interval and at once when Wake() is called after a local change
// commits. It keeps the newest entries in memory (the window) and calls a
// listener after every read, successful or not, so streams send new entries
// and heartbeats from the tailer's thread. Entries committed through another
// instance arrive within one poll interval.
//
// A second thread deletes entries older than the retention period, in
// batches, and then drops purged entries from the window too, so a
// subscriber whose position was purged gets a reset on every instance.
// The same thread also purges expired rate limit counters
// (AuthStore::PurgeQuotaCounters), because both are periodic clean-ups of
// the auth schema.
//
// No gRPC types here; the streams live in invalidation_stream.h.
#ifndef CRM_SERVICES_AUTH_INVALIDATION_TAILER_H_
#define CRM_SERVICES_AUTH_INVALIDATION_TAILER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/auth/auth_store.h"

namespace crm::auth {

struct InvalidationTailerOptions {
  // Time between reads of the log when no local change wakes the tailer.
  absl::Duration poll_interval = absl::Milliseconds(20);
  // Newest entries kept in memory. A subscriber further behind is served
  // from the database.
  size_t window_entries = 10000;
  // Entries created longer ago than this are deleted.
  absl::Duration retention = absl::Hours(24);
  // Time between purge passes.
  absl::Duration purge_interval = absl::Minutes(1);
  // Current time for the retention cutoff; tests inject a later one. Log
  // entries take their create_time from AuthStore's clock.
  Clock clock = absl::Now;
};

class InvalidationTailer {
 public:
  // The tailer's state as one stream needs it, copied under one lock.
  struct View {
    // Whether the most recent read of the log succeeded, and when that
    // successful read finished.
    bool readable = false;
    absl::Time last_read_time = absl::InfinitePast();
    // The last sequence read from the log.
    int64_t latest_sequence = 0;
    // Whether the window contains the entries after the requested
    // position. False when the position is older than the window.
    bool in_window = false;
    // The first entries after the requested position, when in_window.
    std::vector<InvalidationEntry> entries;
  };

  // `store` must outlive the tailer.
  InvalidationTailer(AuthStore* store, InvalidationTailerOptions options);
  // Stops the threads.
  ~InvalidationTailer();

  InvalidationTailer(const InvalidationTailer&) = delete;
  InvalidationTailer& operator=(const InvalidationTailer&) = delete;

  // Reads the end of the log once on the calling thread (a failure is
  // logged and retried by the thread), then starts the tail and purge
  // threads. `after_read` runs on the tail thread after every read attempt.
  // Call once.
  void Start(std::function<void()> after_read);

  // Stops and joins the threads; safe to call more than once.
  void Stop();

  // Makes the tail thread read the log now instead of at the next poll.
  void Wake();

  // Wakes the tail thread and waits until it has read `sequence` and
  // `after_read` has returned for that read. Returns false after `timeout`
  // or when the tailer stops first.
  bool WakeAndAwait(int64_t sequence, absl::Duration timeout);

  // Returns the state with up to `max_entries` window entries after
  // `after_sequence`.
  View Read(int64_t after_sequence, size_t max_entries);

  // Deletes the entries older than the retention period and drops them from
  // the window. Returns how many entries it deleted. The purge thread calls
  // it every purge interval.
  absl::StatusOr<int> PurgeNow();

  const InvalidationTailerOptions& options() const { return options_; }

 private:
  void RunTail();
  void RunPurge();
  // Deletes expired rate limit counters in batches; logs a failure.
  void PurgeQuotaCounters();
  // Reads once and updates the state. Returns whether the read filled a
  // whole batch, so more entries may be waiting.
  bool ReadOnce();
  void ApplyPage(const InvalidationPage& page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropBefore(int64_t oldest_retained);

  AuthStore* const store_;
  const InvalidationTailerOptions options_;
  std::function<void()> after_read_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_requested_ ABSL_GUARDED_BY(mu_) = false;
  // Whether a read has succeeded yet; before it, latest_ is unknown.
  bool initialized_ ABSL_GUARDED_BY(mu_) = false;
  bool readable_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_read_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Failed reads since the last success, and when the first of them failed.
  int64_t failed_reads_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time first_failure_time_ ABSL_GUARDED_BY(mu_);
  int64_t latest_ ABSL_GUARDED_BY(mu_) = 0;
  // The entries up to latest_, consecutive; the first has sequence
  // latest_ + 1 - window_.size().
  std::deque<InvalidationEntry> window_ ABSL_GUARDED_BY(mu_);
  // The latest sequence whose read `after_read` has finished handling.
  int64_t published_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread tail_thread_;
  std::thread purge_thread_;
};

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_INVALIDATION_TAILER_H_
