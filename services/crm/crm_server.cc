#include "services/crm/crm_server.h"

#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "common/server_setup.h"

namespace crm::data {

absl::StatusOr<std::unique_ptr<CrmServer>> CrmServer::Start(const CrmServerOptions& options, MysqlPool* pool) {
  if (options.page_token_key.empty()) return absl::InvalidArgumentError("page_token_key is required");
  std::unique_ptr<CrmServer> server(new CrmServer());

  grpc::ChannelArguments channel_arguments;
  channel_arguments.SetLoadBalancingPolicyName("round_robin");
  if (!options.auth_tls_server_name.empty()) channel_arguments.SetSslTargetNameOverride(options.auth_tls_server_name);
  std::shared_ptr<grpc::Channel> auth_channel = grpc::CreateCustomChannel(
      options.auth_target,
      options.auth_credentials != nullptr ? options.auth_credentials : grpc::InsecureChannelCredentials(),
      channel_arguments);

  server->store_ = std::make_unique<RecordStore>(pool, PageTokenCodec(options.page_token_key));
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
  server->workers_ = std::make_unique<WorkerPool>(options.worker_threads, options.max_queued_requests);
  server->service_ = std::make_unique<CrmServiceImpl>(server->store_.get(), checker, server->workers_.get(),
                                                      server->limiter_.get(), server->usage_.get());
  server->status_service_ = std::make_unique<CrmStatusServiceImpl>(
      server->token_cache_.get(), server->watcher_.get(), server->caching_checker_.get());

  EnableHealthAndReflection();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(
      options.listen_address,
      options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->service_.get());
  builder.RegisterService(server->status_service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  server->health_monitor_ = std::make_unique<HealthMonitor>(
      "crm server", server->server_->GetHealthCheckService(), [pool] { return pool->IsReachable(); });
  return server;
}

CrmServer::~CrmServer() { Shutdown(absl::ZeroDuration()); }

void CrmServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  health_monitor_.reset();  // So that it cannot report SERVING again.
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  // Joining the workers after the server is down lets queued calls finish.
  workers_.reset();
  // Sends the last uses while the auth service may still be up.
  usage_.reset();
  watcher_.reset();
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
