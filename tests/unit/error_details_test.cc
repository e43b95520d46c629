// Error details (common/error_details.h) and their trip through
// grpc::Status (common/grpc_status.h), plus the reasons that the shared
// checks in common/ attach.
#include "common/error_details.h"

#include <grpcpp/support/error_details.h>

#include <regex>
#include <set>
#include <string>

#include "common/grpc_status.h"
#include "common/page_token.h"
#include "common/scopes.h"
#include "common/text.h"
#include "common/token.h"
#include "gtest/gtest.h"

namespace crm {
namespace {

TEST(ErrorReason, NamesAreUpperSnakeCaseAndUnique) {
  // The pattern and the 63-character limit are those of ErrorInfo.reason
  // in google/rpc/error_details.proto.
  const std::regex upper_snake_case("[A-Z][A-Z0-9_]+[A-Z0-9]");
  std::set<std::string> seen;
  for (ErrorReason reason : AllErrorReasons()) {
    std::string name(ErrorReasonName(reason));
    EXPECT_TRUE(std::regex_match(name, upper_snake_case)) << name;
    EXPECT_LE(name.size(), 63u) << name;
    EXPECT_TRUE(seen.insert(name).second) << name << " appears twice";
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(ErrorReason::kIpNotAllowed) + 1)
      << "a reason of the enum is missing from the name table";
}

TEST(ErrorDetails, ErrorInfoRoundTrip) {
  absl::Status status = WithErrorInfo(absl::PermissionDeniedError("no scope"), ErrorReason::kScopeMissing,
                                      {{"required_scopes", "LEAD:READ"}, {"method", "crm.data.v1.CrmService.GetLead"}});
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "SCOPE_MISSING");
  EXPECT_EQ(info->domain(), "");
  EXPECT_EQ(info->metadata().at("required_scopes"), "LEAD:READ");
  EXPECT_EQ(info->metadata().at("method"), "crm.data.v1.CrmService.GetLead");
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(status.message(), "no scope");
}

TEST(ErrorDetails, LaterErrorInfoReplacesEarlier) {
  absl::Status status = WithErrorInfo(absl::UnauthenticatedError("x"), ErrorReason::kTokenInvalid, {{"a", "1"}});
  status = WithErrorInfo(status, ErrorReason::kTokenMalformed);
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "TOKEN_MALFORMED");
  EXPECT_TRUE(info->metadata().empty());
}

TEST(ErrorDetails, RetryInfoRoundsUpToMilliseconds) {
  absl::Status status = WithRetryInfo(
      WithErrorInfo(absl::ResourceExhaustedError("limit"), ErrorReason::kRateLimited, {{"limit", "5"}}),
      absl::Seconds(3) + absl::Microseconds(1500));
  std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 3);
  EXPECT_EQ(retry->retry_delay().nanos(), 2000000);
  EXPECT_EQ(GetErrorReason(status), "RATE_LIMITED");

  google::rpc::Status rpc_status = ToRpcStatus(status, kDataErrorDomain);
  absl::Status back = FromRpcStatus(rpc_status);
  ASSERT_TRUE(GetRetryInfo(back).has_value());
  EXPECT_EQ(GetRetryInfo(back)->retry_delay().seconds(), 3);
  EXPECT_EQ(GetErrorReason(back), "RATE_LIMITED");
}

TEST(ErrorDetails, OkStatusGetsNoPayload) {
  absl::Status status = WithErrorInfo(absl::OkStatus(), ErrorReason::kInternalError);
  EXPECT_TRUE(status.ok());
  EXPECT_FALSE(GetErrorInfo(status).has_value());
  EXPECT_EQ(GetErrorReason(status), "");
}

TEST(ErrorDetails, InvalidFieldErrorNamesField) {
  absl::Status status = InvalidFieldError("private_app.display_name", "private_app.display_name is required");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetErrorReason(status), "VALIDATION_FAILED");
  std::optional<google::rpc::BadRequest> bad_request = GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value());
  ASSERT_EQ(bad_request->field_violations_size(), 1);
  EXPECT_EQ(bad_request->field_violations(0).field(), "private_app.display_name");
  EXPECT_EQ(bad_request->field_violations(0).description(), "private_app.display_name is required");
}

TEST(ErrorDetails, FieldViolationsAccumulateAndTakePrefix) {
  absl::Status status = InvalidFieldError("email", "email is not an email address");
  status = WithFieldViolation(status, "phone", "phone is too long");
  status = PrefixFieldViolations(status, "lead");
  std::optional<google::rpc::BadRequest> bad_request = GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value());
  ASSERT_EQ(bad_request->field_violations_size(), 2);
  EXPECT_EQ(bad_request->field_violations(0).field(), "lead.email");
  EXPECT_EQ(bad_request->field_violations(1).field(), "lead.phone");
  EXPECT_EQ(GetErrorReason(status), "VALIDATION_FAILED");
}

