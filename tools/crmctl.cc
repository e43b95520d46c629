// crmctl: operator commands for the auth service that the API does not
// offer, such as creating an organization and its admin key.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/string_view.h"
#include "common/database_flags.h"
#include "common/logging.h"
#include "common/migrations.h"
#include "common/mysql_pool.h"
#include "common/secrets.h"
#include "common/server_setup.h"
#include "services/auth/auth_store.h"
#include "services/auth/migrations.h"

ABSL_FLAG(std::string, display_name, "", "create-organization: the organization's name, 1 to 200 characters");

namespace {

constexpr absl::string_view kUsage =
    R"(Operator commands for the CRM auth service.

Usage:
  crmctl create-organization --display_name=NAME [database and key flags]
      Applies the auth schema migrations, creates an organization with one
      admin key and prints two lines, "organization_id: N" and
      "admin_key: crmadm_...". The admin key is shown only this once.
  crmctl generate-key-file PATH
      Writes a new key file with fresh random keys and mode 0600. Fails if
      PATH exists, so an existing key is never overwritten.

Database and key flags, as for auth_server: --db_host, --db_port, --db_socket,
--db_user, --db_password, --db_name (default crm_auth) and --key_file. Each
flag can also be set as the environment variable CRM_<FLAG NAME IN UPPER CASE>,
such as CRM_DB_PASSWORD.)";

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int UsageError(absl::string_view problem) {
  std::cerr << "crmctl: " << problem << "\n\n" << kUsage << "\n";
  return kExitUsage;
}

int Failure(absl::string_view action, const absl::Status& status) {
  std::cerr << "crmctl: " << action << ": " << status.message() << "\n";
  return kExitFailure;
}

int CreateOrganization() {
  std::string display_name = absl::GetFlag(FLAGS_display_name);
  if (display_name.empty()) return UsageError("create-organization needs --display_name");

  absl::StatusOr<crm::Secrets> secrets = crm::LoadSecrets(absl::GetFlag(FLAGS_key_file));
  if (!secrets.ok()) return Failure("cannot load secrets", secrets.status());
  crm::MysqlOptions database = crm::MysqlOptionsFromFlags("crm_auth");
  database.pool_size = 1;
  absl::StatusOr<std::unique_ptr<crm::MysqlPool>> pool = crm::MysqlPool::Create(database);
  if (!pool.ok()) return Failure("cannot connect to database " + database.database, pool.status());
  absl::Status migrated =
      crm::ApplyMigrations(**pool, crm::auth::kMigrationLockName, crm::auth::Migrations());
  if (!migrated.ok()) return Failure("cannot apply schema migrations", migrated);

  crm::auth::AuthStore store(pool->get(), *std::move(secrets));
  absl::StatusOr<crm::auth::NewOrganization> organization = store.CreateOrganization(display_name);
  if (!organization.ok()) return Failure("cannot create the organization", organization.status());
  std::cout << "organization_id: " << organization->organization_id << "\n"
            << "admin_key: " << organization->admin_key << "\n";
  return std::cout.flush() ? EXIT_SUCCESS : kExitFailure;
}

int GenerateKeyFile(const std::string& path) {
  absl::Status written = crm::WriteNewKeyFile(path);
  if (!written.ok()) return Failure("cannot generate a key file", written);
  std::cerr << "crmctl: wrote new keys to " << path << "\n";
  return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> arguments = crm::ParseFlagsWithEnvironment(argc, argv, kUsage);
  if (!crm::ConfigureLogging(absl::GetFlag(FLAGS_log_level))) {
    return UsageError("invalid --log_level; use trace, debug, info, warn, error or off");
  }
  if (arguments.size() < 2) return UsageError("missing command");

  absl::string_view command = arguments[1];
  if (command == "create-organization") {
    if (arguments.size() != 2) return UsageError("create-organization takes no positional arguments");
    return CreateOrganization();
  }
  if (command == "generate-key-file") {
    if (arguments.size() != 3) return UsageError("generate-key-file needs exactly one PATH");
    return GenerateKeyFile(arguments[2]);
  }
  return UsageError(std::string("unknown command \"") + std::string(command) + "\"");
}
