#include "services/crm/rate_limiter.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/error_details.h"
#include "common/grpc_status.h"
#include "common/logging.h"

namespace crm::data {
namespace {

// Above this many app states, states with nothing left in them are dropped.
constexpr size_t kMaxAppStates = 10000;

// Upper bound of the block requested for an app. The auth server's block
// size, a twentieth of the smaller limit, is lower for any allowed limit.
constexpr int64_t kMaxRequestedCalls = int64_t{1} << 30;

struct PendingAcquire {
  grpc::ClientContext context;
  crm::auth::v1::AcquireQuotaRequest request;
  crm::auth::v1::AcquireQuotaResponse response;
  QuotaSource::Callback done;
};

absl::Duration FromProtoDuration(const google::protobuf::Duration& duration) {
  return absl::Microseconds(google::protobuf::util::TimeUtil::DurationToMicroseconds(duration));
}

QuotaBlock BlockFromResponse(const crm::auth::v1::AcquireQuotaResponse& response) {
  QuotaBlock block;
  block.granted_calls = response.granted_calls();
  block.window_remaining = FromProtoDuration(response.window_remaining());
  block.day_remaining = FromProtoDuration(response.day_remaining());
  block.burst_limit_per_10s = response.burst_limit_per_10s();
  block.daily_limit = response.daily_limit();
  switch (response.limit_reached()) {
    case crm::auth::v1::QUOTA_LIMIT_BURST:
      block.limit_reached = QuotaLimitKind::kBurst;
      break;
    case crm::auth::v1::QUOTA_LIMIT_DAILY:
      block.limit_reached = QuotaLimitKind::kDaily;
      break;
    default:
      block.limit_reached = QuotaLimitKind::kNone;
      break;
  }
  return block;
}

}  // namespace

RemoteQuotaSource::RemoteQuotaSource(std::shared_ptr<grpc::Channel> channel, absl::Duration timeout)
    : stub_(crm::auth::v1::TokenService::NewStub(std::move(channel))), timeout_(timeout) {}

void RemoteQuotaSource::Acquire(uint64_t organization_id, uint64_t app_id, int64_t max_calls, Callback done) {
  auto pending = std::make_shared<PendingAcquire>();
  pending->request.set_organization_id(absl::StrCat(organization_id));
  pending->request.set_app_id(absl::StrCat(app_id));
  pending->request.set_max_calls(max_calls);
  pending->done = std::move(done);
  pending->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  stub_->async()->AcquireQuota(
      &pending->context, &pending->request, &pending->response,
      [pending, organization_id, app_id](grpc::Status status) {
        if (status.ok()) {
          pending->done(BlockFromResponse(pending->response));
          return;
        }
        // The app was deleted after its token check was cached; the
        // invalidation that drops the check is on its way.
        if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          pending->done(WithErrorInfo(absl::UnauthenticatedError("the access token's app no longer exists"),
                                      ErrorReason::kTokenInvalid));
          return;
        }
        spdlog::warn("quota request failed for organization_id={} app_id={}: auth service returned {} ({})",
                     organization_id, app_id, StatusCodeName(status.error_code()), status.error_message());
        pending->done(WithErrorInfo(
            absl::UnavailableError("cannot check the rate limit: auth service unavailable; retry later"),
            ErrorReason::kAuthUnavailable));
      });
}

RateLimiter::RateLimiter(QuotaSource* source, Clock clock) : source_(source), clock_(std::move(clock)) {}

int64_t RateLimiter::acquire_requests() const {
  absl::MutexLock lock(&mu_);
  return acquire_requests_;
}

void RateLimiter::Admit(uint64_t organization_id, uint64_t app_id, Callback done) {
  absl::Time now = clock_();
  bool admitted = false;
  bool send = false;
  int64_t max_calls = 0;
  {
    absl::MutexLock lock(&mu_);
    if (apps_.size() >= kMaxAppStates) DropIdleStates(now);
    AppState& state = apps_[app_id];
    state.organization_id = organization_id;
    if (state.remaining_calls > 0 && now < state.block_expire_time) {
      --state.remaining_calls;
      admitted = true;
    } else {
      state.waiting.push_back(std::move(done));
      if (!state.request_in_flight) {
        if (now < state.block_expire_time) {
          // Used up within its window: the app needs bigger blocks.
          state.next_block_calls = std::min(state.next_block_calls * 2, kMaxRequestedCalls);
        } else if (state.remaining_calls > 0) {
          // Expired with calls left: those were granted but never made.
          state.next_block_calls = 1;
        }
        state.request_in_flight = true;
        ++acquire_requests_;
        send = true;
        max_calls = state.next_block_calls;
      }
    }
  }
  if (admitted) {
    done(absl::OkStatus());
  } else if (send) {
    Request(organization_id, app_id, max_calls);
  }
}

