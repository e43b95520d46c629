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
#include "common/rate_limit.h"
#include "common/secrets.h"
#include "common/server_setup.h"
#include "common/tls.h"
#include "services/auth/auth_server.h"
#include "services/auth/migrations.h"

ABSL_FLAG(int, port, 50051, "TCP port of PrivateAppService (admin clients); 0 picks a free port");
ABSL_FLAG(int, internal_port, 50053,
          "TCP port of the internal TokenService (CRM servers only), on the same host; 0 picks a free port");
ABSL_FLAG(std::string, listen_host, "127.0.0.1",
          "Address to listen on, such as 127.0.0.1, ::1 or 0.0.0.0 for every interface");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain that both listeners present; empty serves plaintext, which only loopback "
          "addresses accept unless --allow_insecure_plaintext is set");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle for the internal port: every client (CRM server) must present a certificate that "
          "chains to it (mutual TLS). Required with TLS on a non-loopback address unless "
          "--allow_insecure_plaintext is set");
ABSL_FLAG(bool, allow_insecure_plaintext, false,
          "Allow plaintext or an internal port without client certificates on a non-loopback address, for "
          "networks protected otherwise (such as a service mesh that adds mutual TLS)");
ABSL_FLAG(int, invalidation_poll_interval_ms, 20,
          "Milliseconds between reads of the invalidation log; changes made through this server are read at "
          "once, other servers' changes within this interval");
ABSL_FLAG(int, invalidation_heartbeat_interval_ms, 1000,
          "Maximum milliseconds between two WatchInvalidations messages; must exceed the poll interval and stay "
          "well under the CRM servers' --invalidation_heartbeat_timeout_ms");
ABSL_FLAG(int, invalidation_retention_hours, 24,
          "Hours an invalidation log entry is kept; a subscriber resuming from an older position is reset");
ABSL_FLAG(int, invalidation_purge_interval_seconds, 60, "Seconds between purges of expired invalidation log entries");
ABSL_FLAG(int, invalidation_window_entries, 10000,
          "Newest invalidation log entries kept in memory; subscribers further behind are served from the "
          "database");
ABSL_FLAG(int, api_call_retention_days, 30,
          "Days an API call log row (PrivateAppService.ListApiCalls) is kept; older rows are purged every minute");
ABSL_FLAG(int, metrics_port, -1,
          "TCP port of the Prometheus endpoint GET /metrics; -1 serves no metrics, 0 picks a free port");
ABSL_FLAG(int, default_burst_limit_per_10s, 100,
          "CrmService calls each app may make per 10-second window where the organization's policy sets no "
          "burst limit");
ABSL_FLAG(int, default_daily_limit, 250000,
          "CrmService calls all apps of an organization may make per UTC day where its policy sets no daily "
          "limit");
