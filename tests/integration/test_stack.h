// A complete system for integration tests: fresh auth and CRM databases on
// the private MariaDB that the ctest fixture started (socket in
// CRM_TEST_DB_SOCKET), and a real auth server and CRM server listening on
// loopback ports picked by the kernel. Clients talk to them over real
// sockets through the generated stubs.
#ifndef CRM_TESTS_INTEGRATION_TEST_STACK_H_
#define CRM_TESTS_INTEGRATION_TEST_STACK_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mysql_pool.h"
#include "common/secrets.h"
#include "crm/auth/v1/private_app.grpc.pb.h"
#include "crm/data/v1/crm_service.grpc.pb.h"
#include "services/auth/auth_server.h"
#include "services/auth/auth_store.h"
#include "services/crm/crm_server.h"

namespace crm::testing {

class TestStack {
 public:
  static absl::StatusOr<std::unique_ptr<TestStack>> Start();
  ~TestStack();

  // Creates an organization and returns its admin key.
  std::string NewOrganization(const std::string& display_name = "Test organization");

  // Creates an app with `scopes` in the admin key's organization and returns
  // the create response (app and token). Fails the test on error.
  crm::auth::v1::CreatePrivateAppResponse NewApp(const std::string& admin_key,
                                                 const std::vector<crm::auth::v1::Scope>& scopes,
                                                 const std::string& display_name = "Test app");

  crm::auth::v1::PrivateAppService::Stub& apps() { return *apps_; }
  crm::data::v1::CrmService::Stub& crm() { return *crm_; }
  grpc::GenericStub& generic_crm() { return *generic_crm_; }
  MysqlPool& auth_pool() { return *auth_pool_; }
  MysqlPool& data_pool() { return *data_pool_; }

  int auth_port() const { return auth_server_->port(); }
  int crm_port() const { return crm_server_->port(); }

 private:
  TestStack() = default;

  std::string auth_database_;
  std::string data_database_;
  std::unique_ptr<MysqlPool> root_pool_;
  std::unique_ptr<MysqlPool> auth_pool_;
  std::unique_ptr<MysqlPool> data_pool_;
  Secrets secrets_;
  std::unique_ptr<crm::auth::AuthStore> operator_store_;
  std::unique_ptr<crm::auth::AuthServer> auth_server_;
  std::unique_ptr<crm::data::CrmServer> crm_server_;
  std::unique_ptr<crm::auth::v1::PrivateAppService::Stub> apps_;
  std::unique_ptr<crm::data::v1::CrmService::Stub> crm_;
  std::unique_ptr<grpc::GenericStub> generic_crm_;
};

// A client context carrying `authorization: Bearer <credential>` and a
// 10-second deadline.
std::unique_ptr<grpc::ClientContext> WithBearer(const std::string& credential);

crm::auth::v1::Scope MakeScope(crm::auth::v1::Module module, crm::auth::v1::Action action);

// Every one of the 24 scopes.
std::vector<crm::auth::v1::Scope> AllScopes();

}  // namespace crm::testing

#endif  // CRM_TESTS_INTEGRATION_TEST_STACK_H_
