// The auth service's core: organizations and their admin keys, private apps
// and their access tokens, stored in MySQL. It contains no gRPC server types,
// so tests and the operator CLI call it directly, and the gRPC adapter in
// auth_server.h only authenticates, calls it and logs.
//
// Every app method takes the caller's organization id, which comes from the
// admin key and never from a request field, and every query filters by it:
// an app of another organization is NOT_FOUND. Ids are decimal strings in
// the API. Tokens and admin keys are stored as an HMAC-SHA-256 digest for
// lookup, and access tokens also as an AES-256-GCM ciphertext so they can be
// revealed again. No method logs a token or key, and messages show at most
// TokenHint().
//
// Rotation, deletion, a scope, token expiry or IP allowlist change and the
// end or cancellation of a rotation overlap each append an entry to the
// invalidation log in the same transaction and return its sequence.
// CheckToken returns the latest sequence that the returned claims reflect.
//
// Every app method also records an audit event in the transaction of its
// change, naming the admin key row that made the call.
#ifndef CRM_SERVICES_AUTH_AUTH_STORE_H_
#define CRM_SERVICES_AUTH_AUTH_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/crypto.h"
#include "common/mysql_pool.h"
#include "common/page_token.h"
#include "common/rate_limit.h"
#include "common/scopes.h"
#include "common/secrets.h"
#include "common/token.h"
#include "crm/auth/v1/private_app.pb.h"
#include "crm/auth/v1/token_service.pb.h"

namespace crm::auth {

// At most this many private apps per organization.
inline constexpr int kMaxAppsPerOrganization = 20;

// Default and maximum ListPrivateApps page size.
inline constexpr int kMaxPageSize = 20;

// Default and maximum ListAuditEvents page sizes.
inline constexpr int kDefaultAuditPageSize = 50;
inline constexpr int kMaxAuditPageSize = 200;

// Maximum rotation overlap: the previous token works at most this long
// beside the new one.
inline constexpr absl::Duration kMaxTokenOverlap = absl::Hours(7 * 24);

// Maximum CIDR ranges in one app's IP allowlist.
inline constexpr int kMaxIpAllowlistRanges = 50;

// Most token uses one ReportTokenUsage call may carry.
inline constexpr int kMaxUsagesPerReport = 10000;

// Source of the current time; tests inject a fixed one.
using Clock = std::function<absl::Time()>;

// Result of CreateOrganization. The admin key is returned only here.
struct NewOrganization {
  uint64_t organization_id = 0;
  std::string admin_key;
};

// The caller of a PrivateAppService method: the organization and the row id
// of the admin key it authenticated with.
struct AdminCaller {
  uint64_t organization_id = 0;
  uint64_t admin_key_id = 0;
};

// Claims of a valid access token, as returned by CheckToken.
struct TokenClaims {
  uint64_t organization_id = 0;
  uint64_t app_id = 0;
  uint64_t token_id = 0;
  ScopeMask scopes = 0;
  // When the token stops working: the earlier of its own expiry and the
  // end of a rotation overlap; InfiniteFuture() when neither applies.
  absl::Time expire_time = absl::InfiniteFuture();
  // The invalidation log's latest sequence in the snapshot the claims were
  // read from: they reflect every entry up to it and none after.
  int64_t invalidation_sequence = 0;
  // The app's IP allowlist in canonical CIDR form; empty allows every
  // address.
  std::vector<std::string> ip_allowlist;
};

// One entry of the invalidation log.
struct InvalidationEntry {
  int64_t sequence = 0;
  uint64_t app_id = 0;
  uint64_t organization_id = 0;
  v1::InvalidationReason reason = v1::INVALIDATION_REASON_UNSPECIFIED;
};

// Invalidation log entries after a position, with the log's latest sequence
// from the same snapshot.
struct InvalidationPage {
  // Consecutive entries in sequence order.
  std::vector<InvalidationEntry> entries;
  int64_t last_sequence = 0;
};

// Called with an entry's sequence once the change that appended it has
// committed.
using InvalidationCommitted = std::function<void(int64_t sequence)>;

// Result of AuthStore::ReencryptTokens.
struct ReencryptResult {
  // Access token rows rewritten under the newest keys.
  int64_t rewritten_tokens = 0;
  // Unrevoked admin keys whose lookup digest still uses an older HMAC key
  // (or predates key ids). Only the admin key itself can recompute its
  // digest, so each moves on its next successful use.
  int64_t admin_keys_under_older_keys = 0;
};

// Rate limits that apply where an organization's policy leaves them 0.
struct RateLimitDefaults {
  int32_t burst_limit_per_10s = kDefaultBurstLimitPer10s;
  int64_t daily_limit = kDefaultDailyLimit;
};

class AuthStore {
 public:
  // `pool` must outlive the store. `random` issues tokens and admin keys and
  // must be a CSPRNG outside tests. `on_invalidation`, when set, runs on the
  // calling thread after each change that appended an invalidation log entry
  // has committed, before the method returns.
  AuthStore(MysqlPool* pool, Secrets secrets, RandomSource random = RandomBytes, Clock clock = absl::Now,
            InvalidationCommitted on_invalidation = nullptr, RateLimitDefaults rate_limit_defaults = {});

