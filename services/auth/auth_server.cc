#include "services/auth/auth_server.h"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/error_details.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/server_setup.h"
#include "common/text.h"
#include "common/token.h"
#include "services/auth/parse_error_interceptor.h"

namespace crm::auth {
namespace {

// Maximum time a change's response waits for this instance's tailer to read
// the change's log entry and offer it to the open streams. Waiting means
// that subscribers of this instance usually receive the entry before the
// caller receives the response. A slow or failing read delays the response
// by at most this bound, and the entry is still streamed once it is read.
constexpr absl::Duration kMaxPublishWait = absl::Milliseconds(200);

// Deadline of calls that arrive without one, and the maximum of any call's
// deadline; their database statements end by then.
constexpr absl::Duration kMaxCallDuration = absl::Seconds(30);

// API call log rows per purge statement, so each DELETE holds its locks
// briefly.
constexpr int kApiCallPurgeBatchRows = 1000;

// Escapes backslashes, double quotes and control characters, so a message
// that repeats request text stays on one log line and inside its quotes.
std::string EscapeForLog(absl::string_view text) {
  std::string escaped;
  for (char c : text) {
    unsigned char byte = static_cast<unsigned char>(c);
    if (c == '\\' || c == '"') {
      escaped.push_back('\\');
      escaped.push_back(c);
    } else if (byte < 0x20 || byte == 0x7F) {
      absl::StrAppend(&escaped, "\\x", absl::Hex(byte, absl::kZeroPad2));
    } else {
      escaped.push_back(c);
    }
  }
  return escaped;
}

// Collects what the per-call log line shows and writes it when the call
// finishes.
class CallLog {
 public:
  CallLog(absl::string_view method, const grpc::ServerContext& context)
      : method_(method),
        peer_(context.peer()),
        start_(absl::Now()),
        database_deadline_(std::min(absl::FromChrono(context.deadline()), start_ + kMaxCallDuration)) {}

  void set_organization_id(uint64_t id) { organization_id_ = absl::StrCat(id); }

  // Records the app id only when it is a well-formed id, so a request field
  // never writes arbitrary text into the log.
  void set_app_id(absl::string_view id) {
    if (ParseId("id", id).ok()) app_id_ = std::string(id);
  }

  // Logs the call and returns its status for gRPC.
  grpc::Status Finish(const absl::Status& status) {
    grpc::Status result = ToGrpcStatus(status, kAuthErrorDomain);
    double latency_ms = absl::ToDoubleMilliseconds(absl::Now() - start_);
    // Codes that point at the server or the database, not at the caller.
    bool server_fault = absl::IsInternal(status) || absl::IsUnavailable(status) || absl::IsDataLoss(status) ||
                        absl::IsUnknown(status) || absl::IsDeadlineExceeded(status);
    spdlog::log(server_fault ? spdlog::level::warn : spdlog::level::info,
                "rpc method={} code={} latency_ms={:.2f} organization_id={} app_id={} peer={}{}", method_,
                StatusCodeName(result.error_code()), latency_ms, organization_id_, app_id_, peer_,
                status.ok() ? "" : absl::StrCat(" message=\"", EscapeForLog(status.message()), "\""));
    return result;
  }

  template <typename Response>
  grpc::Status Finish(absl::StatusOr<Response> result, Response* response) {
    if (result.ok()) *response = *std::move(result);
    return Finish(result.status());
  }

