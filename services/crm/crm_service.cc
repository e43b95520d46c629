#include "services/crm/crm_service.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/error_details.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/text.h"
#include "common/token.h"
#include "crm/data/v1/annotations.pb.h"
#include "crm/data/v1/crm_service.pb.h"
#include "google/protobuf/message.h"

namespace crm::data {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::MessageFactory;
using google::protobuf::MethodDescriptor;

struct StandardMethodName {
  absl::string_view prefix;
  StandardMethod standard_method;
  crm::auth::v1::Action action;
};

// Custom methods (AIP-136), matched by full name. The first required scope
// names the module and action the method acts on.
struct CustomMethodName {
  absl::string_view name;
  StandardMethod standard_method;
  crm::auth::v1::Module module;
  crm::auth::v1::Action action;
};

constexpr CustomMethodName kCustomMethods[] = {
    {"ConvertLead", StandardMethod::kConvertLead, crm::auth::v1::MODULE_LEAD, crm::auth::v1::ACTION_UPDATE},
};

constexpr absl::string_view kGetTokenInfoName = "GetTokenInfo";

constexpr StandardMethodName kStandardMethods[] = {
    {"Create", StandardMethod::kCreate, crm::auth::v1::ACTION_CREATE},
    {"Get", StandardMethod::kGet, crm::auth::v1::ACTION_READ},
    {"List", StandardMethod::kList, crm::auth::v1::ACTION_READ},
    {"Update", StandardMethod::kUpdate, crm::auth::v1::ACTION_UPDATE},
    {"Delete", StandardMethod::kDelete, crm::auth::v1::ACTION_DELETE},
};

const FieldDescriptor* Field(const Message& message, absl::string_view name) {
  return message.GetDescriptor()->FindFieldByName(std::string(name));
}

// The first field of a request or response: the resource for Create, Update
// and every response but Delete's; the repeated resource for List.
const FieldDescriptor* ResourceField(const Message& message) { return message.GetDescriptor()->field(0); }

absl::Status ResourceRequired(const Message& request) {
  const std::string& name = ResourceField(request)->name();
  return InvalidFieldError(name, absl::StrCat(name, " is required"));
}

// The scopes of `mask` as "LEAD:READ" names joined by `separator`.
std::string ScopeList(ScopeMask mask, absl::string_view separator) {
  google::protobuf::RepeatedPtrField<crm::auth::v1::Scope> scopes;
  ScopeMaskToProto(mask, &scopes);
  std::string list;
  for (const crm::auth::v1::Scope& scope : scopes) {
    absl::StrAppend(&list, list.empty() ? "" : separator, ScopeName(scope.module(), scope.action()));
  }
  return list;
}

void SerializeToByteBuffer(const Message& message, grpc::ByteBuffer* out) {
  std::string bytes = message.SerializeAsString();
  grpc::Slice slice(std::move(bytes));
  *out = grpc::ByteBuffer(&slice, 1);
}

}  // namespace

// One call in flight: kept alive by shared_ptr until the reactor finishes.
struct CrmServiceImpl::Call {
  const MethodSpec* spec;
  grpc::CallbackServerContext* context;
  grpc::ServerUnaryReactor* reactor;
  const grpc::ByteBuffer* request_bytes;
  grpc::ByteBuffer* response_bytes;
  absl::Time start;
  absl::Time deadline;
  // The client address under the server's ClientAddressPolicy, found once
  // for the failed-check limiter, the IP allowlist and the records.
  absl::StatusOr<IpAddress> client = absl::UnknownError("client address not resolved");
  Claims claims;
  // The text of `client` for the limiter and the records. Behind a trusted
  // proxy whose header does not parse, it is the proxy's address, and it
  // is empty for a unix socket peer.
  std::string client_address;
  // Null when the API call log is off.
  ApiCallRecorder* call_log = nullptr;

  void Finish(const absl::Status& status) {
    grpc::Status grpc_status = ToGrpcStatus(status, kDataErrorDomain);
    absl::Duration latency = absl::Now() - start;
    double latency_ms = absl::ToDoubleMilliseconds(latency);
    std::string peer = context->peer();
    if (status.ok() || claims.organization_id != 0) {
      spdlog::info("rpc method={} code={} latency_ms={:.3f} organization_id={} app_id={} peer={} client={}",
                   spec->path, StatusCodeName(grpc_status.error_code()), latency_ms, claims.organization_id,
                   claims.app_id, peer, client_address);
    } else {
      spdlog::info("rpc method={} code={} latency_ms={:.3f} peer={} error=\"{}\"", spec->path,
                   StatusCodeName(grpc_status.error_code()), latency_ms, peer, status.message());
    }
    // Only calls whose token resolved to an app have claims; calls
    // rejected by the token check belong to no app and are not recorded.
    if (call_log != nullptr && claims.app_id != 0) {
      call_log->Record(RecordedApiCall{.organization_id = claims.organization_id,
                                       .app_id = claims.app_id,
                                       .method = spec->path,
                                       .code = static_cast<int>(grpc_status.error_code()),
                                       .call_time = start,
                                       .latency = latency,
                                       .peer_address = client_address});
    }
    reactor->Finish(grpc_status);
  }
};

