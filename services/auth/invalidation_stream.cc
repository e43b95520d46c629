#include "services/auth/invalidation_stream.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"

namespace crm::auth {
namespace {

// Entries per message: about 30 KB, far below gRPC's 4 MiB default limit.
constexpr size_t kMaxEntriesPerMessage = 1000;
constexpr int kDatabaseReadThreads = 2;
constexpr size_t kMaxQueuedDatabaseReads = 256;

void AddEntries(const std::vector<InvalidationEntry>& entries, v1::WatchInvalidationsResponse* message) {
  for (const InvalidationEntry& entry : entries) {
    v1::Invalidation* invalidation = message->add_invalidations();
    invalidation->set_sequence(entry.sequence);
    invalidation->set_app_id(absl::StrCat(entry.app_id));
    invalidation->set_organization_id(absl::StrCat(entry.organization_id));
    invalidation->set_reason(entry.reason);
  }
}

}  // namespace

// One WatchInvalidations call. At most one write or database read is in
// flight at a time; Pump() starts the next one when there is something to
// send. The object deletes itself after OnDone() and after its last
// database read has returned, whichever comes later.
class InvalidationStreams::Stream final : public grpc::ServerWriteReactor<v1::WatchInvalidationsResponse> {
 public:
  Stream(InvalidationStreams* owner, std::string peer, int64_t from_sequence)
      : owner_(owner), peer_(std::move(peer)), from_sequence_(from_sequence), start_(absl::Now()) {}

  // Sets where the stream starts. With `check_position`, the position is
  // above what this instance has read, and the first database read decides
  // whether it exists (another instance may have committed it already).
  void Begin(int64_t position, bool check_position) {
    absl::MutexLock lock(&mu_);
    position_ = position;
    check_position_ = check_position;
  }

  // Starts the next write or database read, if one is due and none is in
  // flight.
  void Pump() {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      action = PlanLocked();
    }
    Execute(action);
  }

