// A complete system for integration tests: fresh auth and CRM databases on
// the private MariaDB that the ctest fixture started (socket in
// CRM_TEST_DB_SOCKET), and a real auth server and CRM server listening on
// loopback ports picked by the kernel. Clients talk to them over real
// sockets through the generated stubs.
#ifndef CRM_TESTS_INTEGRATION_TEST_STACK_H_
#define CRM_TESTS_INTEGRATION_TEST_STACK_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mysql_pool.h"
#include "common/secrets.h"
#include "crm/auth/v1/private_app.grpc.pb.h"
#include "crm/data/v1/crm_service.grpc.pb.h"
#include "crm/data/v1/status.grpc.pb.h"
#include "services/auth/auth_server.h"
#include "services/auth/auth_store.h"
#include "services/crm/crm_server.h"

namespace crm::testing {

struct StackOptions {
  int auth_servers = 1;
  // Each CRM server reaches every auth server, round robin.
  int crm_servers = 1;
  bool token_cache = true;
  absl::Duration heartbeat_timeout = absl::Seconds(3);
  // Zero: CRM servers report token uses only on FlushTokenUsage().
  absl::Duration token_usage_flush_interval = absl::ZeroDuration();
  // Serve Prometheus metrics on a kernel-picked loopback port per server.
  bool metrics = false;
  // Unix socket of the MariaDB server to use; empty means the ctest
  // fixture's server (CRM_TEST_DB_SOCKET). Fault tests that stop the
  // database start a server of their own.
  std::string db_socket;
  // Rate limits of organizations whose policy sets none. They default to the
  // maximums, so only tests that set a policy or lower these reach a limit.
  crm::auth::RateLimitDefaults rate_limit_defaults = {kMaxBurstLimitPer10s, kMaxDailyLimit};
  // Host the CRM servers listen on and the stubs connect to: "127.0.0.1",
  // or "[::1]" for IPv6 loopback.
  std::string crm_listen_host = "127.0.0.1";
  // Applied to each CRM server's options before it starts, for tests that
  // need other limits than the defaults.
  std::function<void(crm::data::CrmServerOptions&)> adjust_crm_options;
  // Failed-lookup limits of every auth and CRM server.
  CredentialLimiterOptions credential_limiter;
  // Applied to each auth server's options before it starts.
  std::function<void(crm::auth::AuthServerOptions&)> adjust_auth_options;
};

class TestStack {
 public:
  static absl::StatusOr<std::unique_ptr<TestStack>> Start(const StackOptions& options = {});
  ~TestStack();

  // Creates an organization and returns its admin key.
  std::string NewOrganization(const std::string& display_name = "Test organization");

  // Creates an app with `scopes` in the admin key's organization and returns
  // the create response (app and token). Fails the test on error.
  crm::auth::v1::CreatePrivateAppResponse NewApp(const std::string& admin_key,
                                                 const std::vector<crm::auth::v1::Scope>& scopes,
                                                 const std::string& display_name = "Test app");

  // Stubs of the first auth and CRM server, or of server `index`. The auth
  // stubs reach the public port (PrivateAppService).
  crm::auth::v1::PrivateAppService::Stub& apps(size_t index = 0) { return *apps_[index]; }
  crm::data::v1::CrmService::Stub& crm(size_t index = 0) { return *crm_[index]; }
  crm::data::v1::CrmStatusService::Stub& crm_status(size_t index = 0) { return *crm_status_[index]; }
  grpc::GenericStub& generic_crm() { return *generic_crm_; }
  grpc::GenericStub& generic_auth() { return *generic_auth_; }
  MysqlPool& auth_pool() { return *auth_pool_; }
  MysqlPool& data_pool() { return *data_pool_; }
  const Secrets& secrets() const { return secrets_; }

  crm::auth::AuthServer& auth_server(size_t index = 0) { return *auth_servers_[index]; }
  crm::data::CrmServer& crm_server(size_t index = 0) { return *crm_servers_[index]; }
  int auth_port(size_t index = 0) const { return auth_servers_[index]->port(); }
  int auth_internal_port(size_t index = 0) const { return auth_servers_[index]->internal_port(); }
  int crm_port(size_t index = 0) const { return crm_servers_[index]->port(); }

  // Stops auth server `index` (calls in flight get `grace`); its stubs
  // then fail with UNAVAILABLE.
  void StopAuthServer(size_t index, absl::Duration grace = absl::ZeroDuration());

  // Stops CRM server `index` the same way.
  void StopCrmServer(size_t index, absl::Duration grace = absl::ZeroDuration());
  // Starts auth server `index` again on the port it had, after
  // StopAuthServer. Fails the test when the port cannot be bound.
  void RestartAuthServer(size_t index);

  // Connection settings of the stack's auth or CRM database, as root.
  MysqlOptions auth_database_options() const;
  MysqlOptions data_database_options() const;

  // Returns the status of CRM server `index`, and fails the test when it
  // cannot be read.
  crm::data::v1::GetServerStatusResponse ServerStatus(size_t index);

  // Waits until every CRM server's invalidation stream is current. After
  // `timeout` it fails the test and returns false.
  bool AwaitCurrent(absl::Duration timeout = absl::Seconds(10));

  // Returns the invalidation sequence CRM server `index` has applied, or -1
  // when its status cannot be read.
  int64_t AppliedSequence(size_t index);

  // Waits until every CRM server has applied `sequence`; returns how long
  // that took, or fails the test after `timeout`.
  absl::Duration AwaitApplied(int64_t sequence, absl::Duration timeout = absl::Seconds(10));

 private:
  TestStack() = default;

  std::string db_socket_;
  crm::auth::RateLimitDefaults rate_limit_defaults_;
  std::string auth_database_;
  std::string data_database_;
  std::unique_ptr<MysqlPool> root_pool_;
  std::unique_ptr<MysqlPool> auth_pool_;
  std::unique_ptr<MysqlPool> data_pool_;
  Secrets secrets_;
  CredentialLimiterOptions credential_limiter_;
  std::unique_ptr<crm::auth::AuthStore> operator_store_;
  std::vector<std::unique_ptr<crm::auth::AuthServer>> auth_servers_;
  std::vector<std::unique_ptr<crm::data::CrmServer>> crm_servers_;
  std::vector<std::unique_ptr<crm::auth::v1::PrivateAppService::Stub>> apps_;
  std::vector<std::unique_ptr<crm::data::v1::CrmService::Stub>> crm_;
  std::vector<std::unique_ptr<crm::data::v1::CrmStatusService::Stub>> crm_status_;
  std::unique_ptr<grpc::GenericStub> generic_crm_;
  std::unique_ptr<grpc::GenericStub> generic_auth_;
};

// A client context carrying `authorization: Bearer <credential>` and a
// 10-second deadline.
std::unique_ptr<grpc::ClientContext> WithBearer(const std::string& credential);

crm::auth::v1::Scope MakeScope(crm::auth::v1::Module module, crm::auth::v1::Action action);

// Every one of the 24 scopes.
std::vector<crm::auth::v1::Scope> AllScopes();

}  // namespace crm::testing

#endif  // CRM_TESTS_INTEGRATION_TEST_STACK_H_
