// The auth service's gRPC layer: adapters for crm.auth.v1.PrivateAppService
// and crm.auth.v1.TokenService over AuthStore, and AuthServer, which builds
// a server with both plus the standard health and reflection services.
//
// Each call authenticates first (PrivateAppService takes the admin key from
// `authorization: Bearer <key>` metadata; TokenService needs none), then runs
// the core and writes one log line: method, status code, latency, the
// organization and app ids when known, and the peer. Tokens and keys are
// never logged. AuthServer reads no flags, so tests start it in-process.
//
// PrivateAppService and TokenService listen on separate ports: the public
// listener serves admin clients, the internal one the CRM servers, so that
// the internal one can require client certificates (mutual TLS) and network
// rules can admit only CRM servers to it. Both also serve health and
// reflection.
//
// Failed admin key and token lookups are rate limited (credential_limiter.h)
// and all fail with one UNAUTHENTICATED message per credential kind.
//
// WatchInvalidations runs on the callback API (invalidation_stream.h) while
// the other methods stay synchronous. Each AuthServer tails the shared
// invalidation log itself (invalidation_tailer.h), so any instance serves
// any subscriber.
#ifndef CRM_SERVICES_AUTH_AUTH_SERVER_H_
#define CRM_SERVICES_AUTH_AUTH_SERVER_H_

#include <grpcpp/server.h>
#include <grpcpp/server_context.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/credential_limiter.h"
#include "common/health_monitor.h"
#include "common/mysql_pool.h"
#include "common/metrics.h"
#include "common/secrets.h"
#include "crm/auth/v1/private_app.grpc.pb.h"
#include "crm/auth/v1/token_service.grpc.pb.h"
#include "common/periodic_task.h"
#include "services/auth/api_call_store.h"
#include "services/auth/auth_store.h"
#include "services/auth/invalidation_stream.h"
#include "services/auth/invalidation_tailer.h"

namespace crm::auth {

// Largest request the server accepts: room for a 256 KiB logo and the rest
// of an app.
inline constexpr int kMaxReceiveMessageBytes = 1024 * 1024;

class PrivateAppServiceImpl final : public v1::PrivateAppService::Service {
 public:
  // `store`, `limiter` and `api_calls` must outlive the service.
  PrivateAppServiceImpl(AuthStore* store, CredentialLimiter* limiter, ApiCallStore* api_calls)
      : store_(store), limiter_(limiter), api_calls_(api_calls) {}

  grpc::Status CreatePrivateApp(grpc::ServerContext* context, const v1::CreatePrivateAppRequest* request,
                                v1::CreatePrivateAppResponse* response) override;
  grpc::Status GetPrivateApp(grpc::ServerContext* context, const v1::GetPrivateAppRequest* request,
                             v1::GetPrivateAppResponse* response) override;
  grpc::Status ListPrivateApps(grpc::ServerContext* context, const v1::ListPrivateAppsRequest* request,
                               v1::ListPrivateAppsResponse* response) override;
  grpc::Status UpdatePrivateApp(grpc::ServerContext* context, const v1::UpdatePrivateAppRequest* request,
                                v1::UpdatePrivateAppResponse* response) override;
  grpc::Status DeletePrivateApp(grpc::ServerContext* context, const v1::DeletePrivateAppRequest* request,
                                v1::DeletePrivateAppResponse* response) override;
  grpc::Status GetAccessToken(grpc::ServerContext* context, const v1::GetAccessTokenRequest* request,
                              v1::GetAccessTokenResponse* response) override;
  grpc::Status RotateAccessToken(grpc::ServerContext* context, const v1::RotateAccessTokenRequest* request,
                                 v1::RotateAccessTokenResponse* response) override;
  grpc::Status EndAccessTokenOverlap(grpc::ServerContext* context, const v1::EndAccessTokenOverlapRequest* request,
                                     v1::EndAccessTokenOverlapResponse* response) override;
  grpc::Status CancelAccessTokenRotation(grpc::ServerContext* context,
                                         const v1::CancelAccessTokenRotationRequest* request,
                                         v1::CancelAccessTokenRotationResponse* response) override;
  grpc::Status ListAuditEvents(grpc::ServerContext* context, const v1::ListAuditEventsRequest* request,
                               v1::ListAuditEventsResponse* response) override;
  grpc::Status GetOrganizationPolicy(grpc::ServerContext* context, const v1::GetOrganizationPolicyRequest* request,
                                     v1::GetOrganizationPolicyResponse* response) override;
  grpc::Status UpdateOrganizationPolicy(grpc::ServerContext* context,
                                        const v1::UpdateOrganizationPolicyRequest* request,
                                        v1::UpdateOrganizationPolicyResponse* response) override;
  grpc::Status ListApiCalls(grpc::ServerContext* context, const v1::ListApiCallsRequest* request,
                            v1::ListApiCallsResponse* response) override;
  grpc::Status GetApiUsage(grpc::ServerContext* context, const v1::GetApiUsageRequest* request,
                           v1::GetApiUsageResponse* response) override;