absl::StatusOr<MethodSpec> SpecForMethod(const MethodDescriptor* method) {
  MethodSpec spec;
  spec.method = method;
  spec.path = absl::StrCat("/", method->service()->full_name(), "/", method->name());

  int scope_count = method->options().ExtensionSize(crm::data::v1::required_scopes);
  if (method->options().GetExtension(crm::data::v1::no_scope_required)) {
    if (scope_count != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(method->full_name(), " sets both no_scope_required and required_scopes"));
    }
    // Only a method that reads nothing but the token's own claims may go
    // without a scope.
    if (method->name() != kGetTokenInfoName) {
      return absl::InvalidArgumentError(
          absl::StrCat(method->full_name(), " sets no_scope_required, which only GetTokenInfo may set"));
    }
    spec.standard_method = StandardMethod::kGetTokenInfo;
    return spec;
  }
  if (scope_count == 0) {
    return absl::InvalidArgumentError(absl::StrCat(method->full_name(), " declares no required_scopes"));
  }
  for (int i = 0; i < scope_count; ++i) {
    const crm::auth::v1::Scope& scope = method->options().GetExtension(crm::data::v1::required_scopes, i);
    if (scope.module() == crm::auth::v1::MODULE_UNSPECIFIED || scope.action() == crm::auth::v1::ACTION_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat(method->full_name(), " declares an unspecified scope"));
    }
    spec.required_scopes |= ScopeBit(scope.module(), scope.action());
  }

  const crm::auth::v1::Scope& primary = method->options().GetExtension(crm::data::v1::required_scopes, 0);
  spec.schema = SchemaForModule(primary.module());
  for (const CustomMethodName& name : kCustomMethods) {
    if (method->name() != name.name) continue;
    if (primary.module() != name.module || primary.action() != name.action) {
      return absl::InvalidArgumentError(absl::StrCat(method->full_name(), " must declare ",
                                                     ScopeName(name.module, name.action), " as its first scope"));
    }
    spec.standard_method = name.standard_method;
    return spec;
  }
  for (const StandardMethodName& name : kStandardMethods) {
    if (!absl::StartsWith(method->name(), name.prefix)) continue;
    if (primary.action() != name.action) {
      return absl::InvalidArgumentError(absl::StrCat(method->full_name(), " is a ", name.prefix,
                                                     " method but its first required scope has another action"));
    }
    spec.standard_method = name.standard_method;
    return spec;
  }
  return absl::InvalidArgumentError(absl::StrCat(method->full_name(), " is neither a standard nor a known custom method"));
}

absl::Status ValidateClientIpHeader(absl::string_view header) {
  if (header.empty()) return absl::OkStatus();
  bool valid_characters = std::all_of(header.begin(), header.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_' || c == '.';
  });
  if (!valid_characters) {
    return absl::InvalidArgumentError(
        "must be a lower-case gRPC metadata key of letters, digits, '-', '_' and '.', such as x-forwarded-for");
  }
  if (absl::EndsWith(header, "-bin") || absl::StartsWith(header, "grpc-")) {
    return absl::InvalidArgumentError("must not be a binary (-bin) or reserved (grpc-) metadata key");
  }
  return absl::OkStatus();
}

absl::StatusOr<IpAddress> ClientAddress(const ClientAddressPolicy& policy, absl::string_view grpc_peer,
                                        const std::vector<absl::string_view>& header_values) {
  absl::StatusOr<IpAddress> peer = ParseGrpcPeerAddress(grpc_peer);
  if (!peer.ok()) return peer.status();
  if (policy.header.empty()) return peer;
  return ResolveClientAddress(*peer, header_values, policy.trusted_proxies);
}