  // Ends the stream with `status`, after the write in flight if there is one.
  void End(const grpc::Status& status) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || pending_finish_.has_value()) return;
      pending_finish_ = status;
      action = PlanLocked();
    }
    Execute(action);
  }

  void OnWriteDone(bool ok) override {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      // A failed write means the call is over: cancelled or the client left.
      if (!ok && !pending_finish_.has_value()) {
        pending_finish_ = grpc::Status(grpc::StatusCode::CANCELLED, "the subscriber went away");
      }
      action = PlanLocked();
    }
    Execute(action);
  }

  void OnCancel() override { End(grpc::Status(grpc::StatusCode::CANCELLED, "the subscriber cancelled the stream")); }

  void OnDone() override {
    owner_->Remove(this);
    bool delete_now;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      delete_now = !reading_;
      // Streams end on every reconnect and shutdown, and the tailer already
      // warns about database outages, so only server faults warn here.
      grpc::StatusCode code = final_status_.error_code();
      bool server_fault = code == grpc::StatusCode::INTERNAL || code == grpc::StatusCode::UNKNOWN ||
                          code == grpc::StatusCode::DATA_LOSS;
      spdlog::log(server_fault ? spdlog::level::warn : spdlog::level::info,
                  "rpc method=TokenService/WatchInvalidations code={} duration_ms={:.0f} from_sequence={} "
                  "last_sent_sequence={} peer={}{}",
                  StatusCodeName(final_status_.error_code()), absl::ToDoubleMilliseconds(absl::Now() - start_),
                  from_sequence_, position_, peer_,
                  final_status_.ok() ? "" : absl::StrCat(" message=\"", final_status_.error_message(), "\""));
    }
    if (delete_now) delete this;
  }

 private:
  enum class Action { kNone, kWrite, kReadDatabase, kFinish };

  Action PlanLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) return Action::kNone;
    if (pending_finish_.has_value()) {
      // Finishing does not wait for a database read in flight: its result
      // is dropped, and the object outlives it (see OnDone).
      finished_ = true;
      final_status_ = *pending_finish_;
      return Action::kFinish;
    }
    if (reading_) return Action::kNone;

    InvalidationTailer::View view = owner_->tailer_->Read(position_, kMaxEntriesPerMessage);
    if (check_position_ || !view.in_window) {
      // Wait for a good tailer read before asking the database, so that an
      // outage costs one failing query per poll, not one per stream.
      if (!view.readable) return Action::kNone;
      reading_ = true;
      return Action::kReadDatabase;
    }
    if (!view.entries.empty()) {
      message_.Clear();
      AddEntries(view.entries, &message_);
      position_ = view.entries.back().sequence;
      message_.set_latest_sequence(std::max(view.latest_sequence, position_));
      return StartWriteLocked();
    }

    // A heartbeat states that nothing newer exists, which is true only if
    // the tailer read the log recently. It is sent two poll intervals early,
    // so a late tailer read still keeps the heartbeat interval.
    absl::Time now = absl::Now();
    bool current = view.readable && now - view.last_read_time < owner_->heartbeat_interval_;
    absl::Duration margin = 2 * owner_->tailer_->options().poll_interval;
    bool due = !first_sent_ || now + margin >= last_write_time_ + owner_->heartbeat_interval_;
    if (!current || !due) return Action::kNone;
    message_.Clear();
    message_.set_latest_sequence(std::max(view.latest_sequence, position_));
    return StartWriteLocked();
  }

  Action StartWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    first_sent_ = true;
    last_write_time_ = absl::Now();
    return Action::kWrite;
  }

  // Runs outside mu_. gRPC 1.51 runs reactions on its own threads, never
  // inside StartWrite or Finish, but calling them unlocked keeps that an
  // optimisation rather than a requirement.
  void Execute(Action action) {
    switch (action) {
      case Action::kNone:
        return;
      case Action::kWrite:
        StartWrite(&message_);
        return;
      case Action::kFinish: {
        grpc::Status status;
        {
          absl::MutexLock lock(&mu_);
          status = final_status_;
        }
        Finish(status);
        return;
      }
      case Action::kReadDatabase: {
        if (owner_->database_reads_.TrySubmit([this] { ReadDatabase(); })) return;
        // The queue is full; the next tailer read pumps this stream again.
        bool delete_now;
        {
          absl::MutexLock lock(&mu_);
          reading_ = false;
          delete_now = done_;
        }
        if (delete_now) delete this;
        return;
      }
    }
  }

  // Runs on a worker: reads the log after the stream's position.
  void ReadDatabase() {
    int64_t after;
    {
      absl::MutexLock lock(&mu_);
      after = position_;
    }
    absl::StatusOr<InvalidationPage> page = owner_->store_->ReadInvalidations(after, kMaxEntriesPerMessage);

    Action action = Action::kNone;
    bool delete_now = false;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (done_) {
        delete_now = true;
      } else {
        action = ApplyDatabasePageLocked(page);
      }
    }
    if (delete_now) {
      delete this;
      return;
    }
    Execute(action);
  }

  Action ApplyDatabasePageLocked(const absl::StatusOr<InvalidationPage>& page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!page.ok()) {
      if (!read_failure_logged_) {
        spdlog::warn("invalidation stream for {} cannot read the log after sequence {}; retrying: {}", peer_,
                     position_, page.status().message());
        read_failure_logged_ = true;
      }
      // Planning now would retry at once; the next tailer read retries.
      return Action::kNone;
    }
    read_failure_logged_ = false;

    if (check_position_) {
      if (position_ > page->last_sequence) {
        pending_finish_ = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                       absl::StrCat("from_sequence ", position_, " is above the latest sequence ",
                                                    page->last_sequence, "; resume from at most that"));
        return PlanLocked();
      }
      check_position_ = false;
    }

    const std::vector<InvalidationEntry>& entries = page->entries;
    if (!entries.empty() && entries.front().sequence == position_ + 1) {
      message_.Clear();
      AddEntries(entries, &message_);
      position_ = entries.back().sequence;
      message_.set_latest_sequence(std::max(page->last_sequence, position_));
      return StartWriteLocked();
    }
    if (position_ < page->last_sequence) {
      // The log has no gaps, so the entries right after position_ were
      // purged: the oldest retained entry is later than position_ + 1.
      message_.Clear();
      message_.set_reset(true);
      message_.set_latest_sequence(page->last_sequence);
      position_ = page->last_sequence;
      return StartWriteLocked();
    }
    return PlanLocked();
  }

  InvalidationStreams* const owner_;
  const std::string peer_;
  const int64_t from_sequence_;
  const absl::Time start_;

  absl::Mutex mu_;
  // The last sequence sent, or the position the subscriber requested.
  int64_t position_ ABSL_GUARDED_BY(mu_) = 0;
  bool check_position_ ABSL_GUARDED_BY(mu_) = false;
  bool first_sent_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_write_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_failure_logged_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> pending_finish_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  // The message being written; gRPC reads it until OnWriteDone.
  v1::WatchInvalidationsResponse message_;
};

InvalidationStreams::InvalidationStreams(AuthStore* store, InvalidationTailer* tailer,
                                         absl::Duration heartbeat_interval)
    : store_(store),
      tailer_(tailer),
      heartbeat_interval_(heartbeat_interval),
      database_reads_(kDatabaseReadThreads, kMaxQueuedDatabaseReads) {}

InvalidationStreams::~InvalidationStreams() = default;

grpc::ServerWriteReactor<v1::WatchInvalidationsResponse>* InvalidationStreams::Open(
    grpc::CallbackServerContext* context, const v1::WatchInvalidationsRequest& request) {
  int64_t from = request.from_sequence();
  auto* stream = new Stream(this, context->peer(), from);
  if (from < 0) {
    stream->End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             absl::StrCat("from_sequence must not be negative, got ", from,
                                          "; use 0 to start at the end of the log")));
    return stream;
  }
  InvalidationTailer::View view = tailer_->Read(0, 0);
  if (!view.readable) {
    stream->End(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                             "the invalidation log cannot be read now; retry with backoff"));
    return stream;
  }
  stream->Begin(from == 0 ? view.latest_sequence : from, from > view.latest_sequence);

  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) {
      stream->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the auth server is shutting down"));
      return stream;
    }
    streams_.insert(stream);
  }
  stream->Pump();
  return stream;
}

void InvalidationStreams::SendDue() {
  // Holding mu_ keeps every stream alive: OnDone removes it under mu_
  // before deleting it.
  absl::MutexLock lock(&mu_);
  for (Stream* stream : streams_) stream->Pump();
}

void InvalidationStreams::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  for (Stream* stream : streams_) {
    stream->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the auth server is shutting down"));
  }
}

void InvalidationStreams::Remove(Stream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

size_t InvalidationStreams::Count() {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

}  // namespace crm::auth