TEST(GrpcStatus, DetailsTravelAsRpcStatus) {
  absl::Status status = InvalidFieldError("filter", "filter: unexpected character at position 3",
                                          ErrorReason::kInvalidFilter, {{"position", "3"}});
  grpc::Status grpc_status = ToGrpcStatus(status, kDataErrorDomain);
  EXPECT_EQ(grpc_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(grpc_status.error_message(), "filter: unexpected character at position 3");

  // grpc::ExtractErrorDetails is gRPC's own reader of the binary details.
  google::rpc::Status rpc_status;
  ASSERT_TRUE(grpc::ExtractErrorDetails(grpc_status, &rpc_status).ok());
  EXPECT_EQ(rpc_status.code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(rpc_status.message(), grpc_status.error_message());
  ASSERT_EQ(rpc_status.details_size(), 2);

  google::rpc::ErrorInfo info;
  ASSERT_TRUE(rpc_status.details(0).UnpackTo(&info)) << rpc_status.details(0).type_url();
  EXPECT_EQ(info.reason(), "INVALID_FILTER");
  EXPECT_EQ(info.domain(), "data.crm.example");
  EXPECT_EQ(info.metadata().at("position"), "3");

  google::rpc::BadRequest bad_request;
  ASSERT_TRUE(rpc_status.details(1).UnpackTo(&bad_request)) << rpc_status.details(1).type_url();
  ASSERT_EQ(bad_request.field_violations_size(), 1);
  EXPECT_EQ(bad_request.field_violations(0).field(), "filter");
}

TEST(GrpcStatus, ErrorWithoutPayloadsGetsBareRpcStatus) {
  grpc::Status grpc_status = ToGrpcStatus(absl::CancelledError("gone"), kAuthErrorDomain);
  google::rpc::Status rpc_status;
  ASSERT_TRUE(rpc_status.ParseFromString(grpc_status.error_details()));
  EXPECT_EQ(rpc_status.code(), static_cast<int>(grpc::StatusCode::CANCELLED));
  EXPECT_EQ(rpc_status.message(), "gone");
  EXPECT_EQ(rpc_status.details_size(), 0);
}

TEST(GrpcStatus, OkHasNoDetails) {
  grpc::Status grpc_status = ToGrpcStatus(absl::OkStatus(), kAuthErrorDomain);
  EXPECT_TRUE(grpc_status.ok());
  EXPECT_EQ(grpc_status.error_details(), "");
}

TEST(GrpcStatus, FromGrpcStatusKeepsDetailsButNotDomain) {
  absl::Status original = WithErrorInfo(absl::UnauthenticatedError("the access token was rotated"),
                                        ErrorReason::kTokenInvalid, {{"key", "value"}});
  absl::Status forwarded = FromGrpcStatus(ToGrpcStatus(original, kAuthErrorDomain));
  EXPECT_EQ(forwarded.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(forwarded.message(), "the access token was rotated");
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(forwarded);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "TOKEN_INVALID");
  EXPECT_EQ(info->domain(), "") << "the forwarding service sets its own domain";
  EXPECT_EQ(info->metadata().at("key"), "value");

  // The service that forwards the error sets its own domain.
  google::rpc::Status rpc_status;
  ASSERT_TRUE(rpc_status.ParseFromString(ToGrpcStatus(forwarded, kDataErrorDomain).error_details()));
  ASSERT_TRUE(rpc_status.details(0).UnpackTo(&*info));
  EXPECT_EQ(info->domain(), "data.crm.example");
}

TEST(GrpcStatus, FromGrpcStatusWithoutOrWithBadDetails) {
  absl::Status plain = FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  EXPECT_EQ(plain.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(plain.message(), "down");
  EXPECT_EQ(GetErrorReason(plain), "");

  absl::Status garbage = FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down", "\xff\xff\xff"));
  EXPECT_EQ(garbage.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(garbage.message(), "down");
  EXPECT_EQ(GetErrorReason(garbage), "");
}

TEST(CommonChecks, BearerReasonsFollowCredentialKind) {
  absl::string_view credential;
  EXPECT_EQ(GetErrorReason(ParseBearer("", TokenKind::kAppToken, &credential)), "TOKEN_MISSING");
  EXPECT_EQ(GetErrorReason(ParseBearer("Basic abc", TokenKind::kAppToken, &credential)), "TOKEN_MALFORMED");
  EXPECT_EQ(GetErrorReason(ParseBearer("", TokenKind::kAdminKey, &credential)), "ADMIN_KEY_MISSING");
  EXPECT_EQ(GetErrorReason(ParseBearer("Basic abc", TokenKind::kAdminKey, &credential)), "ADMIN_KEY_MALFORMED");
}

TEST(CommonChecks, TokenFormatReasonFollowsKind) {
  EXPECT_EQ(GetErrorReason(ValidateTokenFormat(TokenKind::kAppToken, "crmpat_short")), "TOKEN_INVALID");
  EXPECT_EQ(GetErrorReason(ValidateTokenFormat(TokenKind::kAdminKey, "crmpat_short")), "ADMIN_KEY_INVALID");
}

TEST(CommonChecks, PageTokenReasonAndField) {
  PageTokenCodec codec(std::string(32, 'k'));
  absl::Status status = codec.Decode("scope", "not a token").status();
  EXPECT_EQ(GetErrorReason(status), "INVALID_PAGE_TOKEN");
  std::optional<google::rpc::BadRequest> bad_request = GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value());
  EXPECT_EQ(bad_request->field_violations(0).field(), "page_token");
}

TEST(CommonChecks, TextAndScopeViolationsNameTheField) {
  absl::Status text = ValidateText("private_app.description", "a\x01", TextRules{.max_code_points = 10});
  ASSERT_TRUE(GetBadRequest(text).has_value());
  EXPECT_EQ(GetBadRequest(text)->field_violations(0).field(), "private_app.description");

  google::protobuf::RepeatedPtrField<crm::auth::v1::Scope> scopes;
  scopes.Add()->set_module(crm::auth::v1::MODULE_LEAD);
  absl::Status scope = ScopeMaskFromProto(scopes).status();
  EXPECT_EQ(GetErrorReason(scope), "VALIDATION_FAILED");
  ASSERT_TRUE(GetBadRequest(scope).has_value());
  EXPECT_EQ(GetBadRequest(scope)->field_violations(0).field(), "scopes[0].action");
}

}  // namespace
}  // namespace crm
