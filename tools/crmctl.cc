// crmctl: operator commands for the auth service that the API does not
// offer, such as creating an organization and its admin key, and an export
// of an app's API call log as CSV.
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/auth/v1/private_app.grpc.pb.h"
#include "common/database_flags.h"
#include "common/logging.h"
#include "common/migrations.h"
#include "common/mysql_pool.h"
#include "common/secrets.h"
#include "common/grpc_status.h"
#include "common/tls.h"
#include "common/server_setup.h"
#include "services/auth/api_call_store.h"
#include "services/auth/auth_store.h"
#include "services/auth/migrations.h"

ABSL_FLAG(std::string, display_name, "", "create-organization: the organization's name, 1 to 200 characters");
ABSL_FLAG(int, batch_size, 100, "reencrypt-tokens: access token rows rewritten per transaction, 1 to 10000");
ABSL_FLAG(std::string, auth_target, "127.0.0.1:50051",
          "export-api-calls: gRPC target of an auth server's PrivateAppService");
ABSL_FLAG(std::string, admin_key, "",
          "export-api-calls: the organization's admin key; prefer the environment variable CRM_ADMIN_KEY, which "
          "no process listing shows");
ABSL_FLAG(std::string, app_id, "", "export-api-calls: id of the app whose calls to export");
ABSL_FLAG(std::string, method, "",
          "export-api-calls: only calls of this CrmService method, such as GetLead; empty exports every method");
ABSL_FLAG(std::string, code, "",
          "export-api-calls: only calls with this status code name, such as NOT_FOUND; empty exports every code");
ABSL_FLAG(std::string, start, "",
          "export-api-calls: only calls received at or after this RFC 3339 time, such as 2026-01-31T00:00:00Z");
ABSL_FLAG(std::string, end, "", "export-api-calls: only calls received before this RFC 3339 time");
ABSL_FLAG(std::string, auth_tls_ca_file, "",
          "export-api-calls: PEM CA bundle that the auth server's certificate must chain to; set, the call uses "
          "TLS; empty uses plaintext, which is rejected for a non-loopback --auth_target unless "
          "--allow_insecure_plaintext is set");
ABSL_FLAG(std::string, auth_tls_server_name, "",
          "export-api-calls: name to verify the auth server's certificate against instead of the target's host");
ABSL_FLAG(bool, allow_insecure_plaintext, false,
          "export-api-calls: send the admin key in plaintext to a non-loopback --auth_target, for networks "
          "protected otherwise");

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
  crmctl export-api-calls --app_id=N [--method=NAME] [--code=CODE]
                          [--start=RFC3339] [--end=RFC3339]
                          [--auth_target=HOST:PORT]
      Writes the app's API call log as CSV (RFC 4180: a header row, CRLF
      line ends, quotes where needed) to stdout, newest call first, with
      the columns call_time, app_id, method, code, latency_ms and
      peer_address. It pages through PrivateAppService.ListApiCalls of the
      auth server at --auth_target (default 127.0.0.1:50051) with the admin
      key in CRM_ADMIN_KEY (or --admin_key), so it needs no database or
      key file, and reads only that key's organization. The filters are
      those of ListApiCalls; --end is exclusive. --auth_tls_ca_file turns
      on TLS (and --auth_tls_server_name overrides the name checked);
      plaintext goes only to a loopback target unless
      --allow_insecure_plaintext is given.

Database and key flags (every command but export-api-calls), as for auth_server: --db_host, --db_port, --db_socket,
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

// Quotes a CSV field as RFC 4180 requires: fields with a comma, a double
// quote or a line break go in double quotes, with each quote doubled.
std::string CsvField(absl::string_view value) {
  if (value.find_first_of(",\"\r\n") == absl::string_view::npos) return std::string(value);
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '"') quoted.push_back('"');
    quoted.push_back(c);
  }
  quoted.push_back('"');
  return quoted;
}

// Parses RFC 3339 flag `value` into `out` and sets `*set`. An empty value
// leaves `out` unset, and an invalid one returns false with the error in `problem`.
bool ParseTimeFlag(absl::string_view name, const std::string& value, google::protobuf::Timestamp* out,
                   bool* set, std::string* problem) {
  *set = false;
  if (value.empty()) return true;
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, value, &time, &error)) {
    *problem = absl::StrCat("invalid --", name, "=", value, ": ", error,
                            "; use RFC 3339 such as 2026-01-31T00:00:00Z");
    return false;
  }
  *out = google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(time));
  *set = true;
  return true;
}

