// Enforcement of the rate limits on a CRM server. Every instance takes
// blocks of calls per app from the auth server's shared counters
// (TokenService.AcquireQuota) and admits calls from its block without a
// round trip. It requests a new block when the block is used up or its
// window has ended. Calls for the same app that arrive while a request is
// in flight wait for that one request instead of sending their own.
//
// An app's first block is one call. The next block doubles while blocks are
// used up within their window, up to the auth server's block size. After a
// block expires unused, the size drops back to one, so a quiet app takes
// few calls that it never makes.
//
// The shared counters never grant more than a limit, so every instance
// together admits at most the limit per window and per day. A block that
// an instance holds but does not use counts as used until its window ends,
// so the others can be rejected up to (instances x block) calls early.
//
// A call beyond a limit gets RESOURCE_EXHAUSTED with ErrorInfo
// RATE_LIMITED or DAILY_LIMIT_EXCEEDED (metadata limit and window) and a
// google.rpc.RetryInfo until the window or the UTC day ends. When the
// auth server cannot be reached the call fails closed with UNAVAILABLE
// (AUTH_UNAVAILABLE), like a token check that cannot be made.
#ifndef CRM_SERVICES_CRM_RATE_LIMITER_H_
#define CRM_SERVICES_CRM_RATE_LIMITER_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rate_limit.h"
#include "crm/auth/v1/token_service.grpc.pb.h"

namespace crm::data {

// Source of quota blocks; the auth server outside unit tests.
class QuotaSource {
 public:
  using Callback = std::function<void(absl::StatusOr<QuotaBlock>)>;
  virtual ~QuotaSource() = default;
  // Requests a block of at most `max_calls` for the app and calls `done`
  // exactly once, possibly on another thread.
  virtual void Acquire(uint64_t organization_id, uint64_t app_id, int64_t max_calls, Callback done) = 0;
};

// Calls TokenService.AcquireQuota without blocking the calling thread.
class RemoteQuotaSource : public QuotaSource {
 public:
  // Each request gets `timeout` as its deadline.
  RemoteQuotaSource(std::shared_ptr<grpc::Channel> channel, absl::Duration timeout);
  void Acquire(uint64_t organization_id, uint64_t app_id, int64_t max_calls, Callback done) override;

 private:
  std::unique_ptr<crm::auth::v1::TokenService::Stub> stub_;
  const absl::Duration timeout_;
};

class RateLimiter {
 public:
  using Clock = std::function<absl::Time()>;
  using Callback = std::function<void(absl::Status)>;

  // `source` must outlive the limiter. `clock` measures how long a block
  // lives; tests inject a fake one.
  explicit RateLimiter(QuotaSource* source, Clock clock = absl::Now);

  // Admits one call of the app and calls `done` exactly once, possibly on
  // another thread: OK, RESOURCE_EXHAUSTED past a limit, or UNAVAILABLE
  // when no block can be had.
  void Admit(uint64_t organization_id, uint64_t app_id, Callback done);

  // Requests sent to the quota source so far, for tests and metrics.
  int64_t acquire_requests() const;

 private:
  struct AppState {
    uint64_t organization_id = 0;
    // Calls left in the block and the local time its window ends.
    int64_t remaining_calls = 0;
    absl::Time block_expire_time = absl::InfinitePast();
    bool request_in_flight = false;
    std::vector<Callback> waiting;
    // Calls to request in the next block (the auth server caps it).
    int64_t next_block_calls = 1;
  };

  // Sends one request for `app_id`; the caller has set request_in_flight.
  void Request(uint64_t organization_id, uint64_t app_id, int64_t max_calls);
  void OnBlock(uint64_t app_id, absl::Time requested_at, absl::StatusOr<QuotaBlock> block);
  // Drops states without a live block or waiting calls once the map grows.
  void DropIdleStates(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  QuotaSource* const source_;
  const Clock clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, AppState> apps_ ABSL_GUARDED_BY(mu_);
  int64_t acquire_requests_ ABSL_GUARDED_BY(mu_) = 0;
};

// The RESOURCE_EXHAUSTED status for a call that `block` did not cover, with
// its ErrorInfo and a RetryInfo of `retry_delay`.
absl::Status QuotaExceededError(const QuotaBlock& block, uint64_t organization_id, uint64_t app_id,
                                absl::Duration retry_delay);

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_RATE_LIMITER_H_
