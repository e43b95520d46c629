// In-memory cache of token-check results, keyed by the SHA-256 of the token
// (the token itself is never stored). It is only correct together with the
// invalidation stream: InvalidationWatcher applies every log entry here, and
// CachingTokenChecker reads the cache only while the stream is current.
//
// Bounds: at most max_entries results (the oldest-inserted is evicted
// first), each dropped after max_age whatever the stream says, and never
// returned at or after the token's own expire_time. The expiry is checked
// against the local clock on every hit, so a token that reaches its
// scheduled expiry (its own, or the end of a rotation overlap) needs no
// invalidation entry: the cached claims carry the time themselves. Every entry
// has the same fixed size plus the ranges of its app's IP allowlist (at most
// 50), so the entry bound also bounds memory; ApproximateBytes() reports it.
#ifndef CRM_SERVICES_CRM_TOKEN_CACHE_H_
#define CRM_SERVICES_CRM_TOKEN_CACHE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/crm/token_checker.h"

namespace crm::data {

struct TokenCacheOptions {
  size_t max_entries = 100000;
  absl::Duration max_age = absl::Minutes(5);
  // Applied invalidations kept to judge results that raced with them.
  size_t remembered_invalidations = 65536;
};

class TokenCache {
 public:
  using Clock = std::function<absl::Time()>;

  explicit TokenCache(TokenCacheOptions options, Clock clock = absl::Now);

  // Returns the cached claims of the token with this SHA-256 digest, unless
  // absent, older than max_age or past the token's expire_time.
  std::optional<Claims> Lookup(const std::string& token_digest);

  // Whether an invalidation of `app_id` newer than `answer_sequence` has
  // been applied, so a result read at that sequence may grant too much.
  // Also true when such entries are no longer remembered.
  bool IsStale(uint64_t app_id, int64_t answer_sequence);

  // Stores a check result read at claims.invalidation_sequence, unless IsStale
  // or already expired. Returns whether it was stored.
  bool Insert(const std::string& token_digest, const Claims& claims);

  // Drops every answer of `app_id` and records the entry as applied at
  // `sequence`.
  void Invalidate(uint64_t app_id, int64_t sequence);

  // Drops everything, for a stream reset or a gap in the log.
  void Clear(int64_t sequence);

  size_t Size();
  size_t ApproximateBytes();

 private:
  struct Entry {
    Claims claims;
    absl::Time inserted;
  };

  void EraseLocked(const std::string& token_digest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IsStaleLocked(uint64_t app_id, int64_t answer_sequence) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TokenCacheOptions options_;
  const Clock clock_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<std::string>> digests_by_app_ ABSL_GUARDED_BY(mu_);
  // Digests in insertion order, for eviction; may hold digests already
  // erased, which eviction skips.
  std::deque<std::string> insertion_order_ ABSL_GUARDED_BY(mu_);
  // (sequence, app id) of recently applied invalidations, oldest first.
  std::deque<std::pair<int64_t, uint64_t>> applied_ ABSL_GUARDED_BY(mu_);
  // Answers read before this sequence cannot be judged: Clear() forgot
  // what came before.
  int64_t forgotten_before_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_applied_ ABSL_GUARDED_BY(mu_) = 0;
  // Bytes of the IP allowlist ranges that the entries hold.
  size_t allowlist_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_TOKEN_CACHE_H_
