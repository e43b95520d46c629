#include "services/crm/invalidation_watcher.h"

#include <random>

#include "absl/strings/numbers.h"
#include "common/logging.h"

namespace crm::data {

using crm::data::v1::WatchState;

InvalidationWatcher::InvalidationWatcher(std::shared_ptr<grpc::Channel> channel, TokenCache* cache,
                                         InvalidationWatcherOptions options)
    : stub_(crm::auth::v1::TokenService::NewStub(std::move(channel))), cache_(cache), options_(options) {}

InvalidationWatcher::~InvalidationWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (active_context_ != nullptr) active_context_->TryCancel();
  }
  if (reader_.joinable()) reader_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

void InvalidationWatcher::Start() {
  reader_ = std::thread([this] { Run(); });
  watchdog_ = std::thread([this] { RunWatchdog(); });
}

bool InvalidationWatcher::IsCurrent() {
  absl::MutexLock lock(&mu_);
  return state_ == crm::data::v1::WATCH_STATE_CURRENT && applied_ >= latest_ &&
         absl::Now() - last_message_ < options_.heartbeat_timeout;
}

WatchState InvalidationWatcher::State() {
  absl::MutexLock lock(&mu_);
  if (state_ == crm::data::v1::WATCH_STATE_CURRENT && absl::Now() - last_message_ >= options_.heartbeat_timeout) {
    return crm::data::v1::WATCH_STATE_BEHIND;
  }
  return state_;
}

int64_t InvalidationWatcher::AppliedSequence() {
  absl::MutexLock lock(&mu_);
  return applied_;
}

int64_t InvalidationWatcher::LatestSequence() {
  absl::MutexLock lock(&mu_);
  return latest_;
}

void InvalidationWatcher::Run() {
  std::mt19937 random(std::random_device{}());
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    if (ReadStream()) backoff = options_.initial_backoff;
    // Jitter, so that many CRM instances do not reconnect in lockstep.
    absl::Duration wait = backoff * std::uniform_real_distribution<double>(0.5, 1.0)(random);
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait)) return;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

bool InvalidationWatcher::ReadStream() {
  grpc::ClientContext context;
  crm::auth::v1::WatchInvalidationsRequest request;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    active_context_ = &context;
    // Resume after the last applied entry; a first connection starts at the
    // current end of the log, because an empty cache has nothing to drop.
    request.set_from_sequence(synced_once_ ? applied_ : 0);
    last_message_ = absl::Now();
  }

  std::unique_ptr<grpc::ClientReader<crm::auth::v1::WatchInvalidationsResponse>> reader =
      stub_->WatchInvalidations(&context, request);
  crm::auth::v1::WatchInvalidationsResponse response;
  bool received = false;
  while (reader->Read(&response)) {
    received = true;
    Apply(response);
  }
  grpc::Status status = reader->Finish();

  absl::MutexLock lock(&mu_);
  active_context_ = nullptr;
  if (!stopping_) {
    SetState(crm::data::v1::WATCH_STATE_DISCONNECTED,
             status.ok() ? std::string("stream ended") : status.error_message());
  }
  return received;
}

void InvalidationWatcher::Apply(const crm::auth::v1::WatchInvalidationsResponse& response) {
  absl::MutexLock lock(&mu_);
  last_message_ = absl::Now();
  if (response.reset() || !synced_once_) {
    if (response.reset()) spdlog::warn("invalidation log position {} is no longer retained; cache cleared", applied_);
    cache_->Clear(response.latest_sequence());
    applied_ = response.latest_sequence();
    synced_once_ = true;
  }
  for (const crm::auth::v1::Invalidation& entry : response.invalidations()) {
    if (entry.sequence() <= applied_) continue;  // Already applied before a reconnect.
    uint64_t app_id = 0;
    if (entry.sequence() != applied_ + 1 || !absl::SimpleAtoi(entry.app_id(), &app_id)) {
      spdlog::warn("invalidation log gap or bad entry after sequence {} (got {}); cache cleared", applied_,
                   entry.sequence());
      cache_->Clear(entry.sequence());
    } else {
      cache_->Invalidate(app_id, entry.sequence());
    }
    applied_ = entry.sequence();
  }
  latest_ = std::max(latest_, response.latest_sequence());
  latest_ = std::max(latest_, applied_);
  SetState(applied_ >= latest_ ? crm::data::v1::WATCH_STATE_CURRENT : crm::data::v1::WATCH_STATE_BEHIND,
           "applied the auth service's log");
}

void InvalidationWatcher::RunWatchdog() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.heartbeat_timeout / 2)) {
    absl::Duration silence = absl::Now() - last_message_;
    if (silence >= options_.heartbeat_timeout && state_ == crm::data::v1::WATCH_STATE_CURRENT) {
      SetState(crm::data::v1::WATCH_STATE_BEHIND, "no heartbeat within the timeout");
    }
    if (active_context_ != nullptr && silence >= 2 * options_.heartbeat_timeout) {
      spdlog::warn("invalidation stream silent for {}; reconnecting", absl::FormatDuration(silence));
      active_context_->TryCancel();
      last_message_ = absl::Now();  // Cancel once per silent period.
    }
  }
}

void InvalidationWatcher::SetState(WatchState state, absl::string_view reason) {
  if (state == state_) return;
  if (state == crm::data::v1::WATCH_STATE_CURRENT) {
    spdlog::info("invalidation stream current at sequence {}; token cache in use", applied_);
  } else {
    spdlog::warn("invalidation stream {} at sequence {} ({}); checking every token live",
                 crm::data::v1::WatchState_Name(state), applied_, reason);
  }
  state_ = state;
}

absl::Time InvalidationWatcher::LastMessageTime() {
  absl::MutexLock lock(&mu_);
  return last_message_;
}

}  // namespace crm::data
