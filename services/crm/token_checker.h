// Verification of the access tokens that CrmService callers present. The
// CRM server calls the auth server's TokenService, which returns the caller's
// organization, app, granted scopes and IP allowlist.
#ifndef CRM_SERVICES_CRM_TOKEN_CHECKER_H_
#define CRM_SERVICES_CRM_TOKEN_CHECKER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/ip_allowlist.h"
#include "common/scopes.h"
#include "crm/auth/v1/token_service.grpc.pb.h"

namespace crm::data {

// Organization, app, scopes and expiry of a verified token.
struct Claims {
  uint64_t organization_id = 0;
  uint64_t app_id = 0;
  // The token's row id at the auth service, for usage reports; 0 when
  // unknown.
  uint64_t token_id = 0;
  ScopeMask scopes = 0;
  // When the token stops working; InfiniteFuture() when it does not
  // expire. The cache never returns the claims from this time on.
  absl::Time expire_time = absl::InfiniteFuture();
  // The auth service's invalidation sequence when it read the token. The
  // result reflects every invalidation up to it.
  int64_t invalidation_sequence = 0;
  // The app's IP allowlist, parsed once per check and shared by the cached
  // copies; null or empty allows every address.
  std::shared_ptr<const IpAllowlist> ip_allowlist;
};

class TokenChecker {
 public:
  using Callback = std::function<void(absl::StatusOr<Claims>)>;

  virtual ~TokenChecker() = default;

  // Verifies `token` and calls `done` exactly once, possibly on another
  // thread, with the claims, UNAUTHENTICATED for a token that does not
  // verify, or UNAVAILABLE when the verdict cannot be had by `deadline`.
  virtual void Check(const std::string& token, absl::Time deadline, Callback done) = 0;

  // Returns the claims of `token` when they are at hand without a remote
  // call (a current cache entry), and nullopt otherwise.
  virtual std::optional<Claims> CachedClaims(const std::string& token) { return std::nullopt; }
};

// Asks TokenService.CheckToken over `channel` for every check, without
// blocking the calling thread.
class RemoteTokenChecker : public TokenChecker {
 public:
  // `max_check_time` caps each remote check below the caller's own deadline.
  RemoteTokenChecker(std::shared_ptr<grpc::Channel> channel, absl::Duration max_check_time);

  void Check(const std::string& token, absl::Time deadline, Callback done) override;

  // Remote checks started so far.
  int64_t remote_checks() const { return remote_checks_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<crm::auth::v1::TokenService::Stub> stub_;
  std::atomic<int64_t> remote_checks_{0};
  const absl::Duration max_check_time_;
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_TOKEN_CHECKER_H_