void RateLimiter::Request(uint64_t organization_id, uint64_t app_id, int64_t max_calls) {
  absl::Time requested_at = clock_();
  source_->Acquire(organization_id, app_id, max_calls,
                   [this, app_id, requested_at](absl::StatusOr<QuotaBlock> block) {
                     OnBlock(app_id, requested_at, std::move(block));
                   });
}

void RateLimiter::OnBlock(uint64_t app_id, absl::Time requested_at, absl::StatusOr<QuotaBlock> block) {
  std::vector<Callback> admitted;
  std::vector<Callback> rejected;
  absl::Status rejection;
  bool send_again = false;
  int64_t max_calls = 0;
  uint64_t organization_id = 0;
  {
    absl::MutexLock lock(&mu_);
    AppState& state = apps_[app_id];
    organization_id = state.organization_id;
    state.request_in_flight = false;
    std::vector<Callback> waiting = std::move(state.waiting);
    state.waiting.clear();

    if (!block.ok()) {
      rejected = std::move(waiting);
      rejection = block.status();
    } else {
      // The window ends window_remaining after the auth server read its
      // clock, which was after requested_at, so the block never outlives
      // its window on this server's clock.
      state.remaining_calls = block->granted_calls;
      // An empty grant leaves no block behind, so the next request neither
      // grows nor shrinks the block size.
      state.block_expire_time =
          block->granted_calls > 0 ? requested_at + block->window_remaining : absl::InfinitePast();
      size_t served = 0;
      while (served < waiting.size() && state.remaining_calls > 0) {
        --state.remaining_calls;
        admitted.push_back(std::move(waiting[served++]));
      }
      if (served < waiting.size()) {
        std::vector<Callback> rest(std::make_move_iterator(waiting.begin() + served),
                                   std::make_move_iterator(waiting.end()));
        if (block->limit_reached == QuotaLimitKind::kNone && block->granted_calls > 0) {
          // More calls waited than a whole block covers: ask again for them,
          // with a block big enough for all of them.
          state.next_block_calls =
              std::min(std::max(state.next_block_calls * 2, static_cast<int64_t>(rest.size())), kMaxRequestedCalls);
          max_calls = state.next_block_calls;
          state.waiting = std::move(rest);
          state.request_in_flight = true;
          ++acquire_requests_;
          send_again = true;
        } else {
          rejected = std::move(rest);
          QuotaBlock cut = *block;
          if (cut.limit_reached == QuotaLimitKind::kNone) cut.limit_reached = QuotaLimitKind::kBurst;
          absl::Duration retry_delay =
              cut.limit_reached == QuotaLimitKind::kDaily ? cut.day_remaining : cut.window_remaining;
          rejection = QuotaExceededError(cut, organization_id, app_id, retry_delay);
        }
      }
    }
  }
  for (Callback& done : admitted) done(absl::OkStatus());
  for (Callback& done : rejected) done(rejection);
  if (send_again) Request(organization_id, app_id, max_calls);
}

void RateLimiter::DropIdleStates(absl::Time now) {
  for (auto it = apps_.begin(); it != apps_.end();) {
    const AppState& state = it->second;
    bool idle = !state.request_in_flight && state.waiting.empty() &&
                (state.remaining_calls == 0 || now >= state.block_expire_time);
    if (idle) {
      apps_.erase(it++);
    } else {
      ++it;
    }
  }
}

absl::Status QuotaExceededError(const QuotaBlock& block, uint64_t organization_id, uint64_t app_id,
                                absl::Duration retry_delay) {
  absl::Status status;
  if (block.limit_reached == QuotaLimitKind::kDaily) {
    status = WithErrorInfo(
        absl::ResourceExhaustedError(absl::StrCat("organization ", organization_id, " reached its daily limit of ",
                                                  block.daily_limit, " calls; retry after ",
                                                  absl::FormatDuration(absl::Trunc(retry_delay, absl::Seconds(1))),
                                                  " (midnight UTC)")),
        ErrorReason::kDailyLimitExceeded,
        {{"limit", absl::StrCat(block.daily_limit)},
         {"window", "1d"},
         {"organization_id", absl::StrCat(organization_id)}});
  } else {
    status = WithErrorInfo(
        absl::ResourceExhaustedError(absl::StrCat("app ", app_id, " reached its burst limit of ",
                                                  block.burst_limit_per_10s, " calls per 10 seconds; retry after ",
                                                  absl::FormatDuration(absl::Ceil(retry_delay, absl::Milliseconds(1))))),
        ErrorReason::kRateLimited,
        {{"limit", absl::StrCat(block.burst_limit_per_10s)}, {"window", "10s"}, {"app_id", absl::StrCat(app_id)}});
  }
  return WithRetryInfo(std::move(status), retry_delay);
}

}  // namespace crm::data
