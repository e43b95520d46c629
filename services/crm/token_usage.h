// Reports when and from where this CRM server accepted each token, so the
// auth service can show an app's last_used_time and last_used_peer.
//
// Record() runs on every authenticated call, cached or not, and only
// updates an in-memory map under a mutex: the request path never waits for
// the network or the database. A background thread sends the map to
// TokenService.ReportTokenUsage every flush interval (a minute by default)
// and starts a new one. Times are kept to the minute, so a token used many
// times in a minute costs one map entry and one row update per report. A
// failed report is merged back and retried at the next interval; uses
// recorded while the map holds kMaxPendingTokens tokens are dropped and
// counted.
#ifndef CRM_SERVICES_CRM_TOKEN_USAGE_H_
#define CRM_SERVICES_CRM_TOKEN_USAGE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/periodic_task.h"
#include "crm/auth/v1/token_service.grpc.pb.h"

namespace crm::data {

class TokenUsageRecorder {
 public:
  // Tokens whose uses one report can hold; more are dropped until the next
  // report.
  static constexpr size_t kMaxPendingTokens = 10000;

  // `flush_interval` of zero or less sends reports only through Flush().
  TokenUsageRecorder(std::shared_ptr<grpc::Channel> auth_channel, absl::Duration flush_interval,
                     std::function<absl::Time()> clock = absl::Now);
  // Stops the thread and sends what is pending, waiting at most 2 seconds.
  ~TokenUsageRecorder();

  TokenUsageRecorder(const TokenUsageRecorder&) = delete;
  TokenUsageRecorder& operator=(const TokenUsageRecorder&) = delete;

  void Start();

  // Notes that `token_id` was accepted now from the client at
  // `peer_address`, an IP address without port. Ignores token id 0.
  void Record(uint64_t token_id, absl::string_view peer_address);

  // Sends the pending uses now; on failure keeps them for the next report.
  absl::Status Flush(absl::Duration timeout = absl::Seconds(10));

  int64_t dropped() const;

 private:
  struct Use {
    int64_t minute = 0;  // Unix seconds of the minute's start.
    std::string peer_address;
  };

  // The flush thread's task: reports, and logs failures and new drops.
  void ReportPending();

  std::unique_ptr<crm::auth::v1::TokenService::Stub> stub_;
  const absl::Duration flush_interval_;
  const std::function<absl::Time()> clock_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Use> pending_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  // Drops already logged; read and written by the flush thread only.
  int64_t logged_drops_ = 0;
  // Serializes reports, so a retry never overtakes a newer report.
  absl::Mutex flush_mu_;
  // Last, so that its thread stops before the members it uses go.
  PeriodicTask flusher_;
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_TOKEN_USAGE_H_
