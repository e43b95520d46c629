// The gRPC adapter of CrmService. All 32 methods enter through one handler:
// the method's descriptor names its operation and required scopes, so
// authorization and storage are written once for every module.
// GetTokenInfo, the one method with no_scope_required, is answered from
// the token's claims without the worker pool or the database.
//
// Each call reads the bearer token and verifies it without blocking the gRPC
// thread. A token with a bad format or checksum is rejected before any
// remote check or database query. A token not in the cache is checked
// remotely only while the caller's peer address and the token's prefix are
// under the failed-lookup limit (common/credential_limiter.h). Every failed
// check returns the same UNAUTHENTICATED message. A bad token is
// rejected with UNAUTHENTICATED, and a client address outside the app's IP
// allowlist or a missing scope with PERMISSION_DENIED, all before the
// request is parsed. The database work then runs
// on the bounded worker pool, or the call gets RESOURCE_EXHAUSTED when the
// pool's queue is full. Before that, when a RateLimiter is given, the call
// takes one call of the app's rate limits (rate_limiter.h) or fails with
// RESOURCE_EXHAUSTED.
#ifndef CRM_SERVICES_CRM_CRM_SERVICE_H_
#define CRM_SERVICES_CRM_CRM_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/credential_limiter.h"
#include "common/ip_allowlist.h"
#include "common/scopes.h"
#include "common/worker_pool.h"
#include "crm/data/v1/crm_service.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "services/crm/api_call_log.h"
#include "services/crm/record_schema.h"
#include "services/crm/rate_limiter.h"
#include "services/crm/record_store.h"
#include "services/crm/token_checker.h"
#include "services/crm/token_usage.h"

namespace crm::data {

// The operation of a method: one of the five standard methods of its
// module, the custom method ConvertLead, or GetTokenInfo, which belongs to
// no module.
enum class StandardMethod { kCreate, kGet, kList, kUpdate, kDelete, kConvertLead, kGetTokenInfo };

// Facts about one CrmService method that the handler reads from its
// descriptor.
struct MethodSpec {
  const google::protobuf::MethodDescriptor* method = nullptr;
  StandardMethod standard_method = StandardMethod::kGet;
  // Null for GetTokenInfo.
  const ModuleSchema* schema = nullptr;
  // 0 only for a method with no_scope_required.
  ScopeMask required_scopes = 0;
  // "/crm.data.v1.CrmService/GetLead", for logs.
  std::string path;
};

// Builds the spec of `method`. INVALID_ARGUMENT when the method declares no
// required scope and does not set no_scope_required (which only
// GetTokenInfo may set), sets both, or its name or first scope do not fit
// a standard method of one module or a known custom method.
absl::StatusOr<MethodSpec> SpecForMethod(const google::protobuf::MethodDescriptor* method);

// The source of a call's client address for IP allowlists. With `header`
// empty, the client is the gRPC peer. Otherwise a peer inside
// `trusted_proxies` is a proxy, and the client comes from that metadata
// header in X-Forwarded-For form (see ResolveClientAddress).
struct ClientAddressPolicy {
  std::string header;
  IpAllowlist trusted_proxies;
};

// Checks a --client_ip_header value: a lower-case gRPC metadata key
// (letters, digits, '-', '_', '.') that is not binary ("-bin") or reserved
// ("grpc-", ":"). An empty value is valid and turns the header off.
absl::Status ValidateClientIpHeader(absl::string_view header);

// Returns the client address of a call under `policy`; INVALID_ARGUMENT
// when the peer is not an IP address or a trusted proxy's header does not
// parse. `header_values` are the values of policy.header in order.
absl::StatusOr<IpAddress> ClientAddress(const ClientAddressPolicy& policy, absl::string_view grpc_peer,
                                        const std::vector<absl::string_view>& header_values);

class CrmServiceImpl final : public crm::data::v1::CrmService::Service {
 public:
  // Aborts when a method's spec cannot be built, so a proto change that
  // omits a scope cannot start serving.
  // `limiter` counts failed token checks; `usage`, when not null, records
  // every accepted token. A call's deadline is its own or
  // `max_call_duration` after it arrived, whichever is sooner; its database
  // statements end by then. `call_log`, when not null, records every
  // finished call whose token resolved to an app. `rate_limiter`, when not
  // null, admits every call that passed its token and scope checks.
  // `client_address` selects the source of the client address for IP
  // allowlists. Every argument must outlive the service.
  CrmServiceImpl(RecordStore* store, TokenChecker* token_checker, WorkerPool* workers,
                 CredentialLimiter* limiter, TokenUsageRecorder* usage = nullptr,
                 absl::Duration max_call_duration = absl::Seconds(30), ApiCallRecorder* call_log = nullptr,
                 RateLimiter* rate_limiter = nullptr, ClientAddressPolicy client_address = {});

  // Tokens rejected by the format check, which costs no remote call.
  int64_t malformed_tokens() const { return malformed_tokens_.load(std::memory_order_relaxed); }

 private:
  struct Call;

  grpc::ServerUnaryReactor* Handle(const MethodSpec& spec, grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request, grpc::ByteBuffer* response);
  void CheckToken(const std::shared_ptr<Call>& call, std::string token);
  void Authorize(std::shared_ptr<Call> call, absl::StatusOr<Claims> claims);
  // Returns the GetTokenInfo response, or hands the call to the worker pool.
  void Run(std::shared_ptr<Call> call);
  // Finds the call's client address under the server's ClientAddressPolicy.
  absl::StatusOr<IpAddress> CallClientAddress(const Call& call) const;
  // Returns OK when the app's IP allowlist includes `client`, the call's
  // client address. Otherwise, and when the address could not be
  // determined, returns PERMISSION_DENIED with reason IP_NOT_ALLOWED.
  absl::Status CheckClientAddress(const Call& call, const absl::StatusOr<IpAddress>& client,
                                  const IpAllowlist& allowlist) const;
  absl::Status Execute(Call& call);

  RecordStore* const store_;
  TokenChecker* const token_checker_;
  WorkerPool* const workers_;
  TokenUsageRecorder* const usage_;
  CredentialLimiter* const limiter_;
  ApiCallRecorder* const call_log_;
  RateLimiter* const rate_limiter_;
  const absl::Duration max_call_duration_;
  const ClientAddressPolicy client_address_;
  std::vector<MethodSpec> specs_;
  std::atomic<int64_t> malformed_tokens_{0};
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_CRM_SERVICE_H_
