#include "services/crm/token_checker.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/error_details.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/token.h"

namespace crm::data {
namespace {

// State of one remote check, alive until its callback has run.
struct PendingCheck {
  grpc::ClientContext context;
  crm::auth::v1::CheckTokenRequest request;
  crm::auth::v1::CheckTokenResponse response;
  TokenChecker::Callback done;
};

absl::StatusOr<Claims> ClaimsFromResponse(const crm::auth::v1::CheckTokenResponse& response) {
  Claims claims;
  if (!absl::SimpleAtoi(response.organization_id(), &claims.organization_id) ||
      !absl::SimpleAtoi(response.app_id(), &claims.app_id)) {
    return WithErrorInfo(absl::InternalError("auth service returned malformed ids"), ErrorReason::kInternalError);
  }
  absl::StatusOr<ScopeMask> scopes = ScopeMaskFromProto(response.scopes());
  if (!scopes.ok()) {
    return WithErrorInfo(absl::InternalError("auth service returned invalid scopes"), ErrorReason::kInternalError);
  }
  claims.scopes = *scopes;
  claims.invalidation_sequence = response.invalidation_sequence();
  if (!response.token_id().empty() && !absl::SimpleAtoi(response.token_id(), &claims.token_id)) {
    return absl::InternalError("auth service returned a malformed token id");
  }
  if (response.has_expire_time()) {
    claims.expire_time = absl::FromUnixMicros(
        google::protobuf::util::TimeUtil::TimestampToMicroseconds(response.expire_time()));
  }
  if (!response.ip_allowlist().empty()) {
    // Fails closed: a list this server cannot read must not allow every
    // address.
    absl::StatusOr<IpAllowlist> allowlist = IpAllowlist::Parse({response.ip_allowlist().begin(),
                                                                response.ip_allowlist().end()});
    if (!allowlist.ok()) {
      return WithErrorInfo(absl::InternalError(absl::StrCat("auth service returned an invalid IP allowlist for app ",
                                                            claims.app_id, ": ", allowlist.status().message())),
                           ErrorReason::kInternalError);
    }
    claims.ip_allowlist = std::make_shared<const IpAllowlist>(*std::move(allowlist));
  }
  return claims;
}

}  // namespace

RemoteTokenChecker::RemoteTokenChecker(std::shared_ptr<grpc::Channel> channel, absl::Duration max_check_time)
    : stub_(crm::auth::v1::TokenService::NewStub(std::move(channel))), max_check_time_(max_check_time) {}

void RemoteTokenChecker::Check(const std::string& token, absl::Time deadline, Callback done) {
  // A malformed token or one with a bad checksum never costs a remote call.
  if (absl::Status format = ValidateTokenFormat(TokenKind::kAppToken, token); !format.ok()) {
    done(format);
    return;
  }
  remote_checks_.fetch_add(1, std::memory_order_relaxed);
  auto pending = std::make_shared<PendingCheck>();
  pending->request.set_token(token);
  pending->done = std::move(done);
  pending->context.set_deadline(absl::ToChronoTime(std::min(deadline, absl::Now() + max_check_time_)));
  stub_->async()->CheckToken(&pending->context, &pending->request, &pending->response,
                             [pending](grpc::Status status) {
                               if (status.ok()) {
                                 pending->done(ClaimsFromResponse(pending->response));
                                 return;
                               }
                               // The auth server's reason (TOKEN_INVALID) reaches the CRM
                               // caller unchanged.
                               if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
                                 absl::Status rejected = FromGrpcStatus(status);
                                 if (GetErrorReason(rejected).empty()) {
                                   rejected = WithErrorInfo(std::move(rejected), ErrorReason::kTokenInvalid);
                                 }
                                 pending->done(std::move(rejected));
                                 return;
                               }
                               spdlog::warn("token check failed: auth service returned {} ({})",
                                            static_cast<int>(status.error_code()), status.error_message());
                               pending->done(WithErrorInfo(
                                   absl::UnavailableError(
                                       "cannot verify the access token: auth service unavailable; retry later"),
                                   ErrorReason::kAuthUnavailable));
                             });
}

}  // namespace crm::data