int ExportApiCalls() {
  std::string admin_key = absl::GetFlag(FLAGS_admin_key);
  if (admin_key.empty()) return UsageError("export-api-calls needs the admin key in CRM_ADMIN_KEY or --admin_key");
  if (absl::GetFlag(FLAGS_app_id).empty()) return UsageError("export-api-calls needs --app_id");

  crm::auth::v1::ListApiCallsRequest request;
  request.set_app_id(absl::GetFlag(FLAGS_app_id));
  request.set_method(absl::GetFlag(FLAGS_method));
  request.set_code(absl::GetFlag(FLAGS_code));
  request.set_page_size(crm::auth::kMaxApiCallPageSize);
  bool start_set = false;
  bool end_set = false;
  std::string problem;
  if (!ParseTimeFlag("start", absl::GetFlag(FLAGS_start), request.mutable_start_time(), &start_set, &problem) ||
      !ParseTimeFlag("end", absl::GetFlag(FLAGS_end), request.mutable_end_time(), &end_set, &problem)) {
    return UsageError(problem);
  }
  if (!start_set) request.clear_start_time();
  if (!end_set) request.clear_end_time();

  // The call carries the admin key, so plaintext is for loopback only
  // unless the operator allows it, as for the servers.
  std::string target = absl::GetFlag(FLAGS_auth_target);
  crm::TlsChannelFiles tls;
  tls.ca_file = absl::GetFlag(FLAGS_auth_tls_ca_file);
  tls.server_name = absl::GetFlag(FLAGS_auth_tls_server_name);
  if (tls.ca_file.empty()) {
    absl::Status allowed = crm::CheckPlaintextAllowed(
        "export-api-calls without --auth_tls_ca_file", crm::IsLoopbackTarget(target), absl::GetFlag(FLAGS_allow_insecure_plaintext));
    if (!allowed.ok()) return Failure("will not send the admin key in plaintext", allowed);
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = crm::MakeChannelCredentials(tls);
  if (!credentials.ok()) return Failure("cannot set up TLS to the auth server", credentials.status());
  grpc::ChannelArguments channel_arguments;
  if (!tls.server_name.empty()) channel_arguments.SetSslTargetNameOverride(tls.server_name);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(target, *credentials, channel_arguments);
  std::unique_ptr<crm::auth::v1::PrivateAppService::Stub> stub = crm::auth::v1::PrivateAppService::NewStub(channel);

  std::cout << "call_time,app_id,method,code,latency_ms,peer_address\r\n";
  int64_t rows = 0;
  int pages = 0;
  do {
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", admin_key));
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    crm::auth::v1::ListApiCallsResponse response;
    grpc::Status status = stub->ListApiCalls(&context, request, &response);
    if (!status.ok()) {
      std::cout.flush();
      return Failure(absl::StrCat("cannot list API calls (page ", pages + 1, ", after ", rows, " rows)"),
                     absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                                  absl::StrCat(crm::StatusCodeName(status.error_code()), ": ",
                                               status.error_message())));
    }
    for (const crm::auth::v1::ApiCall& call : response.api_calls()) {
      absl::Time call_time =
          absl::FromUnixMicros(google::protobuf::util::TimeUtil::TimestampToMicroseconds(call.call_time()));
      int64_t latency_micros = google::protobuf::util::TimeUtil::DurationToMicroseconds(call.latency());
      std::cout << absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", call_time, absl::UTCTimeZone()) << ","
                << CsvField(call.app_id()) << "," << CsvField(call.method()) << "," << CsvField(call.code())
                << "," << absl::StrFormat("%d.%03d", latency_micros / 1000, latency_micros % 1000) << ","
                << CsvField(call.peer_address()) << "\r\n";
      ++rows;
    }
    ++pages;
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  std::cerr << "crmctl: exported " << rows << " API calls in " << pages << " pages\n";
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
  if (command == "export-api-calls") {
    if (arguments.size() != 2) return UsageError("export-api-calls takes no positional arguments");
    return ExportApiCalls();
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