CrmServiceImpl::CrmServiceImpl(RecordStore* store, TokenChecker* token_checker, WorkerPool* workers,
                               CredentialLimiter* limiter, TokenUsageRecorder* usage,
                               absl::Duration max_call_duration, ApiCallRecorder* call_log,
                               RateLimiter* rate_limiter, ClientAddressPolicy client_address)
    : store_(store),
      token_checker_(token_checker),
      workers_(workers),
      usage_(usage),
      limiter_(limiter),
      call_log_(call_log),
      rate_limiter_(rate_limiter),
      max_call_duration_(max_call_duration),
      client_address_(std::move(client_address)) {
  const google::protobuf::ServiceDescriptor* service =
      crm::data::v1::CreateLeadRequest::descriptor()->file()->FindServiceByName("CrmService");
  specs_.reserve(service->method_count());
  for (int i = 0; i < service->method_count(); ++i) {
    absl::StatusOr<MethodSpec> spec = SpecForMethod(service->method(i));
    if (!spec.ok()) {
      spdlog::critical("cannot serve CrmService: {}", spec.status().message());
      std::abort();
    }
    specs_.push_back(*std::move(spec));
  }
  // The generated base class registers the methods in descriptor order;
  // replacing each with a raw handler routes every one through Handle().
  for (int i = 0; i < service->method_count(); ++i) {
    MarkMethodRawCallback(i, new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, grpc::ByteBuffer>(
                                 [this, i](grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) {
                                   return Handle(specs_[i], context, request, response);
                                 }));
  }
}

grpc::ServerUnaryReactor* CrmServiceImpl::Handle(const MethodSpec& spec, grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  auto call = std::make_shared<Call>();
  call->spec = &spec;
  call->context = context;
  call->reactor = context->DefaultReactor();
  call->request_bytes = request;
  call->response_bytes = response;
  call->call_log = call_log_;
  call->start = absl::Now();
  // A call without a deadline, or with a longer one, gets max_call_duration_,
  // so a stuck database cannot hold it and its worker forever.
  call->deadline = std::min(absl::FromChrono(context->deadline()), call->start + max_call_duration_);
  call->client = CallClientAddress(*call);
  if (call->client.ok()) {
    call->client_address = call->client->ToString();
  } else if (absl::StatusOr<IpAddress> peer = ParseGrpcPeerAddress(context->peer()); peer.ok()) {
    call->client_address = peer->ToString();
  }

  std::string token;
  auto header = context->client_metadata().find("authorization");
  absl::string_view credential;
  absl::Status bearer = ParseBearer(
      header == context->client_metadata().end() ? absl::string_view()
                                                 : absl::string_view(header->second.data(), header->second.size()),
      TokenKind::kAppToken, &credential);
  if (!bearer.ok()) {
    call->Finish(bearer);
    return call->reactor;
  }
  token = std::string(credential);
  grpc::ServerUnaryReactor* reactor = call->reactor;
#ifdef CRM_BENCHMARK_SKIP_AUTH
  // Benchmark-only build (crm_server_noauth, for tools/bench.sh): skips the
  // token check, takes the organization from the x-benchmark-organization-id
  // metadata and grants every scope. The crm_server target never defines
  // this macro.
  Claims unchecked;
  auto organization = context->client_metadata().find("x-benchmark-organization-id");
  if (organization != context->client_metadata().end()) {
    std::string value(organization->second.data(), organization->second.size());
    unchecked.organization_id = std::strtoull(value.c_str(), nullptr, 10);
  }
  unchecked.scopes = ~ScopeMask{0};
  Authorize(call, unchecked);
#else
  CheckToken(call, std::move(token));
#endif
  return reactor;
}

void CrmServiceImpl::CheckToken(const std::shared_ptr<Call>& call, std::string token) {
  // Behind a trusted proxy each client gets its own failure count, so one
  // guesser does not lock out every client of that proxy.
  std::string peer = call->client_address.empty() ? PeerAddress(call->context->peer()) : call->client_address;
  spdlog::trace("checking token {} for {} from {}", TokenHint(token), call->spec->path, peer);

  // The checksum algorithm is public (common/token.h), so a faster rejection
  // of a bad checksum reveals nothing that the caller could not compute.
  if (!ValidateTokenFormat(TokenKind::kAppToken, token).ok()) {
    malformed_tokens_.fetch_add(1, std::memory_order_relaxed);
    limiter_->RecordFailure(peer, token);
    call->Finish(InvalidAccessTokenError());
    return;
  }

  // A cached valid token passes even from a limited peer, so clients that
  // share an address with a guesser keep working while the cache is current.
  if (std::optional<Claims> cached = token_checker_->CachedClaims(token)) {
    Authorize(call, *std::move(cached));
    return;
  }

  // TODO: delay the responses to a limited peer, so that a closed-loop
  // guesser sends fewer calls. Each rejected call costs a gRPC round trip.
  if (!limiter_->Allow(peer, token)) {
    spdlog::debug("token check rejected: too many failed checks from {} or for {}", peer, TokenHint(token));
    call->Finish(InvalidAccessTokenError());
    return;
  }

  token_checker_->Check(token, call->deadline, [this, call, peer, token](absl::StatusOr<Claims> claims) {
    if (absl::IsUnauthenticated(claims.status())) {
      limiter_->RecordFailure(peer, token);
      claims = InvalidAccessTokenError();
    }
    Authorize(call, std::move(claims));
  });
}