 private:
  // Returns the organization of the call's admin key, or the one
  // UNAUTHENTICATED error that every kind of bad key gets.
  absl::StatusOr<AdminCaller> AuthenticateAdmin(const grpc::ServerContext& context);

  AuthStore* const store_;
  CredentialLimiter* const limiter_;
  ApiCallStore* const api_calls_;
};

class TokenServiceImpl final
    : public v1::TokenService::WithCallbackMethod_WatchInvalidations<v1::TokenService::Service> {
 public:
  // `store`, `api_calls`, `streams` and `limiter` must outlive the service.
  TokenServiceImpl(AuthStore* store, ApiCallStore* api_calls, InvalidationStreams* streams,
                   CredentialLimiter* limiter)
      : store_(store), api_calls_(api_calls), streams_(streams), limiter_(limiter) {}

  grpc::Status CheckToken(grpc::ServerContext* context, const v1::CheckTokenRequest* request,
                          v1::CheckTokenResponse* response) override;
  grpc::Status ReportTokenUsage(grpc::ServerContext* context, const v1::ReportTokenUsageRequest* request,
                                v1::ReportTokenUsageResponse* response) override;
  grpc::Status ReportApiCalls(grpc::ServerContext* context, const v1::ReportApiCallsRequest* request,
                              v1::ReportApiCallsResponse* response) override;
  grpc::Status AcquireQuota(grpc::ServerContext* context, const v1::AcquireQuotaRequest* request,
                            v1::AcquireQuotaResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchInvalidationsResponse>* WatchInvalidations(
      grpc::CallbackServerContext* context, const v1::WatchInvalidationsRequest* request) override;

 private:
  AuthStore* const store_;
  ApiCallStore* const api_calls_;
  InvalidationStreams* const streams_;
  CredentialLimiter* const limiter_;
};

struct AuthServerOptions {
  // host:port to listen on, such as "127.0.0.1:50051"; port 0 picks a free
  // port, which AuthServer::port() then reports.
  std::string listen_address = "127.0.0.1:0";
  // host:port of the internal listener (TokenService); port 0 picks a free
  // port, which AuthServer::internal_port() then reports.
  std::string internal_listen_address = "127.0.0.1:0";
  // Credentials of the public and the internal listener (common/tls.h);
  // null means plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::shared_ptr<grpc::ServerCredentials> internal_credentials;
  // Limits on failed admin key and token lookups.
  CredentialLimiterOptions credential_limiter;
  // Sources of randomness and time for tokens and timestamps; tests may
  // inject deterministic ones. Outside tests keep the defaults.
  RandomSource random = RandomBytes;
  Clock clock = absl::Now;

  // Time between reads of the invalidation log. Changes made through this
  // instance are read at once; other instances' within this interval.
  absl::Duration invalidation_poll_interval = absl::Milliseconds(20);
  // WatchInvalidations streams send a message at least this often. Must be
  // longer than the poll interval and well under the subscribers' timeout
  // (3 s on the CRM server).
  absl::Duration invalidation_heartbeat_interval = absl::Seconds(1);
  // Log entries older than this are purged; a subscriber that resumes from
  // a purged position gets reset = true.
  absl::Duration invalidation_retention = absl::Hours(24);
  // Time between purge passes.
  absl::Duration invalidation_purge_interval = absl::Minutes(1);
  // Newest log entries kept in memory; subscribers further behind are
  // served from the database.
  size_t invalidation_window_entries = 10000;
  // API call log rows older than this (by call time) are purged.
  absl::Duration api_call_retention = absl::Hours(30 * 24);
  // Time between API call log purge passes; zero or less runs none, so
  // only PurgeApiCalls() purges.
  absl::Duration api_call_purge_interval = absl::Minutes(1);
  // Host and port of the Prometheus /metrics endpoint; port 0 picks a free
  // one and a negative port serves no metrics.
  std::string metrics_host = "127.0.0.1";
  int metrics_port = -1;
  // Rate limits of organizations whose policy leaves them 0.
  RateLimitDefaults rate_limit_defaults;
};

// A running auth server. Stops on Shutdown() or destruction.
class AuthServer {
 public:
  // Builds and starts both listeners. `pool` must outlive the server. Fails with INVALID_ARGUMENT for invalid
  // invalidation options and with UNAVAILABLE when the address cannot be
  // bound.
  static absl::StatusOr<std::unique_ptr<AuthServer>> Start(const AuthServerOptions& options, MysqlPool* pool,
                                                           const Secrets& secrets);

  ~AuthServer();
  AuthServer(const AuthServer&) = delete;
  AuthServer& operator=(const AuthServer&) = delete;

  // The bound TCP ports of the public and the internal listener.
  int port() const { return port_; }
  // The bound metrics port, or -1 when metrics are off.
  int metrics_port() const { return metrics_http_ ? metrics_http_->port() : -1; }
  int internal_port() const { return internal_port_; }
  grpc::Server& server() { return *server_; }

  // Lookups the credential limiter has rejected, and credential lookups
  // that reached the database, since start-up.
  int64_t refused_lookups() const { return limiter_.refused(); }
  int64_t credential_lookups() const { return store_.credential_lookups(); }

  // Marks health NOT_SERVING, ends every WatchInvalidations stream with
  // UNAVAILABLE, stops accepting calls and waits up to `grace` for calls in
  // flight before cancelling them. Safe to call more than once.
  void Shutdown(absl::Duration grace = absl::Seconds(5));

  // Purges the invalidation log now instead of at the next purge interval;
  // returns how many entries it deleted.
  absl::StatusOr<int> PurgeInvalidationLog() { return tailer_.PurgeNow(); }

  // Deletes the API call log rows older than the retention period now, in
  // batches of 1,000, and returns how many it deleted. Tests call it instead
  // of waiting for the purge interval.
  absl::StatusOr<int> PurgeApiCalls();

 private:
  AuthServer(MysqlPool* pool, const Secrets& secrets, const AuthServerOptions& options);

  // The interceptors of both listeners: a fresh list per grpc::ServerBuilder.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> NewInterceptorFactories();

  // Declared in dependency order: members are destroyed in reverse, so the
  // streams finish their database reads before the tailer and store go, and
  // the metrics outlive the calls their interceptor records.
  GrpcServerMetrics grpc_metrics_;
  MetricsRegistry metrics_;
  AuthStore store_;
  CredentialLimiter limiter_;
  ApiCallStore api_calls_;
  InvalidationTailer tailer_;
  InvalidationStreams streams_;
  PrivateAppServiceImpl private_apps_;
  TokenServiceImpl tokens_;
  const absl::Duration api_call_retention_;
  const Clock clock_;
  // Serializes purges, so PurgeApiCalls() and the purge thread do not
  // delete the same rows at once.
  absl::Mutex api_call_purge_mu_;
  PeriodicTask api_call_purge_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> internal_server_;
  std::unique_ptr<HealthMonitor> health_monitor_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  std::unique_ptr<HealthMonitor> internal_health_monitor_;
  int port_ = 0;
  int internal_port_ = 0;
  std::atomic<bool> shut_down_{false};
};

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_AUTH_SERVER_H_
