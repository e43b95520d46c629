#include "services/crm/crm_server.h"

#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/server_setup.h"

namespace crm::data {
namespace {

// Request ids per purge statement, so each DELETE holds its locks briefly.
constexpr int kCreateRequestPurgeBatchRows = 1000;
// Statements per purge, so that a large backlog (the first purge after an
// upgrade) is spread over several runs and cannot hold up a shutdown long.
constexpr int kCreateRequestPurgeMaxBatches = 20;

}  // namespace

absl::StatusOr<std::unique_ptr<CrmServer>> CrmServer::Start(const CrmServerOptions& options, MysqlPool* pool) {
  if (options.page_token_key.empty()) return absl::InvalidArgumentError("page_token_key is required");
  if (options.create_request_retention <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("create_request_retention must be positive, got ",
                                                   absl::FormatDuration(options.create_request_retention)));
  }
  ClientAddressPolicy client_address;
  if (absl::Status valid = ValidateClientIpHeader(options.client_ip_header); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("client_ip_header ", valid.message()));
  }
  client_address.header = options.client_ip_header;
  absl::StatusOr<IpAllowlist> trusted_proxies = IpAllowlist::Parse(options.trusted_proxy_cidrs);
  if (!trusted_proxies.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("trusted_proxy_cidrs: ", trusted_proxies.status().message()));
  }
  if (client_address.header.empty() != trusted_proxies->empty()) {
    return absl::InvalidArgumentError("client_ip_header and trusted_proxy_cidrs must be set together");
  }
  client_address.trusted_proxies = *std::move(trusted_proxies);
  std::unique_ptr<CrmServer> server(new CrmServer());

  grpc::ChannelArguments channel_arguments;
  channel_arguments.SetLoadBalancingPolicyName("round_robin");
  if (!options.auth_tls_server_name.empty()) channel_arguments.SetSslTargetNameOverride(options.auth_tls_server_name);
  std::shared_ptr<grpc::Channel> auth_channel = grpc::CreateCustomChannel(
      options.auth_target,
      options.auth_credentials != nullptr ? options.auth_credentials : grpc::InsecureChannelCredentials(),
      channel_arguments);

  server->store_ = std::make_unique<RecordStore>(pool, PageTokenCodec(options.page_token_key));
  server->create_request_retention_ = options.create_request_retention;
  server->create_request_purge_ =
      std::make_unique<PeriodicTask>(options.create_request_purge_interval, [server = server.get()] {
        absl::StatusOr<int> purged = server->PurgeCreateRequests();
        if (!purged.ok()) spdlog::warn("request id purge failed; retrying later: {}", purged.status().message());
      });
  server->create_request_purge_->Start();
  server->remote_checker_ = std::make_unique<RemoteTokenChecker>(auth_channel, options.token_check_timeout);
  server->limiter_ = std::make_unique<CredentialLimiter>(options.credential_limiter);
  TokenChecker* checker = server->remote_checker_.get();
  server->token_cache_ = std::make_unique<TokenCache>(options.token_cache);
  if (options.token_cache_enabled) {
    server->watcher_ = std::make_unique<InvalidationWatcher>(auth_channel, server->token_cache_.get(),
                                                             options.invalidation_watcher);
    server->caching_checker_ = std::make_unique<CachingTokenChecker>(
        checker, server->token_cache_.get(), [watcher = server->watcher_.get()] { return watcher->IsCurrent(); });
    checker = server->caching_checker_.get();
    server->watcher_->Start();
  }
  server->usage_ = std::make_unique<TokenUsageRecorder>(auth_channel, options.token_usage_flush_interval);
  server->usage_->Start();
  if (options.api_call_log_enabled) {
    server->call_log_ = std::make_unique<ApiCallRecorder>(auth_channel, options.api_call_log_flush_interval);
    server->call_log_->Start();
  }
  server->workers_ = std::make_unique<WorkerPool>(options.worker_threads, options.max_queued_requests);
