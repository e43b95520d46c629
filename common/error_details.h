// Machine-readable error details for both services, following Google's
// error model (google.rpc.Status with ErrorInfo and BadRequest details).
//
// Inside the services errors stay absl::Status. An error site attaches the
// details as payloads of its absl::Status: each payload is keyed by the Any
// type URL of a google.rpc detail message and contains that message
// serialized. ToGrpcStatus (common/grpc_status.h) copies the payloads into
// google.rpc.Status.details and sends that message as the call's binary
// error details (the grpc-status-details-bin trailer). The ErrorInfo domain
// is left empty at the error site: ToGrpcStatus sets it to the domain of the
// service that answers the call.
//
// Errors that a later retry may cure, such as a rate limit, also carry a
// RetryInfo with the delay after which a retry can succeed.
//
// The reasons are one stable list shared by both services; docs/clients.md
// lists each with its status code and metadata keys. Never put a token, an
// admin key or another secret into a message, metadata value or violation.
#ifndef CRM_COMMON_ERROR_DETAILS_H_
#define CRM_COMMON_ERROR_DETAILS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace crm {

// ErrorInfo.domain of errors that the auth server returns (PrivateAppService
// and TokenService).
inline constexpr absl::string_view kAuthErrorDomain = "auth.crm.example";
// ErrorInfo.domain of errors that the CRM server returns (CrmService).
inline constexpr absl::string_view kDataErrorDomain = "data.crm.example";

inline constexpr absl::string_view kErrorInfoTypeUrl = "type.googleapis.com/google.rpc.ErrorInfo";
inline constexpr absl::string_view kBadRequestTypeUrl = "type.googleapis.com/google.rpc.BadRequest";
inline constexpr absl::string_view kRetryInfoTypeUrl = "type.googleapis.com/google.rpc.RetryInfo";

// ErrorInfo.reason values. Clients switch on the name, so a name never
// changes meaning once released; add new reasons at the end.
enum class ErrorReason {
  kTokenMissing,          // UNAUTHENTICATED: no authorization metadata on a CrmService call
  kTokenMalformed,        // UNAUTHENTICATED: the authorization metadata is not "Bearer <token>"
  kTokenInvalid,          // UNAUTHENTICATED: any token that does not authenticate (see InvalidAccessTokenError)
  kAdminKeyMissing,       // UNAUTHENTICATED: no authorization metadata on a PrivateAppService call
  kAdminKeyMalformed,     // UNAUTHENTICATED: the authorization metadata is not "Bearer <key>"
  kAdminKeyInvalid,       // UNAUTHENTICATED: any admin key that does not authenticate (see InvalidAdminKeyError)
  kScopeMissing,          // PERMISSION_DENIED: the token lacks a scope the method requires
  kResourceNotFound,      // NOT_FOUND: no such app or record in the caller's organization
  kEtagMismatch,          // ABORTED: the record changed since the etag was read
  kAppLimitReached,       // FAILED_PRECONDITION: the organization has the maximum number of apps
  kLeadAlreadyConverted,  // FAILED_PRECONDITION: ConvertLead on a converted lead
  kRecordReferenced,      // FAILED_PRECONDITION: another record's restricting reference blocks a delete
  kValidationFailed,      // INVALID_ARGUMENT: invalid field values, listed in BadRequest
  kInvalidFilter,         // INVALID_ARGUMENT: List filter does not parse or names an unknown field
  kInvalidOrderBy,        // INVALID_ARGUMENT: List order_by does not parse or names an unsortable field
  kInvalidPageToken,      // INVALID_ARGUMENT: page_token is altered or from another request
  kLogoInvalid,           // INVALID_ARGUMENT: the logo is not a square PNG or JPEG within the limits
  kRequestMalformed,      // INVALID_ARGUMENT: the request bytes do not parse as the request message
  kResourceAlreadyExists, // ALREADY_EXISTS: a unique key is taken
  kEncryptionKeyMismatch, // FAILED_PRECONDITION: the stored token was sealed with another key
  kServerBusy,            // RESOURCE_EXHAUSTED, or DEADLINE_EXCEEDED while queued
  kAuthUnavailable,       // UNAVAILABLE: the CRM server cannot verify the token with an auth server
  kTokenCheckConflict,    // UNAVAILABLE: the app changed during every token check attempt
  kDatabaseUnavailable,   // UNAVAILABLE: the database is unreachable or has no free connection
  kDatabaseTimeout,       // DEADLINE_EXCEEDED: a statement ran out of time
  kTransactionConflict,   // ABORTED: concurrent transactions conflicted on every attempt
  kInternalError,         // INTERNAL or DATA_LOSS: a server fault, not the caller's
  kRateLimited,           // RESOURCE_EXHAUSTED: the app reached its burst limit in the current 10-second window
  kDailyLimitExceeded,    // RESOURCE_EXHAUSTED: the organization reached its daily limit of calls
  kIpNotAllowed,          // PERMISSION_DENIED: the app's IP allowlist does not include the client's address
};

