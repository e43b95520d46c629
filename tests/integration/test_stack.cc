#include "tests/integration/test_stack.h"

#include <cppconn/connection.h>
#include <cppconn/statement.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crypto.h"
#include "common/migrations.h"
#include "gtest/gtest.h"
#include "services/auth/migrations.h"
#include "services/crm/migrations.h"

namespace crm::testing {
namespace {

MysqlOptions DatabaseOptions(const std::string& socket, const std::string& database) {
  MysqlOptions options;
  options.socket = socket;
  options.user = "root";
  options.database = database;
  options.pool_size = 32;
  return options;
}

absl::Status Execute(MysqlPool& pool, const std::string& sql) {
  return pool.Run("test setup", [&](sql::Connection& connection) {
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    statement->execute(sql);
    return absl::OkStatus();
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<TestStack>> TestStack::Start(const StackOptions& options) {
  if (options.db_socket.empty() && std::getenv("CRM_TEST_DB_SOCKET") == nullptr) {
    return absl::FailedPreconditionError(
        "CRM_TEST_DB_SOCKET is not set; run the integration tests through ctest, which starts MariaDB");
  }
  std::unique_ptr<TestStack> stack(new TestStack());
  stack->db_socket_ = options.db_socket.empty() ? std::getenv("CRM_TEST_DB_SOCKET") : options.db_socket;
  stack->credential_limiter_ = options.credential_limiter;
  stack->rate_limit_defaults_ = options.rate_limit_defaults;
  static std::atomic<int> counter{0};
  std::string suffix = absl::StrCat(getpid(), "_", counter++);
  stack->auth_database_ = absl::StrCat("test_auth_", suffix);
  stack->data_database_ = absl::StrCat("test_data_", suffix);

  absl::StatusOr<std::unique_ptr<MysqlPool>> root = MysqlPool::Create(DatabaseOptions(stack->db_socket_, ""));
  if (!root.ok()) return root.status();
  stack->root_pool_ = *std::move(root);
  for (const std::string& database : {stack->auth_database_, stack->data_database_}) {
    if (absl::Status status = Execute(*stack->root_pool_, absl::StrCat("CREATE DATABASE ", database));
        !status.ok()) {
      return status;
    }
  }

  absl::StatusOr<std::unique_ptr<MysqlPool>> auth_pool = MysqlPool::Create(stack->auth_database_options());
  if (!auth_pool.ok()) return auth_pool.status();
  stack->auth_pool_ = *std::move(auth_pool);
  absl::StatusOr<std::unique_ptr<MysqlPool>> data_pool = MysqlPool::Create(stack->data_database_options());
  if (!data_pool.ok()) return data_pool.status();
  stack->data_pool_ = *std::move(data_pool);
  if (absl::Status status =
          ApplyMigrations(*stack->auth_pool_, crm::auth::kMigrationLockName, crm::auth::Migrations());
      !status.ok()) {
    return status;
  }
  if (absl::Status status =
          ApplyMigrations(*stack->data_pool_, crm::data::kMigrationLockName, crm::data::Migrations());
      !status.ok()) {
    return status;
  }

  stack->secrets_.token_encryption_key = RandomBytes(kAes256KeyBytes);
  stack->secrets_.token_encryption_key_id = HexEncode(Sha256(stack->secrets_.token_encryption_key)).substr(0, 8);
  stack->secrets_.token_hmac_key = RandomBytes(kAes256KeyBytes);
  stack->secrets_.page_token_key = RandomBytes(kAes256KeyBytes);
  stack->operator_store_ = std::make_unique<crm::auth::AuthStore>(stack->auth_pool_.get(), stack->secrets_);

  std::vector<std::string> auth_addresses;
  for (int i = 0; i < options.auth_servers; ++i) {
    crm::auth::AuthServerOptions auth_options;
    auth_options.listen_address = "127.0.0.1:0";
    auth_options.rate_limit_defaults = options.rate_limit_defaults;
    if (options.metrics) auth_options.metrics_port = 0;
    auth_options.internal_listen_address = "127.0.0.1:0";
    auth_options.credential_limiter = options.credential_limiter;
    if (options.adjust_auth_options) options.adjust_auth_options(auth_options);
    absl::StatusOr<std::unique_ptr<crm::auth::AuthServer>> auth_server =
        crm::auth::AuthServer::Start(auth_options, stack->auth_pool_.get(), stack->secrets_);
    if (!auth_server.ok()) return auth_server.status();
    auth_addresses.push_back(absl::StrCat("127.0.0.1:", (*auth_server)->internal_port()));
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*auth_server)->port()), grpc::InsecureChannelCredentials());
    stack->apps_.push_back(crm::auth::v1::PrivateAppService::NewStub(channel));
    if (i == 0) stack->generic_auth_ = std::make_unique<grpc::GenericStub>(channel);
    stack->auth_servers_.push_back(*std::move(auth_server));
  }

  for (int i = 0; i < options.crm_servers; ++i) {
    crm::data::CrmServerOptions crm_options;
    crm_options.listen_address = absl::StrCat(options.crm_listen_host, ":0");
    crm_options.auth_target = absl::StrCat("ipv4:", absl::StrJoin(auth_addresses, ","));
    crm_options.worker_threads = 8;
    crm_options.page_token_key = stack->secrets_.page_token_key;
    crm_options.token_cache_enabled = options.token_cache;
    crm_options.invalidation_watcher.heartbeat_timeout = options.heartbeat_timeout;
    crm_options.token_usage_flush_interval = options.token_usage_flush_interval;
    crm_options.credential_limiter = options.credential_limiter;
    if (options.metrics) crm_options.metrics_port = 0;
    if (options.adjust_crm_options) options.adjust_crm_options(crm_options);
    absl::StatusOr<std::unique_ptr<crm::data::CrmServer>> crm_server =
        crm::data::CrmServer::Start(crm_options, stack->data_pool_.get());
    if (!crm_server.ok()) return crm_server.status();
    bool ipv6 = absl::StartsWith(options.crm_listen_host, "[");
    auto channel = grpc::CreateChannel(
        absl::StrCat(ipv6 ? "ipv6:" : "", options.crm_listen_host, ":", (*crm_server)->port()),
        grpc::InsecureChannelCredentials());
    stack->crm_.push_back(crm::data::v1::CrmService::NewStub(channel));
    stack->crm_status_.push_back(crm::data::v1::CrmStatusService::NewStub(channel));
    if (i == 0) stack->generic_crm_ = std::make_unique<grpc::GenericStub>(channel);
    stack->crm_servers_.push_back(*std::move(crm_server));
  }
  return stack;
}

TestStack::~TestStack() {
  for (auto& server : crm_servers_) server->Shutdown(absl::Seconds(1));
  for (auto& server : auth_servers_) server->Shutdown(absl::Seconds(1));
  crm_servers_.clear();
  auth_servers_.clear();
  operator_store_.reset();
  auth_pool_.reset();
  data_pool_.reset();
  if (root_pool_) {
    for (const std::string& database : {auth_database_, data_database_}) {
      if (!database.empty()) Execute(*root_pool_, absl::StrCat("DROP DATABASE IF EXISTS ", database)).IgnoreError();
    }
  }
}

std::string TestStack::NewOrganization(const std::string& display_name) {
  absl::StatusOr<crm::auth::NewOrganization> organization = operator_store_->CreateOrganization(display_name);
  EXPECT_TRUE(organization.ok()) << organization.status();
  return organization.ok() ? organization->admin_key : std::string();
}

crm::auth::v1::CreatePrivateAppResponse TestStack::NewApp(const std::string& admin_key,
                                                          const std::vector<crm::auth::v1::Scope>& scopes,
                                                          const std::string& display_name) {
  crm::auth::v1::CreatePrivateAppRequest request;
  request.mutable_private_app()->set_display_name(display_name);
  for (const crm::auth::v1::Scope& scope : scopes) *request.mutable_private_app()->add_scopes() = scope;
  crm::auth::v1::CreatePrivateAppResponse response;
  grpc::Status status = apps_[0]->CreatePrivateApp(WithBearer(admin_key).get(), request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response;
}

void TestStack::StopAuthServer(size_t index, absl::Duration grace) { auth_servers_[index]->Shutdown(grace); }

void TestStack::StopCrmServer(size_t index, absl::Duration grace) { crm_servers_[index]->Shutdown(grace); }
void TestStack::RestartAuthServer(size_t index) {
  int port = auth_servers_[index]->port();
  int internal_port = auth_servers_[index]->internal_port();
  auth_servers_[index].reset();
  crm::auth::AuthServerOptions auth_options;
  auth_options.listen_address = absl::StrCat("127.0.0.1:", port);
  auth_options.internal_listen_address = absl::StrCat("127.0.0.1:", internal_port);
  auth_options.credential_limiter = credential_limiter_;
  auth_options.rate_limit_defaults = rate_limit_defaults_;
  absl::StatusOr<std::unique_ptr<crm::auth::AuthServer>> auth_server =
      crm::auth::AuthServer::Start(auth_options, auth_pool_.get(), secrets_);
  ASSERT_TRUE(auth_server.ok()) << "cannot restart auth server " << index << " on port " << port << ": "
                                << auth_server.status();
  auth_servers_[index] = *std::move(auth_server);
}

MysqlOptions TestStack::auth_database_options() const { return DatabaseOptions(db_socket_, auth_database_); }

MysqlOptions TestStack::data_database_options() const { return DatabaseOptions(db_socket_, data_database_); }

crm::data::v1::GetServerStatusResponse TestStack::ServerStatus(size_t index) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  crm::data::v1::GetServerStatusResponse status;
  EXPECT_TRUE(crm_status_[index]->GetServerStatus(&context, {}, &status).ok()) << "CRM server " << index;
  return status;
}

bool TestStack::AwaitCurrent(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    bool all_current = true;
    for (size_t i = 0; i < crm_servers_.size(); ++i) {
      if (ServerStatus(i).watch_state() != crm::data::v1::WATCH_STATE_CURRENT) all_current = false;
    }
    if (all_current) return true;
    if (absl::Now() >= deadline) {
      ADD_FAILURE() << "CRM servers did not become current within " << absl::FormatDuration(timeout);
      return false;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

int64_t TestStack::AppliedSequence(size_t index) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  crm::data::v1::GetServerStatusResponse status;
  if (!crm_status_[index]->GetServerStatus(&context, {}, &status).ok()) return -1;
  return status.applied_invalidation_sequence();
}

absl::Duration TestStack::AwaitApplied(int64_t sequence, absl::Duration timeout) {
  absl::Time start = absl::Now();
  for (size_t i = 0; i < crm_servers_.size(); ++i) {
    while (AppliedSequence(i) < sequence) {
      if (absl::Now() - start > timeout) {
        ADD_FAILURE() << "CRM server " << i << " did not apply sequence " << sequence << " within "
                      << absl::FormatDuration(timeout) << " (applied " << AppliedSequence(i) << ")";
        return absl::Now() - start;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  return absl::Now() - start;
}

std::unique_ptr<grpc::ClientContext> WithBearer(const std::string& credential) {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!credential.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", credential));
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return context;
}

crm::auth::v1::Scope MakeScope(crm::auth::v1::Module module, crm::auth::v1::Action action) {
  crm::auth::v1::Scope scope;
  scope.set_module(module);
  scope.set_action(action);
  return scope;
}

std::vector<crm::auth::v1::Scope> AllScopes() {
  std::vector<crm::auth::v1::Scope> scopes;
  for (int module = crm::auth::v1::MODULE_LEAD; module <= crm::auth::v1::MODULE_MESSAGE; ++module) {
    for (int action = crm::auth::v1::ACTION_READ; action <= crm::auth::v1::ACTION_DELETE; ++action) {
      scopes.push_back(MakeScope(static_cast<crm::auth::v1::Module>(module), static_cast<crm::auth::v1::Action>(action)));
    }
  }
  return scopes;
}

}  // namespace crm::testing
