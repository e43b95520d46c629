// The API call log in the auth schema (table api_calls, migration 0007):
// CRM servers report the calls made with app tokens in batches
// (TokenService.ReportApiCalls), admins list one app's calls
// (PrivateAppService.ListApiCalls), and a purge deletes calls older than
// the retention period. No gRPC server types, like AuthStore.
//
// Each report is one transaction of multi-row INSERTs. The statements have
// fixed row counts (256, 64, 16, 4 and 1), so a connection's statement cache
// contains five of them whatever the batch size. A batch of 1,000 calls
// takes at most 13 statements.
#ifndef CRM_SERVICES_AUTH_API_CALL_STORE_H_
#define CRM_SERVICES_AUTH_API_CALL_STORE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mysql_pool.h"
#include "common/page_token.h"
#include "crm/auth/v1/private_app.pb.h"
#include "crm/auth/v1/token_service.pb.h"
#include "services/auth/auth_store.h"

namespace crm::auth {

// Maximum calls in one ReportApiCalls request.
inline constexpr int kMaxApiCallsPerReport = 1000;
// Default and maximum ListApiCalls page sizes.
inline constexpr int kDefaultApiCallPageSize = 100;
inline constexpr int kMaxApiCallPageSize = 1000;

class ApiCallStore {
 public:
  // `pool` must outlive the store; `page_token_key` seals ListApiCalls page
  // tokens.
  ApiCallStore(MysqlPool* pool, std::string page_token_key) : pool_(pool), page_tokens_(std::move(page_token_key)) {}

  // Stores every call of `request` in one transaction, or none.
  // INVALID_ARGUMENT as TokenService.ReportApiCalls documents.
  absl::Status Report(const v1::ReportApiCallsRequest& request);

  // Lists one app's calls, with the codes that
  // PrivateAppService.ListApiCalls documents.
  absl::StatusOr<v1::ListApiCallsResponse> List(const AdminCaller& caller, const v1::ListApiCallsRequest& request);

  // Deletes up to `max_rows` calls received before `cutoff`, oldest first,
  // in one autocommit statement, and returns how many it deleted.
  absl::StatusOr<int> Purge(absl::Time cutoff, int max_rows);

 private:
  MysqlPool* const pool_;
  const PageTokenCodec page_tokens_;
};

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_API_CALL_STORE_H_
