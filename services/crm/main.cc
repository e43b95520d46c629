// crm_server: serves CrmService. Wiring only; see crm_server.h.
#include <cstdlib>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/database_flags.h"
#include "common/ip_allowlist.h"
#include "common/logging.h"
#include "common/migrations.h"
#include "common/secrets.h"
#include "common/server_setup.h"
#include "common/tls.h"
#include "services/crm/crm_server.h"
#include "services/crm/migrations.h"

ABSL_FLAG(std::string, listen_host, "127.0.0.1", "Address to listen on; 0.0.0.0 for every interface");
ABSL_FLAG(int, port, 50052, "TCP port of CrmService; 0 picks a free port");
ABSL_FLAG(std::string, auth_target, "127.0.0.1:50053",
          "gRPC target of the auth server's internal port, e.g. 127.0.0.1:50053 or dns:///auth:50053 (round "
          "robin)");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of the CrmService listener; empty serves plaintext, which only loopback "
          "addresses accept unless --allow_insecure_plaintext is set");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, auth_tls_ca_file, "",
          "PEM CA bundle that the auth server's certificate must chain to; set it to reach the auth server "
          "over TLS. Empty uses plaintext, which only a loopback --auth_target accepts unless "
          "--allow_insecure_plaintext is set");
ABSL_FLAG(std::string, auth_tls_cert_file, "",
          "PEM client certificate chain presented to the auth server (mutual TLS)");
ABSL_FLAG(std::string, auth_tls_key_file, "", "PEM private key of --auth_tls_cert_file");
ABSL_FLAG(std::string, auth_tls_server_name, "",
          "Name to verify the auth server's certificate against instead of the host in --auth_target");
ABSL_FLAG(bool, allow_insecure_plaintext, false,
          "Allow a plaintext listener or auth channel on a non-loopback address, for networks protected "
          "otherwise (such as a service mesh that adds mutual TLS)");
ABSL_FLAG(int, worker_threads, 16, "Threads that run database work");
ABSL_FLAG(int, max_queued_requests, 1024, "Calls that may wait for a worker before RESOURCE_EXHAUSTED");
ABSL_FLAG(int, shutdown_grace_seconds, 10,
          "Seconds that calls in flight get to finish after SIGTERM; the process exits at the latest "
          "5 seconds after that");
ABSL_FLAG(int, max_call_seconds, 30,
          "Deadline in seconds for calls that arrive without one, and the maximum deadline of any call");
ABSL_FLAG(int, max_receive_message_bytes, 4 * 1024 * 1024,
          "Largest request message in bytes; a larger one fails with RESOURCE_EXHAUSTED");
ABSL_FLAG(bool, rate_limits, true,
          "Enforce the organizations' rate limits (burst and daily) with blocks of calls from the auth server; "
          "false admits every call (for benchmarks)");
ABSL_FLAG(bool, token_cache, true,
          "Cache token checks while the invalidation stream is current; false checks every call with the "
          "auth server (for benchmarks)");
ABSL_FLAG(int, token_cache_max_entries, 100000, "Maximum cached token checks");
ABSL_FLAG(int, token_cache_max_age_seconds, 300, "Seconds after which a cached token check is dropped");
ABSL_FLAG(int, token_usage_flush_interval_seconds, 60,
          "Seconds between reports of token uses (last_used_time) to the auth server; 0 reports only at "
          "shutdown");
ABSL_FLAG(bool, api_call_log, true,
          "Record every call made with an app's token in the API call log (PrivateAppService.ListApiCalls); "
          "false records nothing");
ABSL_FLAG(int, create_request_retention_hours, 24,
          "Hours a create's request_id is kept, so that a retry within that time returns the first record; "
          "older ids are purged every minute");
ABSL_FLAG(int, invalidation_heartbeat_timeout_ms, 3000,
          "Milliseconds without a message on the invalidation stream after which the cache is not used");
ABSL_FLAG(int, metrics_port, -1,
          "TCP port of the Prometheus endpoint GET /metrics; -1 serves no metrics, 0 picks a free port");
ABSL_FLAG(std::string, client_ip_header, "",
          "Metadata header with the client address in X-Forwarded-For form, such as x-forwarded-for; read only "
          "from peers in --trusted_proxy_cidrs, for IP allowlists, last_used_peer and the API call log. Empty "
          "uses the connecting address");