 private:
  const absl::string_view method_;
  const std::string peer_;
  const absl::Time start_;
  // Bounds the call's database work by its deadline while the call runs.
  DatabaseDeadlineScope database_deadline_;
  std::string organization_id_ = "-";
  std::string app_id_ = "-";
};

}  // namespace

absl::StatusOr<AdminCaller> PrivateAppServiceImpl::AuthenticateAdmin(const grpc::ServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto [first, end] = metadata.equal_range("authorization");
  if (first != end && std::next(first) != end) {
    return WithErrorInfo(absl::UnauthenticatedError("send exactly one authorization metadata entry"),
                         ErrorReason::kAdminKeyMalformed);
  }
  absl::string_view header =
      first == end ? absl::string_view() : absl::string_view(first->second.data(), first->second.size());
  absl::string_view admin_key;
  absl::Status parsed = ParseBearer(header, TokenKind::kAdminKey, &admin_key);
  if (!parsed.ok()) return parsed;

  std::string peer = PeerAddress(context.peer());
  spdlog::trace("checking admin key {} from {}", TokenHint(admin_key), peer);
  if (!limiter_->Allow(peer, admin_key)) {
    spdlog::debug("admin key lookup rejected: too many failed lookups from {} or for {}", peer,
                  TokenHint(admin_key));
    return InvalidAdminKeyError();
  }
  absl::StatusOr<AdminCaller> caller = store_->AuthenticateAdmin(admin_key);
  if (absl::IsUnauthenticated(caller.status())) {
    limiter_->RecordFailure(peer, admin_key);
    return InvalidAdminKeyError();
  }
  return caller;
}

grpc::Status PrivateAppServiceImpl::CreatePrivateApp(grpc::ServerContext* context,
                                                     const v1::CreatePrivateAppRequest* request,
                                                     v1::CreatePrivateAppResponse* response) {
  CallLog log("PrivateAppService/CreatePrivateApp", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);

  absl::StatusOr<v1::CreatePrivateAppResponse> result = store_->CreatePrivateApp(*caller, *request);
  if (result.ok()) log.set_app_id(result->private_app().id());
  return log.Finish(std::move(result), response);
}

grpc::Status PrivateAppServiceImpl::GetPrivateApp(grpc::ServerContext* context,
                                                  const v1::GetPrivateAppRequest* request,
                                                  v1::GetPrivateAppResponse* response) {
  CallLog log("PrivateAppService/GetPrivateApp", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  log.set_app_id(request->id());
  return log.Finish(store_->GetPrivateApp(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::ListPrivateApps(grpc::ServerContext* context,
                                                    const v1::ListPrivateAppsRequest* request,
                                                    v1::ListPrivateAppsResponse* response) {
  CallLog log("PrivateAppService/ListPrivateApps", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  return log.Finish(store_->ListPrivateApps(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::UpdatePrivateApp(grpc::ServerContext* context,
                                                     const v1::UpdatePrivateAppRequest* request,
                                                     v1::UpdatePrivateAppResponse* response) {
  CallLog log("PrivateAppService/UpdatePrivateApp", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  log.set_app_id(request->private_app().id());
  return log.Finish(store_->UpdatePrivateApp(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::DeletePrivateApp(grpc::ServerContext* context,
                                                     const v1::DeletePrivateAppRequest* request,
                                                     v1::DeletePrivateAppResponse* response) {
  CallLog log("PrivateAppService/DeletePrivateApp", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  log.set_app_id(request->id());
  return log.Finish(store_->DeletePrivateApp(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::GetAccessToken(grpc::ServerContext* context,
                                                   const v1::GetAccessTokenRequest* request,
                                                   v1::GetAccessTokenResponse* response) {
  CallLog log("PrivateAppService/GetAccessToken", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  log.set_app_id(request->id());
  return log.Finish(store_->GetAccessToken(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::RotateAccessToken(grpc::ServerContext* context,
                                                      const v1::RotateAccessTokenRequest* request,
                                                      v1::RotateAccessTokenResponse* response) {
  CallLog log("PrivateAppService/RotateAccessToken", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  log.set_app_id(request->id());
  return log.Finish(store_->RotateAccessToken(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::EndAccessTokenOverlap(grpc::ServerContext* context,
                                                          const v1::EndAccessTokenOverlapRequest* request,
                                                          v1::EndAccessTokenOverlapResponse* response) {
  CallLog log("PrivateAppService/EndAccessTokenOverlap", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  log.set_app_id(request->id());
  return log.Finish(store_->EndAccessTokenOverlap(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::CancelAccessTokenRotation(grpc::ServerContext* context,
                                                              const v1::CancelAccessTokenRotationRequest* request,
                                                              v1::CancelAccessTokenRotationResponse* response) {
  CallLog log("PrivateAppService/CancelAccessTokenRotation", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  log.set_app_id(request->id());
  return log.Finish(store_->CancelAccessTokenRotation(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::ListAuditEvents(grpc::ServerContext* context,
                                                    const v1::ListAuditEventsRequest* request,
                                                    v1::ListAuditEventsResponse* response) {
  CallLog log("PrivateAppService/ListAuditEvents", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  log.set_app_id(request->app_id());
  return log.Finish(store_->ListAuditEvents(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::GetOrganizationPolicy(grpc::ServerContext* context,
                                                          const v1::GetOrganizationPolicyRequest* request,
                                                          v1::GetOrganizationPolicyResponse* response) {
  CallLog log("PrivateAppService/GetOrganizationPolicy", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  return log.Finish(store_->GetOrganizationPolicy(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::UpdateOrganizationPolicy(grpc::ServerContext* context,
                                                             const v1::UpdateOrganizationPolicyRequest* request,
                                                             v1::UpdateOrganizationPolicyResponse* response) {
  CallLog log("PrivateAppService/UpdateOrganizationPolicy", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  return log.Finish(store_->UpdateOrganizationPolicy(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::ListApiCalls(grpc::ServerContext* context,
                                                 const v1::ListApiCallsRequest* request,
                                                 v1::ListApiCallsResponse* response) {
  CallLog log("PrivateAppService/ListApiCalls", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  log.set_app_id(request->app_id());
  return log.Finish(api_calls_->List(*caller, *request), response);
}

grpc::Status PrivateAppServiceImpl::GetApiUsage(grpc::ServerContext* context, const v1::GetApiUsageRequest* request,
                                                v1::GetApiUsageResponse* response) {
  CallLog log("PrivateAppService/GetApiUsage", *context);
  absl::StatusOr<AdminCaller> caller = AuthenticateAdmin(*context);
  if (!caller.ok()) return log.Finish(caller.status());
  log.set_organization_id(caller->organization_id);
  return log.Finish(store_->GetApiUsage(*caller, *request), response);
}

grpc::Status TokenServiceImpl::AcquireQuota(grpc::ServerContext* context, const v1::AcquireQuotaRequest* request,
                                            v1::AcquireQuotaResponse* response) {
  CallLog log("TokenService/AcquireQuota", *context);
  absl::StatusOr<uint64_t> organization_id = ParseId("organization_id", request->organization_id());
  if (!organization_id.ok()) return log.Finish(organization_id.status());
  absl::StatusOr<uint64_t> app_id = ParseId("app_id", request->app_id());
  if (!app_id.ok()) return log.Finish(app_id.status());
  log.set_organization_id(*organization_id);
  log.set_app_id(request->app_id());
  if (request->max_calls() < 0) {
    return log.Finish(InvalidFieldError("max_calls", absl::StrCat("max_calls must not be negative; got ",
                                                                  request->max_calls())));
  }

  absl::StatusOr<QuotaBlock> grant = store_->AcquireQuota(*organization_id, *app_id, request->max_calls());
  if (!grant.ok()) return log.Finish(grant.status());
  response->set_granted_calls(grant->granted_calls);
  *response->mutable_window_remaining() = google::protobuf::util::TimeUtil::MicrosecondsToDuration(
      absl::ToInt64Microseconds(grant->window_remaining));
  *response->mutable_day_remaining() =
      google::protobuf::util::TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(grant->day_remaining));
  response->set_burst_limit_per_10s(grant->burst_limit_per_10s);
  response->set_daily_limit(grant->daily_limit);
  switch (grant->limit_reached) {
    case QuotaLimitKind::kNone:
      response->set_limit_reached(v1::QUOTA_LIMIT_UNSPECIFIED);
      break;
    case QuotaLimitKind::kBurst:
      response->set_limit_reached(v1::QUOTA_LIMIT_BURST);
      break;
    case QuotaLimitKind::kDaily:
      response->set_limit_reached(v1::QUOTA_LIMIT_DAILY);
      break;
  }
  return log.Finish(absl::OkStatus());
}

grpc::Status TokenServiceImpl::CheckToken(grpc::ServerContext* context, const v1::CheckTokenRequest* request,
                                          v1::CheckTokenResponse* response) {
  CallLog log("TokenService/CheckToken", *context);
  spdlog::trace("checking token {} for {}", TokenHint(request->token()), context->peer());
  // The peer is a CRM server that checks tokens for many clients, so only
  // the token prefix is limited here. The CRM server limits per client.
  if (!request->token().empty() && !limiter_->Allow("", request->token())) {
    spdlog::debug("token lookup rejected: too many failed lookups for {}", TokenHint(request->token()));
    return log.Finish(InvalidAccessTokenError());
  }
  absl::StatusOr<TokenClaims> claims = store_->CheckToken(request->token());
  if (absl::IsUnauthenticated(claims.status())) {
    limiter_->RecordFailure("", request->token());
    return log.Finish(InvalidAccessTokenError());
  }
  if (!claims.ok()) return log.Finish(claims.status());

  log.set_organization_id(claims->organization_id);
  log.set_app_id(absl::StrCat(claims->app_id));
  response->set_organization_id(absl::StrCat(claims->organization_id));
  response->set_app_id(absl::StrCat(claims->app_id));
  ScopeMaskToProto(claims->scopes, response->mutable_scopes());
  response->set_invalidation_sequence(claims->invalidation_sequence);
  response->set_token_id(absl::StrCat(claims->token_id));
  for (const std::string& range : claims->ip_allowlist) response->add_ip_allowlist(range);
  if (claims->expire_time != absl::InfiniteFuture()) {
    *response->mutable_expire_time() =
        google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(claims->expire_time));
  }
  return log.Finish(absl::OkStatus());
}

grpc::Status TokenServiceImpl::ReportTokenUsage(grpc::ServerContext* context,
                                                const v1::ReportTokenUsageRequest* request,
                                                v1::ReportTokenUsageResponse* response) {
  CallLog log("TokenService/ReportTokenUsage", *context);
  return log.Finish(store_->ReportTokenUsage(*request));
}

grpc::Status TokenServiceImpl::ReportApiCalls(grpc::ServerContext* context, const v1::ReportApiCallsRequest* request,
                                              v1::ReportApiCallsResponse* response) {
  CallLog log("TokenService/ReportApiCalls", *context);
  return log.Finish(api_calls_->Report(*request));
}

grpc::ServerWriteReactor<v1::WatchInvalidationsResponse>* TokenServiceImpl::WatchInvalidations(
    grpc::CallbackServerContext* context, const v1::WatchInvalidationsRequest* request) {
  return streams_->Open(context, *request);
}

namespace {

InvalidationTailerOptions TailerOptions(const AuthServerOptions& options) {
  InvalidationTailerOptions tailer;
  tailer.poll_interval = options.invalidation_poll_interval;
  tailer.window_entries = options.invalidation_window_entries;
  tailer.retention = options.invalidation_retention;
  tailer.purge_interval = options.invalidation_purge_interval;
  tailer.clock = options.clock;
  return tailer;
}

absl::Status ValidateInvalidationOptions(const AuthServerOptions& options) {
  if (options.invalidation_poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the invalidation poll interval must be positive, got ",
                     absl::FormatDuration(options.invalidation_poll_interval)));
  }
  if (options.invalidation_heartbeat_interval <= options.invalidation_poll_interval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the invalidation heartbeat interval (", absl::FormatDuration(options.invalidation_heartbeat_interval),
        ") must be longer than the poll interval (", absl::FormatDuration(options.invalidation_poll_interval),
        ")"));
  }
  if (options.invalidation_retention <= absl::ZeroDuration() ||
      options.invalidation_purge_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the invalidation retention and purge interval must be positive, got ",
                     absl::FormatDuration(options.invalidation_retention), " and ",
                     absl::FormatDuration(options.invalidation_purge_interval)));
  }
  if (options.api_call_retention <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("the API call retention must be positive, got ",
                                                   absl::FormatDuration(options.api_call_retention)));
  }
  if (options.invalidation_window_entries < 1) {
    return absl::InvalidArgumentError("the invalidation window must hold at least 1 entry");
  }
  const RateLimitDefaults& limits = options.rate_limit_defaults;
  if (limits.burst_limit_per_10s < 1 || limits.burst_limit_per_10s > kMaxBurstLimitPer10s ||
      limits.daily_limit < 1 || limits.daily_limit > kMaxDailyLimit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the default burst limit must be from 1 to ", kMaxBurstLimitPer10s, " and the default daily limit from 1 to ",
        kMaxDailyLimit, ", got ", limits.burst_limit_per_10s, " and ", limits.daily_limit));
  }
  return absl::OkStatus();
}

}  // namespace

AuthServer::AuthServer(MysqlPool* pool, const Secrets& secrets, const AuthServerOptions& options)
    : store_(
          pool, secrets, options.random, options.clock,
          [this](int64_t sequence) {
            if (!tailer_.WakeAndAwait(sequence, kMaxPublishWait)) {
              spdlog::debug("invalidation {} not yet streamed after {}; responding anyway", sequence,
                            absl::FormatDuration(kMaxPublishWait));
            }
          },
          options.rate_limit_defaults),
      limiter_(options.credential_limiter),
      api_calls_(pool, secrets.page_token_key),
      tailer_(&store_, TailerOptions(options)),
      streams_(&store_, &tailer_, options.invalidation_heartbeat_interval),
      private_apps_(&store_, &limiter_, &api_calls_),
      tokens_(&store_, &api_calls_, &streams_, &limiter_),
      api_call_retention_(options.api_call_retention),
      clock_(options.clock),
      api_call_purge_(options.api_call_purge_interval, [this] {
        absl::StatusOr<int> purged = PurgeApiCalls();
        if (!purged.ok()) spdlog::warn("API call log purge failed; retrying later: {}", purged.status().message());
      }) {}

absl::StatusOr<int> AuthServer::PurgeApiCalls() {
  absl::MutexLock lock(&api_call_purge_mu_);
  absl::Time cutoff = clock_() - api_call_retention_;
  int total = 0;
  while (true) {
    absl::StatusOr<int> deleted = api_calls_.Purge(cutoff, kApiCallPurgeBatchRows);
    if (!deleted.ok()) return deleted.status();
    total += *deleted;
    if (*deleted < kApiCallPurgeBatchRows) break;
  }
  if (total > 0) {
    spdlog::info("purged {} API call log rows received before {}", total,
                 absl::FormatTime(absl::RFC3339_sec, cutoff, absl::UTCTimeZone()));
  }
  return total;
}

absl::StatusOr<std::unique_ptr<AuthServer>> AuthServer::Start(const AuthServerOptions& options,
                                                              MysqlPool* pool, const Secrets& secrets) {
  absl::Status valid = ValidateInvalidationOptions(options);
  if (!valid.ok()) return valid;
  EnableHealthAndReflection();
  std::unique_ptr<AuthServer> auth_server(new AuthServer(pool, secrets, options));
  AuthServer* started = auth_server.get();
  started->tailer_.Start([started] { started->streams_.SendDue(); });
  started->api_call_purge_.Start();

  auto credentials_or_plaintext = [](const std::shared_ptr<grpc::ServerCredentials>& credentials) {
    return credentials != nullptr ? credentials : grpc::InsecureServerCredentials();
  };
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, credentials_or_plaintext(options.credentials),
                           &auth_server->port_);
  // gRPC sets SO_REUSEPORT by default, which lets a second server bind a
  // port already in use and share its calls; a clash must fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  builder.experimental().SetInterceptorCreators(auth_server->NewInterceptorFactories());
  builder.RegisterService(&auth_server->private_apps_);
  auth_server->server_ = builder.BuildAndStart();
  if (auth_server->server_ == nullptr || auth_server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address,
                                               "; is the address valid and the port free?"));
  }

  // A separate server, because gRPC serves every registered service on
  // every port of one server.
  grpc::ServerBuilder internal_builder;
  internal_builder.AddListeningPort(options.internal_listen_address,
                                    credentials_or_plaintext(options.internal_credentials),
                                    &auth_server->internal_port_);
  internal_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  internal_builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  internal_builder.experimental().SetInterceptorCreators(auth_server->NewInterceptorFactories());
  internal_builder.RegisterService(&auth_server->tokens_);
  auth_server->internal_server_ = internal_builder.BuildAndStart();
  if (auth_server->internal_server_ == nullptr || auth_server->internal_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.internal_listen_address,
                                               " (internal port); is the address valid and the port free?"));
  }

  if (grpc::HealthCheckServiceInterface* health = auth_server->server_->GetHealthCheckService()) {
    health->SetServingStatus(v1::PrivateAppService::service_full_name(), true);
    auth_server->health_monitor_ =
        std::make_unique<HealthMonitor>("auth server", health, [pool] { return pool->IsReachable(); });
  }
  if (grpc::HealthCheckServiceInterface* health = auth_server->internal_server_->GetHealthCheckService()) {
    health->SetServingStatus(v1::TokenService::service_full_name(), true);
    auth_server->internal_health_monitor_ =
        std::make_unique<HealthMonitor>("auth internal listener", health, [pool] { return pool->IsReachable(); });
  }

  started->metrics_.Add([started](PrometheusText& out) { started->grpc_metrics_.Collect(out); });
  AddDatabasePoolMetrics(started->metrics_, pool);
  started->metrics_.Add([started](PrometheusText& out) {
    out.Family("crm_invalidation_streams", "gauge", "Open WatchInvalidations streams (one per CRM server).");
    out.Sample("crm_invalidation_streams", {}, static_cast<double>(started->streams_.Count()));
  });
  if (options.metrics_port >= 0) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
        MetricsHttpServer::Start(options.metrics_host, options.metrics_port, &started->metrics_);
    if (!http.ok()) return http.status();
    started->metrics_http_ = *std::move(http);
  }
  return auth_server;
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
AuthServer::NewInterceptorFactories() {
  // The parse error interceptor comes first, so the metrics count the code
  // it sets.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<ParseErrorInterceptorFactory>());
  interceptors.push_back(grpc_metrics_.NewInterceptorFactory());
  return interceptors;
}

AuthServer::~AuthServer() {
  if (server_ != nullptr) Shutdown();
}

void AuthServer::Shutdown(absl::Duration grace) {
  if (shut_down_.exchange(true)) return;
  metrics_http_.reset();
  // So that they cannot report SERVING again.
  health_monitor_.reset();
  internal_health_monitor_.reset();
  for (grpc::Server* server : {server_.get(), internal_server_.get()}) {
    if (server == nullptr) continue;
    if (grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService()) {
      health->SetServingStatus(false);
    }
  }
  // Streams never end on their own, so end them first; otherwise the server
  // would wait the whole grace period and then cancel them.
  streams_.Shutdown();
  auto deadline = std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace);
  server_->Shutdown(deadline);
  if (internal_server_ != nullptr) internal_server_->Shutdown(deadline);
  server_->Wait();
  if (internal_server_ != nullptr) internal_server_->Wait();
  tailer_.Stop();
  api_call_purge_.Stop();
}

}  // namespace crm::auth
