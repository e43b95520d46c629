// A running CRM server: CrmService with health and reflection, its worker
// pool and its connection to the auth service. main() and the integration
// tests start it the same way.
#ifndef CRM_SERVICES_CRM_CRM_SERVER_H_
#define CRM_SERVICES_CRM_CRM_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/credential_limiter.h"
#include "common/health_monitor.h"
#include "common/metrics.h"
#include "common/mysql_pool.h"
#include "common/periodic_task.h"
#include "common/worker_pool.h"
#include "crm/data/v1/status.grpc.pb.h"
#include "services/crm/api_call_log.h"
#include "services/crm/caching_token_checker.h"
#include "services/crm/crm_service.h"
#include "services/crm/invalidation_watcher.h"
#include "services/crm/rate_limiter.h"
#include "services/crm/token_cache.h"
#include "services/crm/record_store.h"
#include "services/crm/token_checker.h"
#include "services/crm/token_usage.h"

namespace crm::data {

struct CrmServerOptions {
  // Address to listen on, such as "127.0.0.1:50052"; port 0 picks a free one.
  std::string listen_address = "127.0.0.1:50052";
  // gRPC target of the auth server's TokenService, such as
  // "127.0.0.1:50051", "ipv4:127.0.0.1:50051,127.0.0.1:50061" (several
  // instances) or "dns:///auth.crm.svc:50051" (every address the name
  // resolves to). Calls are spread round robin over the instances.
  std::string auth_target = "127.0.0.1:50053";
  // Credentials of the channel to the auth server (common/tls.h) and the
  // name to verify its certificate against instead of the target's host;
  // null means plaintext.
  std::shared_ptr<grpc::ChannelCredentials> auth_credentials;
  std::string auth_tls_server_name;
  // Credentials of the listener; null means plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Limits on failed token checks per client address and token prefix.
  CredentialLimiterOptions credential_limiter;
  int worker_threads = 16;
  size_t max_queued_requests = 1024;
  // Deadline given to calls that arrive without one, and upper bound of
  // every call's deadline.
  absl::Duration max_call_duration = absl::Seconds(30);
  // Largest request message accepted; a larger one fails with
  // RESOURCE_EXHAUSTED before it is read.
  int max_receive_message_bytes = 4 * 1024 * 1024;
  // Cap on one remote token check, below the caller's own deadline.
  absl::Duration token_check_timeout = absl::Seconds(2);
  std::string page_token_key;
  // When false, every call checks its token with the auth service; for
  // benchmarks that measure what the cache saves.
  bool token_cache_enabled = true;
  TokenCacheOptions token_cache;
  InvalidationWatcherOptions invalidation_watcher;
  // How often token uses are reported to the auth service; zero or less
  // reports only on FlushTokenUsage() and at shutdown.
  absl::Duration token_usage_flush_interval = absl::Minutes(1);
  // Whether calls made with an app's token are recorded in the API call
  // log (api_call_log.h). False for benchmarks, or where the log is not wanted.
  bool api_call_log_enabled = true;
  // How often recorded calls are sent to the auth service; zero or less
  // sends them only on FlushApiCalls() and at shutdown.
  absl::Duration api_call_log_flush_interval = absl::Seconds(1);
  // Metadata header that carries the client address in X-Forwarded-For
  // form, such as "x-forwarded-for"; empty uses the gRPC peer only. Read
  // only from peers inside trusted_proxy_cidrs, and both must be set
  // together.
  std::string client_ip_header;
  // CIDR ranges of the proxies whose client_ip_header is believed.
  std::vector<std::string> trusted_proxy_cidrs;
  // Host and port of the Prometheus /metrics endpoint; port 0 picks a free
  // one and a negative port serves no metrics.
  std::string metrics_host = "127.0.0.1";
  int metrics_port = -1;
  // Enforce the organizations' rate limits with blocks of calls from the
  // auth server; false admits every call (for benchmarks).
  bool rate_limits_enabled = true;
  // Cap on one AcquireQuota request to the auth server.
  absl::Duration quota_request_timeout = absl::Seconds(2);
  // How long a create's request_id is kept, so that a retry within this
  // time returns the first record. Must be positive.
  absl::Duration create_request_retention = absl::Hours(24);
  // Time between purges of older request ids; zero or less purges only on
  // PurgeCreateRequests().
  absl::Duration create_request_purge_interval = absl::Minutes(1);
};

// Serves crm.data.v1.CrmStatusService from the cache and watcher state.
class CrmStatusServiceImpl final : public crm::data::v1::CrmStatusService::Service {
 public:
  // `watcher` and `checker` are null when the cache is disabled.
  CrmStatusServiceImpl(TokenCache* cache, InvalidationWatcher* watcher, CachingTokenChecker* checker)
      : cache_(cache), watcher_(watcher), checker_(checker) {}

