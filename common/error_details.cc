#include "common/error_details.h"

#include <algorithm>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/types/optional.h"
#include "absl/strings/str_cat.h"

namespace crm {
namespace {

struct ReasonName {
  ErrorReason reason;
  absl::string_view name;
};

constexpr ReasonName kReasonNames[] = {
    {ErrorReason::kTokenMissing, "TOKEN_MISSING"},
    {ErrorReason::kTokenMalformed, "TOKEN_MALFORMED"},
    {ErrorReason::kTokenInvalid, "TOKEN_INVALID"},
    {ErrorReason::kAdminKeyMissing, "ADMIN_KEY_MISSING"},
    {ErrorReason::kAdminKeyMalformed, "ADMIN_KEY_MALFORMED"},
    {ErrorReason::kAdminKeyInvalid, "ADMIN_KEY_INVALID"},
    {ErrorReason::kScopeMissing, "SCOPE_MISSING"},
    {ErrorReason::kResourceNotFound, "RESOURCE_NOT_FOUND"},
    {ErrorReason::kEtagMismatch, "ETAG_MISMATCH"},
    {ErrorReason::kAppLimitReached, "APP_LIMIT_REACHED"},
    {ErrorReason::kLeadAlreadyConverted, "LEAD_ALREADY_CONVERTED"},
    {ErrorReason::kRecordReferenced, "RECORD_REFERENCED"},
    {ErrorReason::kValidationFailed, "VALIDATION_FAILED"},
    {ErrorReason::kInvalidFilter, "INVALID_FILTER"},
    {ErrorReason::kInvalidOrderBy, "INVALID_ORDER_BY"},
    {ErrorReason::kInvalidPageToken, "INVALID_PAGE_TOKEN"},
    {ErrorReason::kLogoInvalid, "LOGO_INVALID"},
    {ErrorReason::kRequestMalformed, "REQUEST_MALFORMED"},
    {ErrorReason::kResourceAlreadyExists, "RESOURCE_ALREADY_EXISTS"},
    {ErrorReason::kEncryptionKeyMismatch, "ENCRYPTION_KEY_MISMATCH"},
    {ErrorReason::kServerBusy, "SERVER_BUSY"},
    {ErrorReason::kAuthUnavailable, "AUTH_UNAVAILABLE"},
    {ErrorReason::kTokenCheckConflict, "TOKEN_CHECK_CONFLICT"},
    {ErrorReason::kDatabaseUnavailable, "DATABASE_UNAVAILABLE"},
    {ErrorReason::kDatabaseTimeout, "DATABASE_TIMEOUT"},
    {ErrorReason::kTransactionConflict, "TRANSACTION_CONFLICT"},
    {ErrorReason::kInternalError, "INTERNAL_ERROR"},
    {ErrorReason::kRateLimited, "RATE_LIMITED"},
    {ErrorReason::kDailyLimitExceeded, "DAILY_LIMIT_EXCEEDED"},
    {ErrorReason::kIpNotAllowed, "IP_NOT_ALLOWED"},
};

template <typename Detail>
std::optional<Detail> GetPayload(const absl::Status& status, absl::string_view type_url) {
  absl::optional<absl::Cord> payload = status.GetPayload(type_url);
  if (!payload.has_value()) return std::nullopt;
  Detail detail;
  if (!detail.ParseFromString(std::string(*payload))) return std::nullopt;
  return detail;
}

void SetPayload(absl::Status& status, absl::string_view type_url, const google::protobuf::Message& detail) {
  status.SetPayload(type_url, absl::Cord(detail.SerializeAsString()));
}

}  // namespace

absl::string_view ErrorReasonName(ErrorReason reason) {
  for (const ReasonName& entry : kReasonNames) {
    if (entry.reason == reason) return entry.name;
  }
  return "INTERNAL_ERROR";
}

const std::vector<ErrorReason>& AllErrorReasons() {
  static const std::vector<ErrorReason>* reasons = [] {
    auto* all = new std::vector<ErrorReason>;
    for (const ReasonName& entry : kReasonNames) all->push_back(entry.reason);
    return all;
  }();
  return *reasons;
}

absl::Status WithErrorInfo(absl::Status status, ErrorReason reason, const ErrorMetadata& metadata) {
  if (status.ok()) return status;
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(ErrorReasonName(reason)));
  for (const auto& [key, value] : metadata) (*info.mutable_metadata())[key] = value;
  SetPayload(status, kErrorInfoTypeUrl, info);
  return status;
}

