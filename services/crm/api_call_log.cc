#include "services/crm/api_call_log.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace crm::data {

// Time the destructor gives the last reports. With the 2 seconds of the
// token usage report it stays within the 5 seconds that a stopping
// crm_server has after its grace period (kShutdownHardStopMargin).
constexpr absl::Duration kDrainTimeout = absl::Seconds(2);

ApiCallRecorder::ApiCallRecorder(std::shared_ptr<grpc::Channel> auth_channel, absl::Duration flush_interval)
    : stub_(crm::auth::v1::TokenService::NewStub(std::move(auth_channel))),
      flush_interval_(flush_interval),
      flusher_(flush_interval, [this] { ReportPending(); }) {}

ApiCallRecorder::~ApiCallRecorder() {
  flusher_.Stop();
  size_t left = buffered();
  if (absl::Status status = Flush(kDrainTimeout); !status.ok()) {
    spdlog::warn("API call log: {} of {} buffered calls not reported at shutdown: {}", buffered(), left,
                 status.message());
  } else if (left > 0) {
    spdlog::info("API call log: reported the last {} buffered calls at shutdown", left);
  }
}

void ApiCallRecorder::Start() { flusher_.Start(); }

void ApiCallRecorder::Record(RecordedApiCall call) {
  size_t size = 0;
  {
    absl::MutexLock lock(&mu_);
    if (pending_.size() >= kMaxBufferedCalls) {
      ++dropped_;
      return;
    }
    pending_.push_back(std::move(call));
    size = pending_.size();
  }
  if (size == kFlushThreshold) flusher_.Wake();
}

absl::Status ApiCallRecorder::Flush(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock flush_lock(&flush_mu_);
  std::vector<RecordedApiCall> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(pending_);
  }

  size_t sent = 0;
  while (sent < batch.size()) {
    size_t end = std::min(batch.size(), sent + kMaxCallsPerReport);
    std::vector<RecordedApiCall> report(std::make_move_iterator(batch.begin() + sent),
                                        std::make_move_iterator(batch.begin() + end));
    grpc::Status status = Send(report, deadline);
    if (!status.ok()) {
      // Puts the unsent calls back before the ones recorded meanwhile.
      // Beyond the bound the oldest are dropped, so the newest survive.
      std::move(report.begin(), report.end(), batch.begin() + sent);
      size_t unsent = batch.size() - sent;
      absl::MutexLock lock(&mu_);
      size_t keep = std::min(unsent, kMaxBufferedCalls - std::min(kMaxBufferedCalls, pending_.size()));
      dropped_ += static_cast<int64_t>(unsent - keep);
      pending_.insert(pending_.begin(), std::make_move_iterator(batch.end() - keep),
                      std::make_move_iterator(batch.end()));
      return absl::UnavailableError(absl::StrCat("reporting ", unsent, " API calls to the auth service failed: ",
                                                 status.error_message()));
    }
    sent = end;
    absl::MutexLock lock(&mu_);
    reported_ += static_cast<int64_t>(report.size());
  }
  return absl::OkStatus();
}

grpc::Status ApiCallRecorder::Send(const std::vector<RecordedApiCall>& calls, absl::Time deadline) {
  using google::protobuf::util::TimeUtil;
  crm::auth::v1::ReportApiCallsRequest request;
  request.mutable_calls()->Reserve(static_cast<int>(calls.size()));
  for (const RecordedApiCall& call : calls) {
    crm::auth::v1::ApiCallRecord* record = request.add_calls();
    record->set_organization_id(absl::StrCat(call.organization_id));
    record->set_app_id(absl::StrCat(call.app_id));
    record->set_method(std::string(call.method));
    record->set_code(call.code);
    *record->mutable_call_time() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(call.call_time));
    *record->mutable_latency() = TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(call.latency));
    record->set_peer_address(call.peer_address);
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(deadline));
  crm::auth::v1::ReportApiCallsResponse response;
  return stub_->ReportApiCalls(&context, request, &response);
}

int64_t ApiCallRecorder::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

int64_t ApiCallRecorder::reported() const {
  absl::MutexLock lock(&mu_);
  return reported_;
}

size_t ApiCallRecorder::buffered() const {
  absl::MutexLock lock(&mu_);
  return pending_.size();
}

void ApiCallRecorder::ReportPending() {
  if (absl::Status status = Flush(); !status.ok()) {
    spdlog::warn("API call log: {}; retrying in {}", status.message(), absl::FormatDuration(flush_interval_));
  }
  int64_t drops = dropped();
  if (drops != logged_drops_) {
    spdlog::warn("API call log: {} calls dropped since start-up because {} calls were buffered", drops,
                 kMaxBufferedCalls);
    logged_drops_ = drops;
  }
}

}  // namespace crm::data