  grpc::Status GetServerStatus(grpc::ServerContext* context, const crm::data::v1::GetServerStatusRequest* request,
                               crm::data::v1::GetServerStatusResponse* response) override;

 private:
  TokenCache* const cache_;
  InvalidationWatcher* const watcher_;
  CachingTokenChecker* const checker_;
};

class CrmServer {
 public:
  static absl::StatusOr<std::unique_ptr<CrmServer>> Start(const CrmServerOptions& options, MysqlPool* pool);

  ~CrmServer();

  int port() const { return port_; }
  // The bound metrics port, or -1 when metrics are off.
  int metrics_port() const { return metrics_http_ ? metrics_http_->port() : -1; }
  grpc::Server& server() { return *server_; }

  // Tokens rejected by the format check, remote token checks started and
  // checks the failed-lookup limiter rejected, since start-up.
  int64_t malformed_tokens() const { return service_->malformed_tokens(); }
  int64_t remote_token_checks() const { return remote_checker_->remote_checks(); }
  int64_t refused_token_checks() const { return limiter_->refused(); }

  // Stops accepting calls and waits up to `grace` for calls in flight.
  void Shutdown(absl::Duration grace = absl::Seconds(5));

  // Reports the pending token uses to the auth service now; after
  // Shutdown() they have already been sent.
  absl::Status FlushTokenUsage() { return usage_ == nullptr ? absl::OkStatus() : usage_->Flush(); }

  // Sends the recorded API calls to the auth service now; after Shutdown()
  // they have already been sent.
  absl::Status FlushApiCalls() { return call_log_ == nullptr ? absl::OkStatus() : call_log_->Flush(); }

  // Deletes request ids older than create_request_retention now, in
  // batches of 1,000 and at most 20,000, and returns how many it deleted.
  absl::StatusOr<int> PurgeCreateRequests();

 private:
  CrmServer() = default;

  // Before server_, so that they outlive the calls the interceptor records.
  GrpcServerMetrics grpc_metrics_;
  MetricsRegistry metrics_;
  std::unique_ptr<RecordStore> store_;
  std::unique_ptr<RemoteTokenChecker> remote_checker_;
  std::unique_ptr<CredentialLimiter> limiter_;
  std::unique_ptr<TokenCache> token_cache_;
  std::unique_ptr<InvalidationWatcher> watcher_;
  std::unique_ptr<CachingTokenChecker> caching_checker_;
  std::unique_ptr<CrmStatusServiceImpl> status_service_;
  std::unique_ptr<TokenUsageRecorder> usage_;
  std::unique_ptr<ApiCallRecorder> call_log_;
  std::unique_ptr<WorkerPool> workers_;
  std::unique_ptr<QuotaSource> quota_source_;
  std::unique_ptr<RateLimiter> rate_limiter_;
  std::unique_ptr<CrmServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HealthMonitor> health_monitor_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  absl::Duration create_request_retention_;
  absl::Mutex create_request_purge_mu_;
  std::unique_ptr<PeriodicTask> create_request_purge_;
  int port_ = 0;
  bool shut_down_ = false;

  void AddMetrics(const CrmServerOptions& options, MysqlPool* pool);
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_CRM_SERVER_H_
