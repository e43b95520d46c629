#include "services/auth/invalidation_tailer.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "common/logging.h"

namespace crm::auth {
namespace {

// Entries per read of the log; a full batch is followed by another read at
// once.
constexpr int kReadBatchEntries = 1000;
// Entries per purge statement, so each DELETE holds its locks briefly.
constexpr int kPurgeBatchEntries = 1000;

}  // namespace

InvalidationTailer::InvalidationTailer(AuthStore* store, InvalidationTailerOptions options)
    : store_(store), options_(std::move(options)) {}

InvalidationTailer::~InvalidationTailer() { Stop(); }

void InvalidationTailer::Start(std::function<void()> after_read) {
  after_read_ = std::move(after_read);
  ReadOnce();
  tail_thread_ = std::thread([this] { RunTail(); });
  purge_thread_ = std::thread([this] { RunPurge(); });
}

void InvalidationTailer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (tail_thread_.joinable()) tail_thread_.join();
  if (purge_thread_.joinable()) purge_thread_.join();
}

void InvalidationTailer::Wake() {
  absl::MutexLock lock(&mu_);
  wake_requested_ = true;
}

bool InvalidationTailer::WakeAndAwait(int64_t sequence, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  wake_requested_ = true;
  auto published_or_stopping = [this, sequence]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || published_ >= sequence;
  };
  mu_.AwaitWithTimeout(absl::Condition(&published_or_stopping), timeout);
  return published_ >= sequence;
}

InvalidationTailer::View InvalidationTailer::Read(int64_t after_sequence, size_t max_entries) {
  View view;
  absl::MutexLock lock(&mu_);
  view.readable = initialized_ && readable_;
  view.last_read_time = last_read_time_;
  view.latest_sequence = latest_;
  int64_t first_in_window = latest_ + 1 - static_cast<int64_t>(window_.size());
  if (after_sequence + 1 < first_in_window) return view;

  view.in_window = true;
  if (after_sequence >= latest_) return view;
  size_t start = static_cast<size_t>(after_sequence + 1 - first_in_window);
  size_t end = std::min(window_.size(), start + max_entries);
  view.entries.assign(window_.begin() + start, window_.begin() + end);
  return view;
}

void InvalidationTailer::RunTail() {
  bool more_waiting = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (!more_waiting) {
        auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || wake_requested_; };
        mu_.AwaitWithTimeout(absl::Condition(&woken), options_.poll_interval);
      }
      if (stopping_) return;
      wake_requested_ = false;
    }

    more_waiting = ReadOnce();
    int64_t handled;
    {
      absl::MutexLock lock(&mu_);
      handled = latest_;
    }
    if (after_read_) after_read_();
    absl::MutexLock lock(&mu_);
    published_ = std::max(published_, handled);
  }
}

bool InvalidationTailer::ReadOnce() {
  int64_t after;
  {
    absl::MutexLock lock(&mu_);
    // The first read only learns where the log ends: no entry is above the
    // largest sequence.
    after = initialized_ ? latest_ : std::numeric_limits<int64_t>::max();
  }
  absl::StatusOr<InvalidationPage> page = store_->ReadInvalidations(after, kReadBatchEntries);
  absl::Time now = absl::Now();

  absl::MutexLock lock(&mu_);
  if (!page.ok()) {
    // Logged once per outage; streams stop their heartbeats meanwhile.
    if (failed_reads_ == 0) {
      first_failure_time_ = now;
      spdlog::warn("invalidation log read failed; retrying every {} and sending no heartbeats until it works: {}",
                   absl::FormatDuration(options_.poll_interval), page.status().message());
    }
    ++failed_reads_;
    readable_ = false;
    return false;
  }
  if (failed_reads_ > 0) {
    spdlog::info("invalidation log readable again after {} failed reads over {}", failed_reads_,
                 absl::FormatDuration(now - first_failure_time_));
    failed_reads_ = 0;
  }
  readable_ = true;
  last_read_time_ = now;

  if (!initialized_) {
    initialized_ = true;
    latest_ = page->last_sequence;
    published_ = latest_;
    spdlog::info("following the invalidation log from sequence {}", latest_);
    return false;
  }
  ApplyPage(*page);
  return page->entries.size() == static_cast<size_t>(kReadBatchEntries);
}

void InvalidationTailer::ApplyPage(const InvalidationPage& page) {
  if (page.entries.empty()) {
    if (page.last_sequence > latest_) {
      // The log has no gaps, so the entries after latest_ were purged before
      // this instance read them.
      spdlog::warn("invalidation log entries {} to {} were purged before this server read them; "
                   "subscribers at older positions get a reset",
                   latest_ + 1, page.last_sequence);
      window_.clear();
      latest_ = page.last_sequence;
    }
    return;
  }

  for (const InvalidationEntry& entry : page.entries) {
    if (entry.sequence <= latest_) continue;
    if (entry.sequence != latest_ + 1) {
      spdlog::warn("invalidation log entries {} to {} were purged before this server read them; "
                   "subscribers at older positions get a reset",
                   latest_ + 1, entry.sequence - 1);
      window_.clear();
    }
    window_.push_back(entry);
    latest_ = entry.sequence;
  }
  while (window_.size() > options_.window_entries) window_.pop_front();
}

void InvalidationTailer::RunPurge() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.purge_interval)) return;
    }
    absl::StatusOr<int> purged = PurgeNow();
    if (!purged.ok()) {
      spdlog::warn("invalidation log purge failed; retrying in {}: {}", absl::FormatDuration(options_.purge_interval),
                   purged.status().message());
    }
    PurgeQuotaCounters();
  }
}

void InvalidationTailer::PurgeQuotaCounters() {
  int total = 0;
  while (true) {
    absl::StatusOr<int> deleted = store_->PurgeQuotaCounters(kPurgeBatchEntries);
    if (!deleted.ok()) {
      spdlog::warn("rate limit counter purge failed; retrying in {}: {}", absl::FormatDuration(options_.purge_interval),
                   deleted.status().message());
      return;
    }
    total += *deleted;
    if (*deleted < kPurgeBatchEntries) break;
    absl::MutexLock lock(&mu_);
    if (stopping_) break;
  }
  if (total > 0) spdlog::info("purged {} expired rate limit counter rows", total);
}

absl::StatusOr<int> InvalidationTailer::PurgeNow() {
  absl::Time cutoff = options_.clock() - options_.retention;
  int total = 0;
  while (true) {
    absl::StatusOr<int> deleted = store_->PurgeInvalidations(cutoff, kPurgeBatchEntries);
    if (!deleted.ok()) return deleted.status();
    total += *deleted;
    if (*deleted < kPurgeBatchEntries) break;
    absl::MutexLock lock(&mu_);
    if (stopping_) break;
  }

  // Another instance may have purged more than this pass, so ask the log.
  absl::StatusOr<int64_t> oldest = store_->OldestRetainedInvalidation();
  if (!oldest.ok()) return oldest.status();
  DropBefore(*oldest);
  if (total > 0) {
    spdlog::info("purged {} invalidation log entries created before {}; oldest retained sequence {}", total,
                 absl::FormatTime(cutoff, absl::UTCTimeZone()), *oldest);
  }
  return total;
}

void InvalidationTailer::DropBefore(int64_t oldest_retained) {
  absl::MutexLock lock(&mu_);
  while (!window_.empty() && window_.front().sequence < oldest_retained) window_.pop_front();
}

}  // namespace crm::auth
