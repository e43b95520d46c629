// A TokenChecker that returns results from the TokenCache while the
// invalidation stream is current, and otherwise calls the auth service. It
// fails closed: a cache that may be stale is never read.
#ifndef CRM_SERVICES_CRM_CACHING_TOKEN_CHECKER_H_
#define CRM_SERVICES_CRM_CACHING_TOKEN_CHECKER_H_

#include <atomic>
#include <functional>

#include "services/crm/token_cache.h"
#include "services/crm/token_checker.h"

namespace crm::data {

class CachingTokenChecker : public TokenChecker {
 public:
  // `cache_usable` reports whether the cache may be read and filled now,
  // normally InvalidationWatcher::IsCurrent.
  CachingTokenChecker(TokenChecker* remote, TokenCache* cache, std::function<bool()> cache_usable);

  void Check(const std::string& token, absl::Time deadline, Callback done) override;
  // A cache hit, counted as one; a miss is counted by the Check that
  // follows it.
  std::optional<Claims> CachedClaims(const std::string& token) override;

  int64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  int64_t misses() const { return misses_.load(std::memory_order_relaxed); }

 private:
  void CheckRemotely(const std::string& token, std::string digest, absl::Time deadline, Callback done,
                     int attempts_left);

  TokenChecker* const remote_;
  TokenCache* const cache_;
  const std::function<bool()> cache_usable_;
  std::atomic<int64_t> hits_{0};
  std::atomic<int64_t> misses_{0};
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_CACHING_TOKEN_CHECKER_H_