absl::Status WithRetryInfo(absl::Status status, absl::Duration delay) {
  if (status.ok()) return status;
  int64_t millis = absl::ToInt64Milliseconds(absl::Ceil(std::max(delay, absl::ZeroDuration()), absl::Milliseconds(1)));
  google::rpc::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(millis / 1000);
  info.mutable_retry_delay()->set_nanos(static_cast<int32_t>(millis % 1000) * 1000000);
  SetPayload(status, kRetryInfoTypeUrl, info);
  return status;
}

absl::Status WithFieldViolation(absl::Status status, absl::string_view field, absl::string_view description) {
  if (status.ok()) return status;
  google::rpc::BadRequest bad_request = GetBadRequest(status).value_or(google::rpc::BadRequest());
  google::rpc::BadRequest::FieldViolation* violation = bad_request.add_field_violations();
  violation->set_field(std::string(field));
  violation->set_description(std::string(description));
  SetPayload(status, kBadRequestTypeUrl, bad_request);
  return status;
}

absl::Status InvalidFieldError(absl::string_view field, absl::string_view message, ErrorReason reason,
                               const ErrorMetadata& metadata) {
  absl::Status status = WithErrorInfo(absl::InvalidArgumentError(message), reason, metadata);
  return WithFieldViolation(std::move(status), field, message);
}

absl::Status PrefixFieldViolations(absl::Status status, absl::string_view prefix) {
  std::optional<google::rpc::BadRequest> bad_request = GetBadRequest(status);
  if (!bad_request.has_value()) return status;
  for (google::rpc::BadRequest::FieldViolation& violation : *bad_request->mutable_field_violations()) {
    violation.set_field(absl::StrCat(prefix, ".", violation.field()));
  }
  SetPayload(status, kBadRequestTypeUrl, *bad_request);
  return status;
}

std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status) {
  return GetPayload<google::rpc::ErrorInfo>(status, kErrorInfoTypeUrl);
}

std::optional<google::rpc::BadRequest> GetBadRequest(const absl::Status& status) {
  return GetPayload<google::rpc::BadRequest>(status, kBadRequestTypeUrl);
}

std::optional<google::rpc::RetryInfo> GetRetryInfo(const absl::Status& status) {
  return GetPayload<google::rpc::RetryInfo>(status, kRetryInfoTypeUrl);
}

std::string GetErrorReason(const absl::Status& status) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  return info.has_value() ? info->reason() : std::string();
}

google::rpc::Status ToRpcStatus(const absl::Status& status, absl::string_view domain) {
  google::rpc::Status rpc_status;
  rpc_status.set_code(static_cast<int>(status.code()));
  rpc_status.set_message(std::string(status.message()));
  if (std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status)) {
    info->set_domain(std::string(domain));
    rpc_status.add_details()->PackFrom(*info);
  }
  // ForEachPayload visits in no set order, so ErrorInfo (added above) comes
  // first and the rest follow in the order abseil happens to keep.
  status.ForEachPayload([&](absl::string_view type_url, const absl::Cord& payload) {
    if (type_url == kErrorInfoTypeUrl) return;
    google::protobuf::Any* detail = rpc_status.add_details();
    detail->set_type_url(std::string(type_url));
    detail->set_value(std::string(payload));
  });
  return rpc_status;
}

absl::Status FromRpcStatus(const google::rpc::Status& rpc_status) {
  absl::Status status(static_cast<absl::StatusCode>(rpc_status.code()), rpc_status.message());
  if (status.ok()) return status;
  for (const google::protobuf::Any& detail : rpc_status.details()) {
    if (detail.type_url() == kErrorInfoTypeUrl) {
      google::rpc::ErrorInfo info;
      if (!detail.UnpackTo(&info)) continue;
      info.clear_domain();
      SetPayload(status, kErrorInfoTypeUrl, info);
      continue;
    }
    status.SetPayload(detail.type_url(), absl::Cord(detail.value()));
  }
  return status;
}

}  // namespace crm
