// Follows the auth service's invalidation log through
// TokenService.WatchInvalidations and applies each entry to the TokenCache.
//
// The cache may be used only while IsCurrent(): the stream is connected, a
// message arrived within the heartbeat timeout, and every entry up to the
// latest sequence the auth service reported has been applied. Otherwise
// callers check tokens live (fail closed). After a disconnect the watcher
// reconnects with exponential backoff and resumes from the last applied
// sequence, on whichever auth instance the channel picks.
#ifndef CRM_SERVICES_CRM_INVALIDATION_WATCHER_H_
#define CRM_SERVICES_CRM_INVALIDATION_WATCHER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "crm/auth/v1/token_service.grpc.pb.h"
#include "crm/data/v1/status.pb.h"
#include "services/crm/token_cache.h"

namespace crm::data {

struct InvalidationWatcherOptions {
  // Without a message for this long the stream counts as behind, and after
  // twice this long it is cancelled and reopened. The auth service sends
  // heartbeats well within it.
  absl::Duration heartbeat_timeout = absl::Seconds(3);
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
};

class InvalidationWatcher {
 public:
  InvalidationWatcher(std::shared_ptr<grpc::Channel> channel, TokenCache* cache,
                      InvalidationWatcherOptions options);
  // Stops the stream and joins the threads.
  ~InvalidationWatcher();

  InvalidationWatcher(const InvalidationWatcher&) = delete;
  InvalidationWatcher& operator=(const InvalidationWatcher&) = delete;

  void Start();

  bool IsCurrent();
  crm::data::v1::WatchState State();
  int64_t AppliedSequence();
  int64_t LatestSequence();
  // Time the last stream message arrived; InfinitePast before the first.
  absl::Time LastMessageTime();

 private:
  void Run();
  void RunWatchdog();
  // Opens one stream and reads it until it ends; returns whether any
  // message arrived, which resets the backoff.
  bool ReadStream();
  void Apply(const crm::auth::v1::WatchInvalidationsResponse& response);
  void SetState(crm::data::v1::WatchState state, absl::string_view reason);

  std::unique_ptr<crm::auth::v1::TokenService::Stub> stub_;
  TokenCache* const cache_;
  const InvalidationWatcherOptions options_;

  absl::Mutex mu_;
  crm::data::v1::WatchState state_ ABSL_GUARDED_BY(mu_) = crm::data::v1::WATCH_STATE_DISCONNECTED;
  int64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t latest_ ABSL_GUARDED_BY(mu_) = 0;
  bool synced_once_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_message_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  grpc::ClientContext* active_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread reader_;
  std::thread watchdog_;
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_INVALIDATION_WATCHER_H_
