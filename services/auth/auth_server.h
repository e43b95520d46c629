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

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/health_monitor.h"
#include "common/mysql_pool.h"
#include "common/metrics.h"
#include "common/secrets.h"
#include "crm/auth/v1/private_app.grpc.pb.h"
#include "crm/auth/v1/token_service.grpc.pb.h"
#include "services/auth/auth_store.h"
#include "services/auth/invalidation_stream.h"
#include "services/auth/invalidation_tailer.h"

namespace crm::auth {

// Largest request the server accepts: room for a 256 KiB logo and the rest
// of an app.
inline constexpr int kMaxReceiveMessageBytes = 1024 * 1024;

class PrivateAppServiceImpl final : public v1::PrivateAppService::Service {
 public:
  // `store` must outlive the service.
  explicit PrivateAppServiceImpl(AuthStore* store) : store_(store) {}

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

 private:
  AuthStore* const store_;
};

class TokenServiceImpl final
    : public v1::TokenService::WithCallbackMethod_WatchInvalidations<v1::TokenService::Service> {
 public:
  // `store` and `streams` must outlive the service.
  TokenServiceImpl(AuthStore* store, InvalidationStreams* streams) : store_(store), streams_(streams) {}

  grpc::Status CheckToken(grpc::ServerContext* context, const v1::CheckTokenRequest* request,
                          v1::CheckTokenResponse* response) override;
  grpc::Status ReportTokenUsage(grpc::ServerContext* context, const v1::ReportTokenUsageRequest* request,
                                v1::ReportTokenUsageResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchInvalidationsResponse>* WatchInvalidations(
      grpc::CallbackServerContext* context, const v1::WatchInvalidationsRequest* request) override;

 private:
  AuthStore* const store_;
  InvalidationStreams* const streams_;
};

struct AuthServerOptions {
  // host:port to listen on, such as "127.0.0.1:50051"; port 0 picks a free
  // port, which AuthServer::port() then reports.
  std::string listen_address = "127.0.0.1:0";
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
  // Host and port of the Prometheus /metrics endpoint; port 0 picks a free
  // one and a negative port serves no metrics.
  std::string metrics_host = "127.0.0.1";
  int metrics_port = -1;
};

// A running auth server. Stops on Shutdown() or destruction.
class AuthServer {
 public:
  // Builds and starts the server with insecure credentials.
  // TODO: serve TLS (and mTLS for TokenService) once common/ has the TLS setup.
  // `pool` must outlive the server. Fails with INVALID_ARGUMENT for invalid
  // invalidation options and with UNAVAILABLE when the address cannot be
  // bound.
  static absl::StatusOr<std::unique_ptr<AuthServer>> Start(const AuthServerOptions& options, MysqlPool* pool,
                                                           const Secrets& secrets);

  ~AuthServer();
  AuthServer(const AuthServer&) = delete;
  AuthServer& operator=(const AuthServer&) = delete;

  // The bound TCP port.
  int port() const { return port_; }
  // The bound metrics port, or -1 when metrics are off.
  int metrics_port() const { return metrics_http_ ? metrics_http_->port() : -1; }
  grpc::Server& server() { return *server_; }

  // Marks health NOT_SERVING, ends every WatchInvalidations stream with
  // UNAVAILABLE, stops accepting calls and waits up to `grace` for calls in
  // flight before cancelling them. Safe to call more than once.
  void Shutdown(absl::Duration grace = absl::Seconds(5));

  // Purges the invalidation log now instead of at the next purge interval;
  // returns how many entries it deleted.
  absl::StatusOr<int> PurgeInvalidationLog() { return tailer_.PurgeNow(); }

 private:
  AuthServer(MysqlPool* pool, const Secrets& secrets, const AuthServerOptions& options);

  // Declared in dependency order: members are destroyed in reverse, so the
  // streams finish their database reads before the tailer and store go, and
  // the metrics outlive the calls their interceptor records.
  GrpcServerMetrics grpc_metrics_;
  MetricsRegistry metrics_;
  AuthStore store_;
  InvalidationTailer tailer_;
  InvalidationStreams streams_;
  PrivateAppServiceImpl private_apps_;
  TokenServiceImpl tokens_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HealthMonitor> health_monitor_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  int port_ = 0;
  std::atomic<bool> shut_down_{false};
};

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_AUTH_SERVER_H_
