// crmctl: operator commands for the auth service that the API does not
// offer, such as creating an organization and its admin key.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
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
ABSL_FLAG(int, batch_size, 100, "reencrypt-tokens: access token rows rewritten per transaction, 1 to 10000");

namespace {

constexpr absl::string_view kUsage =
    R"(Operator commands for the CRM auth service.

Usage:
  crmctl create-organization --display_name=NAME [database and key flags]
      Applies the auth schema migrations, creates an organization with one
      admin key and prints two lines, "organization_id: N" and
      "admin_key: crmadm_...". The admin key is shown only this once.
  crmctl generate-key-file PATH
      Writes a new key file with fresh random keys (number 1 of each name)
      and mode 0600. Fails if PATH exists, so an existing key is never
      overwritten.
  crmctl add-keys PATH
      Appends a new token_encryption_key and token_hmac_key to the key file
      PATH, numbered one above the highest of each name, and prints their
      ids. It also appends NAME.current=N lines naming the keys in use, so
      servers restarted with the file read the new keys but keep writing
      with the old ones. Remove those lines, once every server has loaded
      the new keys, to make the new keys current.
  crmctl reencrypt-tokens [--batch_size=N] [database and key flags]
      Rewrites every stored access token that uses another
      token_encryption_key or token_hmac_key than the current ones, N rows
      per transaction (default 100), and prints "rewritten_tokens: N" and
      "admin_keys_under_older_keys: N". Safe to run again and while the
      servers run, once every server loads the current keys. An older key
      can be removed when both numbers of a second run are 0.

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

// Connects to the auth database and applies its migrations, as the auth
// server does at start-up.
absl::StatusOr<std::unique_ptr<crm::MysqlPool>> OpenAuthDatabase() {
  crm::MysqlOptions database = crm::MysqlOptionsFromFlags("crm_auth");
  database.pool_size = 1;
  absl::StatusOr<std::unique_ptr<crm::MysqlPool>> pool = crm::MysqlPool::Create(database);
  if (!pool.ok()) {
    return absl::Status(pool.status().code(),
                        absl::StrCat("cannot connect to database ", database.database, ": ", pool.status().message()));
  }
  absl::Status migrated = crm::ApplyMigrations(**pool, crm::auth::kMigrationLockName, crm::auth::Migrations());
  if (!migrated.ok()) {
    return absl::Status(migrated.code(), absl::StrCat("cannot apply schema migrations: ", migrated.message()));
  }
  return pool;
}

int CreateOrganization() {
  std::string display_name = absl::GetFlag(FLAGS_display_name);
  if (display_name.empty()) return UsageError("create-organization needs --display_name");

  absl::StatusOr<crm::Secrets> secrets = crm::LoadSecrets(absl::GetFlag(FLAGS_key_file));
  if (!secrets.ok()) return Failure("cannot load secrets", secrets.status());
  absl::StatusOr<std::unique_ptr<crm::MysqlPool>> pool = OpenAuthDatabase();
  if (!pool.ok()) return Failure("cannot open the auth database", pool.status());

  crm::auth::AuthStore store(pool->get(), *std::move(secrets));
  absl::StatusOr<crm::auth::NewOrganization> organization = store.CreateOrganization(display_name);
  if (!organization.ok()) return Failure("cannot create the organization", organization.status());
  std::cout << "organization_id: " << organization->organization_id << "\n"
            << "admin_key: " << organization->admin_key << "\n";
  return std::cout.flush() ? EXIT_SUCCESS : kExitFailure;
}

int ReencryptTokens() {
  int batch_size = absl::GetFlag(FLAGS_batch_size);
  if (batch_size < 1 || batch_size > 10000) {
    return UsageError(absl::StrCat("invalid --batch_size ", batch_size, "; use 1 to 10000"));
  }
  absl::StatusOr<crm::Secrets> secrets = crm::LoadSecrets(absl::GetFlag(FLAGS_key_file));
  if (!secrets.ok()) return Failure("cannot load secrets", secrets.status());
  std::cerr << "crmctl: loaded keys: " << crm::DescribeSecrets(*secrets) << "\n";
  absl::StatusOr<std::unique_ptr<crm::MysqlPool>> pool = OpenAuthDatabase();
  if (!pool.ok()) return Failure("cannot open the auth database", pool.status());

  crm::auth::AuthStore store(pool->get(), *std::move(secrets));
  absl::StatusOr<crm::auth::ReencryptResult> result = store.ReencryptTokens(batch_size);
  if (!result.ok()) return Failure("cannot re-encrypt the access tokens", result.status());
  std::cout << "rewritten_tokens: " << result->rewritten_tokens << "\n"
            << "admin_keys_under_older_keys: " << result->admin_keys_under_older_keys << "\n";
  return std::cout.flush() ? EXIT_SUCCESS : kExitFailure;
}

int AddKeys(const std::string& path) {
  absl::StatusOr<std::vector<std::string>> added = crm::AddNewestKeys(path);
  if (!added.ok()) return Failure("cannot add keys", added.status());
  for (const std::string& description : *added) std::cout << "added " << description << "\n";
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
  if (command == "reencrypt-tokens") {
    if (arguments.size() != 2) return UsageError("reencrypt-tokens takes no positional arguments");
    return ReencryptTokens();
  }
  if (command == "add-keys") {
    if (arguments.size() != 3) return UsageError("add-keys needs exactly one PATH");
    return AddKeys(arguments[2]);
  }
  if (command == "generate-key-file") {
    if (arguments.size() != 3) return UsageError("generate-key-file needs exactly one PATH");
    return GenerateKeyFile(arguments[2]);
  }
  return UsageError(std::string("unknown command \"") + std::string(command) + "\"");
}