  // Creates an organization with one admin key. INVALID_ARGUMENT when
  // display_name is empty, longer than 200 characters, contains control
  // characters or starts or ends with white space.
  absl::StatusOr<NewOrganization> CreateOrganization(absl::string_view display_name);

  // Returns the organization and key id of an admin key that exists and is
  // not revoked. UNAUTHENTICATED otherwise; a key with a bad format or
  // checksum fails without a database lookup.
  absl::StatusOr<AdminCaller> AuthenticateAdmin(absl::string_view admin_key);

  // Returns the organization of an admin key, as AuthenticateAdmin does.
  absl::StatusOr<uint64_t> AuthenticateAdminKey(absl::string_view admin_key);

  // Returns the organization, app, current scopes and expiry of a valid
  // access token, and the invalidation log's latest sequence read in the
  // same snapshot. INVALID_ARGUMENT when `token` is empty. UNAUTHENTICATED
  // when it is malformed (no database lookup), unknown, expired, rotated
  // away or its app deleted.
  absl::StatusOr<TokenClaims> CheckToken(absl::string_view token);

  // Stores the latest use of each token in `request`, to the minute; see
  // TokenService.ReportTokenUsage.
  absl::Status ReportTokenUsage(const v1::ReportTokenUsageRequest& request);
  // Database lookups that CheckToken and AuthenticateAdminKey have made,
  // for tests that show which credentials never reach the database.
  int64_t credential_lookups() const { return credential_lookups_.load(std::memory_order_relaxed); }

  // The PrivateAppService methods, with the codes listed in
  // proto/crm/auth/v1/private_app.proto. CreatePrivateApp returns
  // FAILED_PRECONDITION once the organization has kMaxAppsPerOrganization
  // apps, also under concurrent calls.
  absl::StatusOr<v1::CreatePrivateAppResponse> CreatePrivateApp(const AdminCaller& caller,
                                                                const v1::CreatePrivateAppRequest& request);
  absl::StatusOr<v1::GetPrivateAppResponse> GetPrivateApp(const AdminCaller& caller,
                                                          const v1::GetPrivateAppRequest& request);
  // Pages hold up to page_size apps, fewer when their logos would make the
  // response larger than about 3 MiB, so that clients with gRPC's default
  // 4 MiB receive limit can read every page.
  absl::StatusOr<v1::ListPrivateAppsResponse> ListPrivateApps(const AdminCaller& caller,
                                                              const v1::ListPrivateAppsRequest& request);
  absl::StatusOr<v1::UpdatePrivateAppResponse> UpdatePrivateApp(const AdminCaller& caller,
                                                                const v1::UpdatePrivateAppRequest& request);
  absl::StatusOr<v1::DeletePrivateAppResponse> DeletePrivateApp(const AdminCaller& caller,
                                                                const v1::DeletePrivateAppRequest& request);
  // Also FAILED_PRECONDITION when the token was encrypted under a
  // token_encryption_key that the server does not load, and DATA_LOSS when
  // the stored ciphertext fails authentication.
  absl::StatusOr<v1::GetAccessTokenResponse> GetAccessToken(const AdminCaller& caller,
                                                            const v1::GetAccessTokenRequest& request);
  // Issues the new token and revokes the old one, or starts its overlap, in
  // one transaction.
  absl::StatusOr<v1::RotateAccessTokenResponse> RotateAccessToken(const AdminCaller& caller,
                                                                  const v1::RotateAccessTokenRequest& request);
  absl::StatusOr<v1::EndAccessTokenOverlapResponse> EndAccessTokenOverlap(
      const AdminCaller& caller, const v1::EndAccessTokenOverlapRequest& request);
  absl::StatusOr<v1::CancelAccessTokenRotationResponse> CancelAccessTokenRotation(
      const AdminCaller& caller, const v1::CancelAccessTokenRotationRequest& request);
  absl::StatusOr<v1::ListAuditEventsResponse> ListAuditEvents(const AdminCaller& caller,
                                                              const v1::ListAuditEventsRequest& request);
  absl::StatusOr<v1::GetOrganizationPolicyResponse> GetOrganizationPolicy(
      const AdminCaller& caller, const v1::GetOrganizationPolicyRequest& request);
  absl::StatusOr<v1::UpdateOrganizationPolicyResponse> UpdateOrganizationPolicy(
      const AdminCaller& caller, const v1::UpdateOrganizationPolicyRequest& request);

