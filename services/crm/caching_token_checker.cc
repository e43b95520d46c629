#include "services/crm/caching_token_checker.h"

#include "common/crypto.h"
#include "common/error_details.h"
#include "common/token.h"

namespace crm::data {
namespace {

// Remote checks made in all when each result raced with an invalidation
// of the same app, before the call fails UNAVAILABLE.
constexpr int kRemoteAttempts = 2;

}  // namespace

CachingTokenChecker::CachingTokenChecker(TokenChecker* remote, TokenCache* cache,
                                         std::function<bool()> cache_usable)
    : remote_(remote), cache_(cache), cache_usable_(std::move(cache_usable)) {}

void CachingTokenChecker::Check(const std::string& token, absl::Time deadline, Callback done) {
  if (absl::Status format = ValidateTokenFormat(TokenKind::kAppToken, token); !format.ok()) {
    done(format);
    return;
  }
  std::string digest = Sha256(token);
  if (cache_usable_()) {
    if (std::optional<Claims> claims = cache_->Lookup(digest)) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      done(*claims);
      return;
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  CheckRemotely(token, std::move(digest), deadline, std::move(done), kRemoteAttempts);
}

std::optional<Claims> CachingTokenChecker::CachedClaims(const std::string& token) {
  if (!cache_usable_()) return std::nullopt;
  std::optional<Claims> claims = cache_->Lookup(Sha256(token));
  if (claims.has_value()) hits_.fetch_add(1, std::memory_order_relaxed);
  return claims;
}

void CachingTokenChecker::CheckRemotely(const std::string& token, std::string digest, absl::Time deadline,
                                        Callback done, int attempts_left) {
  remote_->Check(token, deadline,
                 [this, token, digest = std::move(digest), deadline, done = std::move(done),
                  attempts_left](absl::StatusOr<Claims> claims) mutable {
                   if (!claims.ok()) {
                     done(std::move(claims));
                     return;
                   }
                   // The result was read before an invalidation of this app
                   // that is already applied here, so it may grant too much.
                   if (cache_->IsStale(claims->app_id, claims->invalidation_sequence)) {
                     if (attempts_left > 1) {
                       CheckRemotely(token, std::move(digest), deadline, std::move(done), attempts_left - 1);
                     } else {
                       done(WithErrorInfo(absl::UnavailableError("the app changed during the token check; retry"),
                                          ErrorReason::kTokenCheckConflict));
                     }
                     return;
                   }
                   if (cache_usable_()) cache_->Insert(digest, *claims);
                   done(std::move(claims));
                 });
}

}  // namespace crm::data
