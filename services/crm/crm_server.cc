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
  std::shared_ptr<grpc::Channel> auth_channel =
      grpc::CreateCustomChannel(options.auth_target, grpc::InsecureChannelCredentials(), channel_arguments);

  server->store_ = std::make_unique<RecordStore>(pool, PageTokenCodec(options.page_token_key));
  server->token_checker_ = std::make_unique<RemoteTokenChecker>(auth_channel, options.token_check_timeout);
  server->workers_ = std::make_unique<WorkerPool>(options.worker_threads, options.max_queued_requests);
  server->service_ =
      std::make_unique<CrmServiceImpl>(server->store_.get(), server->token_checker_.get(), server->workers_.get());

  EnableHealthAndReflection();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

CrmServer::~CrmServer() { Shutdown(absl::ZeroDuration()); }

void CrmServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  // Joining the workers after the server is down lets queued calls finish.
  workers_.reset();
}

}  // namespace crm::data