#ifndef CRM_BENCHMARK_SKIP_AUTH
  // The benchmark build without token checks has no app to limit.
  if (options.rate_limits_enabled) {
    server->quota_source_ = std::make_unique<RemoteQuotaSource>(auth_channel, options.quota_request_timeout);
    server->rate_limiter_ = std::make_unique<RateLimiter>(server->quota_source_.get());
  }
#endif
  server->service_ = std::make_unique<CrmServiceImpl>(server->store_.get(), checker, server->workers_.get(),
                                                      server->limiter_.get(), server->usage_.get(),
                                                      options.max_call_duration, server->call_log_.get(),
                                                      server->rate_limiter_.get(), std::move(client_address));
  server->status_service_ = std::make_unique<CrmStatusServiceImpl>(
      server->token_cache_.get(), server->watcher_.get(), server->caching_checker_.get());

  EnableHealthAndReflection();
  grpc::ServerBuilder builder;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(server->grpc_metrics_.NewInterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.AddListeningPort(
      options.listen_address,
      options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials(), &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.RegisterService(server->service_.get());
  builder.RegisterService(server->status_service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  server->health_monitor_ = std::make_unique<HealthMonitor>(
      "crm server", server->server_->GetHealthCheckService(), [pool] { return pool->IsReachable(); });

  server->AddMetrics(options, pool);
  if (options.metrics_port >= 0) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
        MetricsHttpServer::Start(options.metrics_host, options.metrics_port, &server->metrics_);
    if (!http.ok()) return http.status();
    server->metrics_http_ = *std::move(http);
  }
  return server;
}

void CrmServer::AddMetrics(const CrmServerOptions& options, MysqlPool* pool) {
  metrics_.Add([this](PrometheusText& out) { grpc_metrics_.Collect(out); });
  AddDatabasePoolMetrics(metrics_, pool);
  metrics_.Add([this, options](PrometheusText& out) {
    out.Family("crm_worker_queue_depth", "gauge", "Calls waiting for a database worker thread.");
    out.Sample("crm_worker_queue_depth", {}, static_cast<double>(workers_->QueueDepth()));
    out.Family("crm_worker_queue_capacity", "gauge",
               "Calls that may wait before RESOURCE_EXHAUSTED (--max_queued_requests).");
    out.Sample("crm_worker_queue_capacity", {}, static_cast<double>(options.max_queued_requests));
    out.Family("crm_worker_threads", "gauge", "Database worker threads (--worker_threads).");
    out.Sample("crm_worker_threads", {}, options.worker_threads);
  });
  if (call_log_ != nullptr) {
    metrics_.Add([this](PrometheusText& out) {
      out.Family("crm_api_call_log_dropped_total", "counter",
                 "API call log records dropped because the buffer was full (the auth service did not take "
                 "reports fast enough).");
      out.Sample("crm_api_call_log_dropped_total", {}, static_cast<double>(call_log_->dropped()));
      out.Family("crm_api_call_log_reported_total", "counter", "API call log records sent to the auth service.");
      out.Sample("crm_api_call_log_reported_total", {}, static_cast<double>(call_log_->reported()));
      out.Family("crm_api_call_log_buffered", "gauge",
                 "API call log records waiting for the next report to the auth service.");
      out.Sample("crm_api_call_log_buffered", {}, static_cast<double>(call_log_->buffered()));
    });
  }
  if (rate_limiter_ != nullptr) {
    metrics_.Add([this](PrometheusText& out) {
      out.Family("crm_rate_limit_quota_requests_total", "counter",
                 "AcquireQuota requests sent to the auth server for blocks of calls.");
      out.Sample("crm_rate_limit_quota_requests_total", {}, static_cast<double>(rate_limiter_->acquire_requests()));
    });
  }
  if (caching_checker_ == nullptr) return;
  metrics_.Add([this](PrometheusText& out) {
    int64_t hits = caching_checker_->hits();
    int64_t misses = caching_checker_->misses();
    out.Family("crm_token_cache_hits_total", "counter", "Token checks answered from the cache.");
    out.Sample("crm_token_cache_hits_total", {}, static_cast<double>(hits));
    out.Family("crm_token_cache_misses_total", "counter", "Token checks sent to the auth server.");
    out.Sample("crm_token_cache_misses_total", {}, static_cast<double>(misses));
    out.Family("crm_token_cache_hit_ratio", "gauge",
               "Hits divided by all token checks since start, 0 before the first check; use the counters "
               "for a rate over a window.");
    out.Sample("crm_token_cache_hit_ratio", {},
               hits + misses == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(hits + misses));
    out.Family("crm_token_cache_entries", "gauge", "Token checks held in the cache.");
    out.Sample("crm_token_cache_entries", {}, static_cast<double>(token_cache_->Size()));

    int64_t applied = watcher_->AppliedSequence();
    int64_t latest = watcher_->LatestSequence();
    absl::Time last_message = watcher_->LastMessageTime();
    out.Family("crm_invalidation_applied_sequence", "gauge", "Last invalidation log entry applied to the cache.");
    out.Sample("crm_invalidation_applied_sequence", {}, static_cast<double>(applied));
    out.Family("crm_invalidation_lag_sequences", "gauge",
               "Invalidation log entries the auth server reported that this server has not applied yet.");
    out.Sample("crm_invalidation_lag_sequences", {}, static_cast<double>(std::max<int64_t>(0, latest - applied)));
    out.Family("crm_invalidation_stream_age_seconds", "gauge",
               "Seconds since the last invalidation stream message (the auth server sends one at least every "
               "heartbeat interval); -1 before the first.");
    out.Sample("crm_invalidation_stream_age_seconds", {},
               last_message == absl::InfinitePast() ? -1.0 : absl::ToDoubleSeconds(absl::Now() - last_message));
    out.Family("crm_invalidation_stream_current", "gauge",
               "1 while the invalidation stream is current and the cache is used, else 0.");
    out.Sample("crm_invalidation_stream_current", {}, watcher_->IsCurrent() ? 1 : 0);
  });
}

absl::StatusOr<int> CrmServer::PurgeCreateRequests() {
  absl::MutexLock lock(&create_request_purge_mu_);
  int total = 0;
  for (int batch = 0; batch < kCreateRequestPurgeMaxBatches; ++batch) {
    absl::StatusOr<int> deleted =
        store_->PurgeCreateRequests(create_request_retention_, kCreateRequestPurgeBatchRows);
    if (!deleted.ok()) return deleted.status();
    total += *deleted;
    if (*deleted < kCreateRequestPurgeBatchRows) break;
  }
  if (total > 0) {
    spdlog::info("purged {} request ids older than {}", total, absl::FormatDuration(create_request_retention_));
  }
  return total;
}

CrmServer::~CrmServer() { Shutdown(absl::ZeroDuration()); }

void CrmServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  // The metrics read the workers and the watcher, which go below.
  metrics_http_.reset();
  health_monitor_.reset();  // So that it cannot report SERVING again.
  // Null when Start() failed to listen.
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  }
  // Joining the workers after the server is down lets queued calls finish.
  workers_.reset();
  // Sends the last uses and calls while the auth service may still be up.
  usage_.reset();
  call_log_.reset();
  watcher_.reset();
  // Last, because a purge that is running finishes its batch first.
  create_request_purge_.reset();
}

grpc::Status CrmStatusServiceImpl::GetServerStatus(grpc::ServerContext* context,
                                                   const crm::data::v1::GetServerStatusRequest* request,
                                                   crm::data::v1::GetServerStatusResponse* response) {
  if (watcher_ == nullptr) {
    response->set_watch_state(crm::data::v1::WATCH_STATE_DISCONNECTED);
    return grpc::Status::OK;
  }
  response->set_applied_invalidation_sequence(watcher_->AppliedSequence());
  response->set_latest_invalidation_sequence(watcher_->LatestSequence());
  response->set_watch_state(watcher_->State());
  response->set_cached_tokens(static_cast<int64_t>(cache_->Size()));
  response->set_cache_bytes(static_cast<int64_t>(cache_->ApproximateBytes()));
  response->set_cache_hits(checker_->hits());
  response->set_cache_misses(checker_->misses());
  return grpc::Status::OK;
}

}  // namespace crm::data
