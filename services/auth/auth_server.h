// The auth service's gRPC layer: adapters for crm.auth.v1.PrivateAppService
// and crm.auth.v1.TokenService over AuthStore, and AuthServer, which builds
// a server with both plus the standard health and reflection services.
//
// Each call authenticates first (PrivateAppService takes the admin key from
// `authorization: Bearer <key>` metadata; TokenService needs none), then runs
// the core and writes one log line: method, status code, latency, the
// organization and app ids when known, and the peer. Tokens and keys are
// never logged. AuthServer reads no flags, so tests start it in-process.
#ifndef CRM_SERVICES_AUTH_AUTH_SERVER_H_
#define CRM_SERVICES_AUTH_AUTH_SERVER_H_

#include <grpcpp/server.h>
#include <grpcpp/server_context.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mysql_pool.h"
#include "common/secrets.h"
#include "crm/auth/v1/private_app.grpc.pb.h"
#include "crm/auth/v1/token_service.grpc.pb.h"
#include "services/auth/auth_store.h"

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

 private:
  AuthStore* const store_;
};

// TODO: implement WatchInvalidations; the inherited method returns UNIMPLEMENTED.
class TokenServiceImpl final : public v1::TokenService::Service {
 public:
  // `store` must outlive the service.
  explicit TokenServiceImpl(AuthStore* store) : store_(store) {}

  grpc::Status CheckToken(grpc::ServerContext* context, const v1::CheckTokenRequest* request,
                          v1::CheckTokenResponse* response) override;

 private:
  AuthStore* const store_;
};

struct AuthServerOptions {
  // host:port to listen on, such as "127.0.0.1:50051"; port 0 picks a free
  // port, which AuthServer::port() then reports.
  std::string listen_address = "127.0.0.1:0";
  // Sources of randomness and time for tokens and timestamps; tests may
  // inject deterministic ones. Outside tests keep the defaults.
  RandomSource random = RandomBytes;
  Clock clock = absl::Now;
};

// A running auth server. Stops on Shutdown() or destruction.
class AuthServer {
 public:
  // Builds and starts the server with insecure credentials.
  // TODO: serve TLS (and mTLS for TokenService) once common/ has the TLS setup.
  // `pool` must outlive the server. Fails with UNAVAILABLE when the address
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<AuthServer>> Start(const AuthServerOptions& options, MysqlPool* pool,
                                                           const Secrets& secrets);

  ~AuthServer();
  AuthServer(const AuthServer&) = delete;
  AuthServer& operator=(const AuthServer&) = delete;

  // The bound TCP port.
  int port() const { return port_; }
  grpc::Server& server() { return *server_; }

  // Marks health NOT_SERVING, stops accepting calls and waits up to `grace`
  // for calls in flight before cancelling them. Safe to call more than once.
  void Shutdown(absl::Duration grace = absl::Seconds(5));

 private:
  AuthServer(MysqlPool* pool, const Secrets& secrets, const AuthServerOptions& options);

  AuthStore store_;
  PrivateAppServiceImpl private_apps_;
  TokenServiceImpl tokens_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::atomic<bool> shut_down_{false};
};

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_AUTH_SERVER_H_