ABSL_FLAG(std::string, metrics_host, "", "Address of the metrics endpoint; empty means the same as --listen_host");

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
  // Exits with status 2 and a message naming the flag on an invalid value.
  crm::ValidateFlagsOrExit("auth_server",
                           {{"port", 0, 65535},
                            {"internal_port", 0, 65535},
                            {"metrics_port", -1, 65535},
                            {"invalidation_poll_interval_ms", 1, 60000},
                            {"invalidation_heartbeat_interval_ms", 10, 600000},
                            {"invalidation_retention_hours", 1, 8760},
                            {"invalidation_purge_interval_seconds", 1, 86400},
                            {"invalidation_window_entries", 1, 10000000},
                            {"api_call_retention_days", 1, 3650},
                            {"default_burst_limit_per_10s", 1, crm::kMaxBurstLimitPer10s},
                            {"default_daily_limit", 1, crm::kMaxDailyLimit}},
                           {"listen_host", "db_user"});
  crm::ConfigureLogging(absl::GetFlag(FLAGS_log_level));
  crm::LogEffectiveConfiguration("auth_server");
  int port = absl::GetFlag(FLAGS_port);
  int internal_port = absl::GetFlag(FLAGS_internal_port);
  if (internal_port == port && port != 0) {
    crm::ExitWithInvalidFlag("auth_server", "internal_port", "must differ from --port");
  }
  int window_entries = absl::GetFlag(FLAGS_invalidation_window_entries);

  // Public listener: TLS without client certificates. Internal listener:
  // the same certificate, and client certificates when a CA is given.
  crm::TlsServerFiles tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = crm::MakeServerCredentials(tls);
  if (!credentials.ok()) Fail("invalid TLS settings", credentials.status());
  tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> internal_credentials = crm::MakeServerCredentials(tls);
  if (!internal_credentials.ok()) Fail("invalid TLS settings", internal_credentials.status());
  bool loopback = crm::IsLoopbackHost(absl::GetFlag(FLAGS_listen_host));
  bool allow_plaintext = absl::GetFlag(FLAGS_allow_insecure_plaintext);
  absl::Status plaintext = crm::CheckPlaintextAllowed("the auth server", loopback || !tls.cert_file.empty(),
                                                      allow_plaintext);
  if (plaintext.ok()) {
    plaintext = crm::CheckPlaintextAllowed("the internal port without --tls_client_ca_file",
                                           loopback || !tls.client_ca_file.empty(), allow_plaintext);
  }
  if (!plaintext.ok()) Fail("refusing to start", plaintext);

  absl::StatusOr<crm::Secrets> secrets = crm::LoadSecrets(absl::GetFlag(FLAGS_key_file));
  if (!secrets.ok()) Fail("cannot load secrets", secrets.status());
  spdlog::info("loaded keys: {}", crm::DescribeSecrets(*secrets));

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
  options.internal_listen_address = ListenAddress(absl::GetFlag(FLAGS_listen_host), internal_port);
  options.credentials = *credentials;
  options.internal_credentials = *internal_credentials;
  options.invalidation_poll_interval = absl::Milliseconds(absl::GetFlag(FLAGS_invalidation_poll_interval_ms));
  options.invalidation_heartbeat_interval =
      absl::Milliseconds(absl::GetFlag(FLAGS_invalidation_heartbeat_interval_ms));
  options.invalidation_retention = absl::Hours(absl::GetFlag(FLAGS_invalidation_retention_hours));
  options.invalidation_purge_interval = absl::Seconds(absl::GetFlag(FLAGS_invalidation_purge_interval_seconds));
  options.invalidation_window_entries = static_cast<size_t>(window_entries);
  options.api_call_retention = absl::Hours(24 * absl::GetFlag(FLAGS_api_call_retention_days));
  options.metrics_host =
      absl::GetFlag(FLAGS_metrics_host).empty() ? absl::GetFlag(FLAGS_listen_host) : absl::GetFlag(FLAGS_metrics_host);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.rate_limit_defaults.burst_limit_per_10s = absl::GetFlag(FLAGS_default_burst_limit_per_10s);
  options.rate_limit_defaults.daily_limit = absl::GetFlag(FLAGS_default_daily_limit);
  absl::StatusOr<std::unique_ptr<crm::auth::AuthServer>> server =
      crm::auth::AuthServer::Start(options, pool->get(), *secrets);
  if (!server.ok()) Fail("cannot start the server", server.status());
  spdlog::info("auth server listening on {} (PrivateAppService, {}), internal {} (TokenService, {}), database {}",
               ListenAddress(absl::GetFlag(FLAGS_listen_host), (*server)->port()),
               tls.cert_file.empty() ? "plaintext" : "TLS",
               ListenAddress(absl::GetFlag(FLAGS_listen_host), (*server)->internal_port()),
               tls.cert_file.empty() ? "plaintext" : (tls.client_ca_file.empty() ? "TLS" : "mutual TLS"),
               database.database);
  if ((*server)->metrics_port() >= 0) {
    spdlog::info("metrics at http://{}/metrics", ListenAddress(options.metrics_host, (*server)->metrics_port()));
  }

  crm::WaitForShutdownSignal();
  spdlog::info("draining calls for up to {}", absl::FormatDuration(kShutdownGrace));
  crm::ExitAfter(kShutdownGrace + crm::kShutdownHardStopMargin);
  (*server)->Shutdown(kShutdownGrace);
  server->reset();
  spdlog::info("auth server stopped");
  return 0;
}