  // The organization's call counts against its rate limits; see
  // PrivateAppService.GetApiUsage.
  absl::StatusOr<v1::GetApiUsageResponse> GetApiUsage(const AdminCaller& caller,
                                                      const v1::GetApiUsageRequest& request);

  // Grants a block of calls to `app_id` of `organization_id` from the
  // shared counters of the current window and day (TokenService.AcquireQuota).
  // One transaction locks the day row and then the window row. `max_calls`
  // above 0 caps the block. NOT_FOUND when the app does not exist in that
  // organization.
  absl::StatusOr<QuotaBlock> AcquireQuota(uint64_t organization_id, uint64_t app_id, int64_t max_calls = 0);

  // Deletes rate limit counters of windows and days that ended more than
  // two days before now, up to `max_rows` of each kind per call. Returns
  // how many rows it deleted.
  absl::StatusOr<int> PurgeQuotaCounters(int max_rows);

  // Reads up to `max_entries` invalidation log entries with a sequence above
  // `after_sequence`, and the latest sequence, in one snapshot. The log has
  // no gaps, so entries that start above after_sequence + 1, or none while
  // last_sequence is above after_sequence, mean the purge removed the
  // entries in between.
  absl::StatusOr<InvalidationPage> ReadInvalidations(int64_t after_sequence, int max_entries);

  // Deletes up to `max_entries` of the oldest invalidation log entries that
  // were created before `cutoff`. It stops at the first newer entry, so the
  // log keeps a gap-free run of sequences. Returns how many were deleted.
  absl::StatusOr<int> PurgeInvalidations(absl::Time cutoff, int max_entries);

  // Returns the oldest sequence still in the invalidation log, or the latest
  // sequence + 1 when the log is empty.
  absl::StatusOr<int64_t> OldestRetainedInvalidation();

  // Rewrites every stored access token (revoked ones too) whose ciphertext
  // or lookup digest uses an older key under the newest token_encryption_key
  // and token_hmac_key, `batch_size` rows per transaction. The token itself
  // does not change. Safe to run again and while servers run, provided every
  // server already loads the newest keys: a server without them would stop
  // recognizing the moved tokens. FAILED_PRECONDITION when a row's key is not
  // loaded, DATA_LOSS when a ciphertext fails authentication; rows moved
  // before the error stay moved.
  absl::StatusOr<ReencryptResult> ReencryptTokens(int batch_size);

 private:
  // Digests of `credential` under each loaded HMAC key, newest first.
  std::vector<std::string> DigestsUnderEveryKey(absl::string_view credential) const;
  // Returns the loaded encryption key with this id, or null.
  const std::string* FindEncryptionKey(absl::string_view key_id) const;
  std::string ListRequestScope(uint64_t organization_id) const;
  // Shared by EndAccessTokenOverlap (cancel false) and
  // CancelAccessTokenRotation (cancel true).
  absl::StatusOr<std::pair<v1::PrivateApp, int64_t>> FinishOverlap(const AdminCaller& caller,
                                                                   absl::string_view id, bool cancel);
  void NotifyInvalidation(int64_t sequence) const;

  MysqlPool* const pool_;
  const Secrets secrets_;
  const RandomSource random_;
  const Clock clock_;
  const InvalidationCommitted on_invalidation_;
  const PageTokenCodec page_tokens_;
  std::atomic<int64_t> credential_lookups_{0};
  const RateLimitDefaults rate_limit_defaults_;
};

// Parses an id from the API: a positive decimal integer without sign,
// leading zeros or white space. INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<uint64_t> ParseId(absl::string_view field, absl::string_view value);

// Returns a DATETIME(6) literal of `unix_micros` in UTC, the pool's session
// time zone.
std::string ToDatetime(int64_t unix_micros);

// NOT_FOUND for an app that the caller's organization does not have, with
// the ErrorInfo reason RESOURCE_NOT_FOUND.
absl::Status AppNotFound(uint64_t app_id);

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_AUTH_STORE_H_