ABSL_FLAG(std::string, trusted_proxy_cidrs, "",
          "Comma-separated CIDR ranges of the proxies whose --client_ip_header is believed, such as "
          "10.0.0.0/8,fd00::/8; required with --client_ip_header");
ABSL_FLAG(std::string, metrics_host, "", "Address of the metrics endpoint; empty means the same as --listen_host");

namespace {

int Fail(const absl::Status& status, absl::string_view step) {
  std::cerr << "crm_server: " << step << ": " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  crm::BlockShutdownSignals();
  crm::ParseFlagsWithEnvironment(argc, argv, "crm_server: serves crm.data.v1.CrmService. Flags also read CRM_<FLAG>.");
  // Exits with status 2 and a message naming the flag on an invalid value.
  crm::ValidateFlagsOrExit("crm_server",
                           {{"port", 0, 65535},
                            {"metrics_port", -1, 65535},
                            {"worker_threads", 1, 1024},
                            {"max_queued_requests", 1, 1000000},
                            {"shutdown_grace_seconds", 0, 3600},
                            {"token_cache_max_entries", 0, 100000000},
                            {"token_cache_max_age_seconds", 1, 86400},
                            {"invalidation_heartbeat_timeout_ms", 100, 600000},
                            {"max_call_seconds", 1, 86400},
                            {"max_receive_message_bytes", 1024, 1073741824},
                            {"token_usage_flush_interval_seconds", 0, 86400},
                            {"create_request_retention_hours", 1, 8760}},
                           {"listen_host", "auth_target", "db_user"});
  std::string client_ip_header = absl::GetFlag(FLAGS_client_ip_header);
  std::vector<std::string> trusted_proxy_cidrs =
      absl::StrSplit(absl::GetFlag(FLAGS_trusted_proxy_cidrs), ',', absl::SkipWhitespace());
  for (std::string& range : trusted_proxy_cidrs) range = std::string(absl::StripAsciiWhitespace(range));
  if (absl::Status valid = crm::data::ValidateClientIpHeader(client_ip_header); !valid.ok()) {
    crm::ExitWithInvalidFlag("crm_server", "client_ip_header", valid.message());
  }
  if (client_ip_header.empty() && !trusted_proxy_cidrs.empty()) {
    crm::ExitWithInvalidFlag("crm_server", "client_ip_header", "must be set when --trusted_proxy_cidrs is set");
  }
  if (!client_ip_header.empty() && trusted_proxy_cidrs.empty()) {
    crm::ExitWithInvalidFlag("crm_server", "trusted_proxy_cidrs", "must be set when --client_ip_header is set");
  }
  if (absl::Status valid = crm::IpAllowlist::Parse(trusted_proxy_cidrs).status(); !valid.ok()) {
    crm::ExitWithInvalidFlag("crm_server", "trusted_proxy_cidrs", valid.message());
  }
  crm::ConfigureLogging(absl::GetFlag(FLAGS_log_level));
  crm::LogEffectiveConfiguration("crm_server");

  crm::TlsServerFiles tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = crm::MakeServerCredentials(tls);
  if (!credentials.ok()) return Fail(credentials.status(), "reading the TLS settings");
  crm::TlsChannelFiles auth_tls;
  auth_tls.ca_file = absl::GetFlag(FLAGS_auth_tls_ca_file);
  auth_tls.cert_file = absl::GetFlag(FLAGS_auth_tls_cert_file);
  auth_tls.key_file = absl::GetFlag(FLAGS_auth_tls_key_file);
  auth_tls.server_name = absl::GetFlag(FLAGS_auth_tls_server_name);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> auth_credentials =
      crm::MakeChannelCredentials(auth_tls);
  if (!auth_credentials.ok()) return Fail(auth_credentials.status(), "reading the auth TLS settings");
  bool allow_plaintext = absl::GetFlag(FLAGS_allow_insecure_plaintext);
  absl::Status plaintext = crm::CheckPlaintextAllowed(
      "the CRM server", !tls.cert_file.empty() || crm::IsLoopbackHost(absl::GetFlag(FLAGS_listen_host)),
      allow_plaintext);
  if (plaintext.ok()) {
    plaintext = crm::CheckPlaintextAllowed(
        "the channel to --auth_target",
        !auth_tls.ca_file.empty() || crm::IsLoopbackTarget(absl::GetFlag(FLAGS_auth_target)), allow_plaintext);
  }
  if (!plaintext.ok()) return Fail(plaintext, "refusing to start");

  absl::StatusOr<crm::Secrets> secrets = crm::LoadSecrets(absl::GetFlag(FLAGS_key_file));
  if (!secrets.ok()) return Fail(secrets.status(), "loading secrets");
  spdlog::info("loaded keys: {}", crm::DescribeSecrets(*secrets));

  crm::MysqlOptions database = crm::MysqlOptionsFromFlags("crm_data");
  absl::StatusOr<std::unique_ptr<crm::MysqlPool>> pool = crm::MysqlPool::Create(database);
  if (!pool.ok()) return Fail(pool.status(), "connecting to the database");
  if (absl::Status status = crm::ApplyMigrations(**pool, crm::data::kMigrationLockName, crm::data::Migrations());
      !status.ok()) {
    return Fail(status, "applying schema migrations");
  }

  crm::data::CrmServerOptions options;
  options.listen_address = absl::StrCat(absl::GetFlag(FLAGS_listen_host), ":", absl::GetFlag(FLAGS_port));
  options.auth_target = absl::GetFlag(FLAGS_auth_target);
  options.credentials = *credentials;
  options.auth_credentials = *auth_credentials;
  options.auth_tls_server_name = auth_tls.server_name;
  options.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  options.max_queued_requests = static_cast<size_t>(absl::GetFlag(FLAGS_max_queued_requests));
  options.max_call_duration = absl::Seconds(absl::GetFlag(FLAGS_max_call_seconds));
  options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_receive_message_bytes);
  options.page_token_key = secrets->page_token_key;
  options.token_cache_enabled = absl::GetFlag(FLAGS_token_cache);
  options.rate_limits_enabled = absl::GetFlag(FLAGS_rate_limits);
  options.token_cache.max_entries = static_cast<size_t>(absl::GetFlag(FLAGS_token_cache_max_entries));
  options.token_cache.max_age = absl::Seconds(absl::GetFlag(FLAGS_token_cache_max_age_seconds));
  options.token_usage_flush_interval = absl::Seconds(absl::GetFlag(FLAGS_token_usage_flush_interval_seconds));
  options.api_call_log_enabled = absl::GetFlag(FLAGS_api_call_log);
  options.create_request_retention = absl::Hours(absl::GetFlag(FLAGS_create_request_retention_hours));
  options.invalidation_watcher.heartbeat_timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_invalidation_heartbeat_timeout_ms));
  options.client_ip_header = client_ip_header;
  options.trusted_proxy_cidrs = trusted_proxy_cidrs;
  options.metrics_host =
      absl::GetFlag(FLAGS_metrics_host).empty() ? absl::GetFlag(FLAGS_listen_host) : absl::GetFlag(FLAGS_metrics_host);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  absl::StatusOr<std::unique_ptr<crm::data::CrmServer>> server = crm::data::CrmServer::Start(options, pool->get());
  if (!server.ok()) return Fail(server.status(), "starting the server");

  spdlog::info("crm server listening on {}:{} ({}; database {}, auth service {} over {})",
               absl::GetFlag(FLAGS_listen_host), (*server)->port(), tls.cert_file.empty() ? "plaintext" : "TLS",
               database.database, options.auth_target,
               auth_tls.ca_file.empty() ? "plaintext" : (auth_tls.cert_file.empty() ? "TLS" : "mutual TLS"));
  if ((*server)->metrics_port() >= 0) {
    spdlog::info("metrics at http://{}:{}/metrics", options.metrics_host, (*server)->metrics_port());
  }
  crm::WaitForShutdownSignal();
  absl::Duration grace = absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  spdlog::info("draining calls for up to {}", absl::FormatDuration(grace));
  crm::ExitAfter(grace + crm::kShutdownHardStopMargin);
  (*server)->Shutdown(grace);
  spdlog::info("crm server stopped");
  return 0;
}