void CrmServiceImpl::Authorize(std::shared_ptr<Call> call, absl::StatusOr<Claims> claims) {
  if (!claims.ok()) {
    call->Finish(claims.status());
    return;
  }
  call->claims = *claims;
  // Before GetTokenInfo and the scope check, so a call from outside the
  // allowlist learns nothing about the app but this rejection.
  if (claims->ip_allowlist != nullptr && !claims->ip_allowlist->empty()) {
    if (absl::Status allowed = CheckClientAddress(*call, call->client, *claims->ip_allowlist); !allowed.ok()) {
      call->Finish(allowed);
      return;
    }
  }
  if (usage_ != nullptr) usage_->Record(claims->token_id, call->client_address);
  ScopeMask missing = call->spec->required_scopes & ~claims->scopes;
  if (missing != 0) {
    call->Finish(WithErrorInfo(
        absl::PermissionDeniedError(absl::StrCat("the app's token lacks scope ", ScopeList(missing, ", "),
                                                 " needed by ", call->spec->method->name())),
        ErrorReason::kScopeMissing,
        {{"method", call->spec->method->full_name()},
         {"missing_scopes", ScopeList(missing, ",")},
         {"required_scopes", ScopeList(call->spec->required_scopes, ",")}}));
    return;
  }
  // Only calls that would run count against the rate limits: a bad token
  // or a missing scope is rejected without taking quota.
  if (rate_limiter_ == nullptr) {
    Run(std::move(call));
    return;
  }
  rate_limiter_->Admit(claims->organization_id, claims->app_id, [this, call](absl::Status admitted) {
    if (!admitted.ok()) {
      call->Finish(admitted);
      return;
    }
    Run(call);
  });
}

void CrmServiceImpl::Run(std::shared_ptr<Call> call) {
  if (call->spec->standard_method == StandardMethod::kGetTokenInfo) {
    const Claims& claims = call->claims;
    crm::data::v1::GetTokenInfoResponse info;
    info.set_organization_id(absl::StrCat(claims.organization_id));
    info.set_app_id(absl::StrCat(claims.app_id));
    ScopeMaskToProto(claims.scopes, info.mutable_scopes());
    if (claims.expire_time != absl::InfiniteFuture()) {
      *info.mutable_expire_time() =
          google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(claims.expire_time));
    }
    SerializeToByteBuffer(info, call->response_bytes);
    call->Finish(absl::OkStatus());
    return;
  }
  bool queued = workers_->TrySubmit([this, call] {
    if (call->context->IsCancelled()) {
      call->Finish(absl::CancelledError("the caller cancelled the call"));
      return;
    }
    if (absl::Now() >= call->deadline) {
      call->Finish(WithErrorInfo(absl::DeadlineExceededError("deadline passed while the call waited for a worker"),
                                 ErrorReason::kServerBusy));
      return;
    }
    DatabaseDeadlineScope database_deadline(call->deadline);
    call->Finish(Execute(*call));
  });
  if (!queued) {
    call->Finish(WithErrorInfo(absl::ResourceExhaustedError("server is at its request limit; retry with backoff"),
                               ErrorReason::kServerBusy));
  }
}

absl::StatusOr<IpAddress> CrmServiceImpl::CallClientAddress(const Call& call) const {
  std::vector<absl::string_view> header_values;
  if (!client_address_.header.empty()) {
    auto [begin, end] = call.context->client_metadata().equal_range(client_address_.header);
    for (auto it = begin; it != end; ++it) header_values.emplace_back(it->second.data(), it->second.size());
  }
  return ClientAddress(client_address_, call.context->peer(), header_values);
}

