// TokenService.WatchInvalidations on gRPC's callback API, so an open stream
// occupies no thread. The InvalidationTailer feeds the streams: after each
// of its reads, every stream sends the window entries after its position,
// or a heartbeat once its last message is almost a heartbeat interval old.
// A stream behind the window, or one that requests a position this instance
// has not read yet, reads the log from the database on a small worker pool.
//
// Heartbeats claim that the log has nothing newer, so a stream sends one only
// while the tailer's last read succeeded within the heartbeat interval. When
// the database cannot be reached the streams stay open but go silent, so
// subscribers stop trusting their caches. Entries flow again when the
// tailer recovers.
// TODO: end streams with UNAVAILABLE after a long outage of this instance's
// reads, so subscribers move to a healthy instance before their own timeout.
#ifndef CRM_SERVICES_AUTH_INVALIDATION_STREAM_H_
#define CRM_SERVICES_AUTH_INVALIDATION_STREAM_H_

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/worker_pool.h"
#include "crm/auth/v1/token_service.grpc.pb.h"
#include "services/auth/auth_store.h"
#include "services/auth/invalidation_tailer.h"

namespace crm::auth {

class InvalidationStreams {
 public:
  // `store` and `tailer` must outlive this object. Streams send a heartbeat
  // at least every `heartbeat_interval`, which must be longer than the
  // tailer's poll interval.
  InvalidationStreams(AuthStore* store, InvalidationTailer* tailer, absl::Duration heartbeat_interval);
  // Waits for queued database reads. Call after the server has stopped,
  // when no stream is open.
  ~InvalidationStreams();

  InvalidationStreams(const InvalidationStreams&) = delete;
  InvalidationStreams& operator=(const InvalidationStreams&) = delete;

  // Opens a stream for a WatchInvalidations call. Ends it at once with
  // INVALID_ARGUMENT when from_sequence is negative, and with UNAVAILABLE
  // while the tailer cannot read the log or after Shutdown().
  grpc::ServerWriteReactor<v1::WatchInvalidationsResponse>* Open(grpc::CallbackServerContext* context,
                                                                 const v1::WatchInvalidationsRequest& request);

  // Lets every open stream send what is due. The tailer calls it after each
  // read.
  void SendDue();

  // Returns the number of open WatchInvalidations streams.
  size_t Count();

  // Ends every open stream with UNAVAILABLE and every later one at once, so
  // that the server's shutdown does not wait for them.
  void Shutdown();

 private:
  class Stream;

  void Remove(Stream* stream);

  AuthStore* const store_;
  InvalidationTailer* const tailer_;
  const absl::Duration heartbeat_interval_;
  // Reads of the log for streams that are behind the window. The queue is
  // bounded, so a burst of reconnecting subscribers waits for later tailer
  // reads instead of queueing without limit.
  WorkerPool database_reads_;

  absl::Mutex mu_;
  absl::flat_hash_set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_INVALIDATION_STREAM_H_
