#include "services/crm/token_usage.h"

#include <google/protobuf/util/time_util.h>

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace crm::data {

TokenUsageRecorder::TokenUsageRecorder(std::shared_ptr<grpc::Channel> auth_channel, absl::Duration flush_interval,
                                       std::function<absl::Time()> clock)
    : stub_(crm::auth::v1::TokenService::NewStub(std::move(auth_channel))),
      flush_interval_(flush_interval),
      clock_(std::move(clock)),
      flusher_(flush_interval, [this] { ReportPending(); }) {}

TokenUsageRecorder::~TokenUsageRecorder() {
  flusher_.Stop();
  if (absl::Status status = Flush(absl::Seconds(2)); !status.ok()) {
    spdlog::warn("token usage not reported at shutdown: {}", status.message());
  }
}

void TokenUsageRecorder::Start() { flusher_.Start(); }

void TokenUsageRecorder::Record(uint64_t token_id, absl::string_view peer_address) {
  if (token_id == 0) return;
  int64_t minute = absl::ToUnixSeconds(clock_()) / 60 * 60;
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(token_id);
  if (it == pending_.end()) {
    if (pending_.size() >= kMaxPendingTokens) {
      ++dropped_;
      return;
    }
    it = pending_.emplace(token_id, Use{}).first;
  }
  it->second.minute = std::max(it->second.minute, minute);
  // Copies only when the client moved, which is rare.
  if (it->second.peer_address != peer_address) it->second.peer_address.assign(peer_address.data(), peer_address.size());
}

absl::Status TokenUsageRecorder::Flush(absl::Duration timeout) {
  absl::MutexLock flush_lock(&flush_mu_);
  absl::flat_hash_map<uint64_t, Use> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(pending_);
  }
  if (batch.empty()) return absl::OkStatus();

  crm::auth::v1::ReportTokenUsageRequest request;
  for (const auto& [token_id, use] : batch) {
    crm::auth::v1::TokenUsage* usage = request.add_usages();
    usage->set_token_id(absl::StrCat(token_id));
    *usage->mutable_last_used_time() = google::protobuf::util::TimeUtil::SecondsToTimestamp(use.minute);
    usage->set_peer_address(use.peer_address);
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  crm::auth::v1::ReportTokenUsageResponse response;
  grpc::Status status = stub_->ReportTokenUsage(&context, request, &response);
  if (status.ok()) return absl::OkStatus();

  // Puts the batch back; a newer use recorded meanwhile wins.
  absl::MutexLock lock(&mu_);
  for (auto& [token_id, use] : batch) {
    auto [it, inserted] = pending_.try_emplace(token_id, std::move(use));
    if (!inserted && it->second.minute < use.minute) it->second = std::move(use);
  }
  return absl::UnavailableError(absl::StrCat("reporting the use of ", batch.size(),
                                             " tokens to the auth service failed: ", status.error_message()));
}

int64_t TokenUsageRecorder::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

void TokenUsageRecorder::ReportPending() {
  if (absl::Status status = Flush(); !status.ok()) {
    spdlog::warn("{}; retrying in {}", status.message(), absl::FormatDuration(flush_interval_));
  }
  int64_t drops = dropped();
  if (drops != logged_drops_) {
    spdlog::warn("{} token uses dropped since start-up because {} tokens were pending", drops, kMaxPendingTokens);
    logged_drops_ = drops;
  }
}

}  // namespace crm::data