absl::Status CrmServiceImpl::CheckClientAddress(const Call& call, const absl::StatusOr<IpAddress>& client,
                                                const IpAllowlist& allowlist) const {
  std::string peer = call.context->peer();
  if (!client.ok()) {
    // Fails closed: an app with an allowlist is never used from an address
    // the server cannot determine.
    spdlog::debug("app {} of organization {} rejected a call from peer {}: {}", call.claims.app_id,
                  call.claims.organization_id, peer, client.status().message());
    return WithErrorInfo(absl::PermissionDeniedError(absl::StrCat(
                             "the app has an IP allowlist and the client address cannot be determined: ",
                             client.status().message())),
                         ErrorReason::kIpNotAllowed, {{"client_address", ""}});
  }
  if (allowlist.Allows(*client)) return absl::OkStatus();
  std::string address = client->ToString();
  spdlog::debug("app {} of organization {} rejected a call from {} (peer {}): not in its IP allowlist",
                call.claims.app_id, call.claims.organization_id, address, peer);
  return WithErrorInfo(
      absl::PermissionDeniedError(absl::StrCat("the app's IP allowlist does not include the client address ",
                                               address, "; an organization admin can add it with UpdatePrivateApp")),
      ErrorReason::kIpNotAllowed, {{"client_address", address}});
}

absl::Status CrmServiceImpl::Execute(Call& call) {
  const MethodSpec& spec = *call.spec;
  MessageFactory* factory = MessageFactory::generated_factory();
  std::unique_ptr<Message> request(factory->GetPrototype(spec.method->input_type())->New());
  std::unique_ptr<Message> response(factory->GetPrototype(spec.method->output_type())->New());

  grpc::ByteBuffer copy(*call.request_bytes);
  grpc::ProtoBufferReader reader(&copy);
  if (!request->ParseFromZeroCopyStream(&reader)) {
    return WithErrorInfo(absl::InvalidArgumentError(absl::StrCat("request is not a valid ",
                                                                 spec.method->input_type()->full_name(),
                                                                 " (strings must be valid UTF-8)")),
                         ErrorReason::kRequestMalformed);
  }

  if (spec.schema == nullptr) return absl::InternalError(absl::StrCat(spec.path, " has no module to execute on"));
  const ModuleSchema& schema = *spec.schema;
  const google::protobuf::Reflection* in = request->GetReflection();
  const google::protobuf::Reflection* out = response->GetReflection();
  uint64_t organization_id = call.claims.organization_id;
  absl::Status status;
  switch (spec.standard_method) {
    case StandardMethod::kCreate: {
      if (!in->HasField(*request, ResourceField(*request))) return ResourceRequired(*request);
      Message* resource = out->MutableMessage(response.get(), ResourceField(*response));
      resource->CopyFrom(in->GetMessage(*request, ResourceField(*request)));
      ClearOutputOnlyFields(resource);
      status = store_->Create(schema, organization_id, in->GetString(*request, Field(*request, "request_id")),
                              resource);
      break;
    }
    case StandardMethod::kGet:
      status = store_->Get(schema, organization_id, in->GetString(*request, Field(*request, kIdField)),
                           out->MutableMessage(response.get(), ResourceField(*response)));
      break;
    case StandardMethod::kList: {
      std::string next_page_token;
      ListParams params;
      params.page_size = in->GetInt32(*request, Field(*request, "page_size"));
      params.page_token = in->GetString(*request, Field(*request, "page_token"));
      params.filter = in->GetString(*request, Field(*request, "filter"));
      params.order_by = in->GetString(*request, Field(*request, "order_by"));
      status = store_->List(
          schema, organization_id, spec.path, params,
          [&] { return out->AddMessage(response.get(), ResourceField(*response)); }, &next_page_token);
      out->SetString(response.get(), Field(*response, "next_page_token"), next_page_token);
      break;
    }
    case StandardMethod::kUpdate: {
      if (!in->HasField(*request, ResourceField(*request))) return ResourceRequired(*request);
      const auto& mask = static_cast<const google::protobuf::FieldMask&>(
          in->GetMessage(*request, Field(*request, "update_mask")));
      status = store_->Update(schema, organization_id, in->GetMessage(*request, ResourceField(*request)), mask,
                              out->MutableMessage(response.get(), ResourceField(*response)));
      break;
    }
    case StandardMethod::kDelete:
      status = store_->Delete(schema, organization_id, in->GetString(*request, Field(*request, kIdField)),
                              in->GetString(*request, Field(*request, kEtagField)));
      break;
    case StandardMethod::kGetTokenInfo:
      return absl::InternalError("GetTokenInfo is handled before the worker pool");
    case StandardMethod::kConvertLead:
      // The generated factory made both messages, so they have these types.
      status = store_->ConvertLead(organization_id, static_cast<const crm::data::v1::ConvertLeadRequest&>(*request),
                                   static_cast<crm::data::v1::ConvertLeadResponse*>(response.get()));
      break;
  }
  if (status.ok()) SerializeToByteBuffer(*response, call.response_bytes);
  return status;
}

}  // namespace crm::data
