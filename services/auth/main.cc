// The auth server: PrivateAppService and TokenService over the auth schema.
// This file only wires flags, secrets, the database pool and the server.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/database_flags.h"
#include "common/logging.h"
#include "common/migrations.h"
#include "common/mysql_pool.h"
#include "common/secrets.h"
#include "common/server_setup.h"
#include "services/auth/auth_server.h"
#include "services/auth/migrations.h"

ABSL_FLAG(int, port, 50051, "TCP port for gRPC; 0 picks a free port");
ABSL_FLAG(std::string, listen_host, "127.0.0.1",
          "Address to listen on, such as 127.0.0.1, ::1 or 0.0.0.0 for every interface");

namespace {

constexpr absl::Duration kShutdownGrace = absl::Seconds(10);

// Prints one line for a start-up error and exits non-zero.
[[noreturn]] void Fail(absl::string_view action, const absl::Status& status) {
  std::cerr << "auth_server: " << action << ": " << status.message() << "\n";
  std::exit(1);
}

std::string ListenAddress(const std::string& host, int port) {
  // An IPv6 literal needs brackets before the port.
  if (host.find(':') != std::string::npos && host.front() != '[') return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

}  // namespace

int main(int argc, char** argv) {
  crm::BlockShutdownSignals();
  crm::ParseFlagsWithEnvironment(argc, argv,
                                 "Serves crm.auth.v1.PrivateAppService and TokenService. Every flag can "
                                 "also be set as the environment variable CRM_<FLAG NAME IN UPPER CASE>.");
  if (!crm::ConfigureLogging(absl::GetFlag(FLAGS_log_level))) {
    std::cerr << "auth_server: invalid --log_level " << absl::GetFlag(FLAGS_log_level)
              << "; use trace, debug, info, warn, error or off\n";
    return 1;
  }
  int port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) {
    std::cerr << "auth_server: invalid --port " << port << "; use 0 to 65535\n";
    return 1;
  }

  absl::StatusOr<crm::Secrets> secrets = crm::LoadSecrets(absl::GetFlag(FLAGS_key_file));
  if (!secrets.ok()) Fail("cannot load secrets", secrets.status());

  // Creating the pool loads the connector driver, which must happen before
  // gRPC starts threads.
  crm::MysqlOptions database = crm::MysqlOptionsFromFlags("crm_auth");
  absl::StatusOr<std::unique_ptr<crm::MysqlPool>> pool = crm::MysqlPool::Create(database);
  if (!pool.ok()) Fail(absl::StrCat("cannot connect to database ", database.database), pool.status());
  absl::Status migrated =
      crm::ApplyMigrations(**pool, crm::auth::kMigrationLockName, crm::auth::Migrations());
  if (!migrated.ok()) Fail("cannot apply schema migrations", migrated);

  crm::auth::AuthServerOptions options;
  options.listen_address = ListenAddress(absl::GetFlag(FLAGS_listen_host), port);
  absl::StatusOr<std::unique_ptr<crm::auth::AuthServer>> server =
      crm::auth::AuthServer::Start(options, pool->get(), *secrets);
  if (!server.ok()) Fail("cannot start the gRPC server", server.status());
  spdlog::info("auth server listening on {}, database {}",
               ListenAddress(absl::GetFlag(FLAGS_listen_host), (*server)->port()), database.database);

  crm::WaitForShutdownSignal((*server)->server(), kShutdownGrace);
  server->reset();
  spdlog::info("auth server stopped");
  return 0;
}