// The reason's name in UPPER_SNAKE_CASE, such as "SCOPE_MISSING".
absl::string_view ErrorReasonName(ErrorReason reason);

// Every reason in declaration order, for tests.
const std::vector<ErrorReason>& AllErrorReasons();

// ErrorInfo.metadata. Keys are snake_case (error_details.proto allows
// `[a-z][a-zA-Z0-9-_]+` of at most 64 characters); values are plain text.
using ErrorMetadata = std::map<std::string, std::string>;

// Returns `status` with an ErrorInfo of `reason` and `metadata`, replacing
// an earlier ErrorInfo. An OK status is returned unchanged.
absl::Status WithErrorInfo(absl::Status status, ErrorReason reason, const ErrorMetadata& metadata = {});

// Returns `status` with a RetryInfo whose retry_delay is `delay`, rounded up
// to whole milliseconds, replacing an earlier RetryInfo. An OK status is
// returned unchanged.
absl::Status WithRetryInfo(absl::Status status, absl::Duration delay);

// Returns `status` with one more BadRequest field violation. `field` is the
// path of the field in the request, such as "private_app.display_name".
absl::Status WithFieldViolation(absl::Status status, absl::string_view field, absl::string_view description);

// INVALID_ARGUMENT with `message`, an ErrorInfo of `reason` and `metadata`,
// and a BadRequest that names `field` with `message` as its description.
absl::Status InvalidFieldError(absl::string_view field, absl::string_view message,
                               ErrorReason reason = ErrorReason::kValidationFailed,
                               const ErrorMetadata& metadata = {});

// Returns `status` with `prefix` and a dot put before the path of each of its
// field violations, for checks that name fields relative to a nested message
// ("email" inside the request's "lead" becomes "lead.email").
absl::Status PrefixFieldViolations(absl::Status status, absl::string_view prefix);

// The status's ErrorInfo or BadRequest payload, or std::nullopt when it has
// none (or it does not parse).
std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status);
std::optional<google::rpc::BadRequest> GetBadRequest(const absl::Status& status);
std::optional<google::rpc::RetryInfo> GetRetryInfo(const absl::Status& status);

// The reason of the status's ErrorInfo, or "" when it has none.
std::string GetErrorReason(const absl::Status& status);

// google.rpc.Status with the code, message and every payload of `status` as
// details (ErrorInfo first), and `domain` as the ErrorInfo's domain.
google::rpc::Status ToRpcStatus(const absl::Status& status, absl::string_view domain);

// The inverse of ToRpcStatus: an absl::Status with the code and message of
// `rpc_status` and its details as payloads. The ErrorInfo's domain is
// cleared, so the service that forwards the error sets its own.
absl::Status FromRpcStatus(const google::rpc::Status& rpc_status);

}  // namespace crm

#endif  // CRM_COMMON_ERROR_DETAILS_H_
