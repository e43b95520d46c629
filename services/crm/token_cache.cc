#include "services/crm/token_cache.h"

namespace crm::data {
namespace {

// Per-entry memory: the digest key in the map, the app index and the
// eviction queue, plus the claims and hash-table slack. An estimate from
// the container layouts, not a measurement.
constexpr size_t kBytesPerEntry = 3 * (32 + sizeof(std::string)) + sizeof(Claims) + sizeof(absl::Time) + 64;

// Memory of an entry's IP allowlist beyond kBytesPerEntry. Counted per
// entry although entries of one check share it, so it errs high.
size_t AllowlistBytes(const Claims& claims) {
  if (claims.ip_allowlist == nullptr) return 0;
  return sizeof(IpAllowlist) + claims.ip_allowlist->ranges().size() * sizeof(CidrRange) + 32;
}

}  // namespace

TokenCache::TokenCache(TokenCacheOptions options, Clock clock) : options_(options), clock_(std::move(clock)) {}

std::optional<Claims> TokenCache::Lookup(const std::string& token_digest) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(token_digest);
  if (it == entries_.end()) return std::nullopt;
  absl::Time now = clock_();
  if (now - it->second.inserted > options_.max_age || now >= it->second.claims.expire_time) {
    EraseLocked(token_digest);
    return std::nullopt;
  }
  return it->second.claims;
}

bool TokenCache::IsStale(uint64_t app_id, int64_t answer_sequence) {
  absl::MutexLock lock(&mu_);
  return IsStaleLocked(app_id, answer_sequence);
}

bool TokenCache::IsStaleLocked(uint64_t app_id, int64_t answer_sequence) {
  if (answer_sequence >= last_applied_) return false;
  if (answer_sequence < forgotten_before_) return true;
  if (applied_.empty() || applied_.front().first > answer_sequence + 1) return true;
  for (auto it = applied_.rbegin(); it != applied_.rend() && it->first > answer_sequence; ++it) {
    if (it->second == app_id) return true;
  }
  return false;
}

bool TokenCache::Insert(const std::string& token_digest, const Claims& claims) {
  absl::MutexLock lock(&mu_);
  if (IsStaleLocked(claims.app_id, claims.invalidation_sequence)) return false;
  if (options_.max_entries == 0) return false;
  if (clock_() >= claims.expire_time) return false;
  while (entries_.size() >= options_.max_entries && !insertion_order_.empty()) {
    std::string oldest = std::move(insertion_order_.front());
    insertion_order_.pop_front();
    EraseLocked(oldest);
  }
  if (auto existing = entries_.find(token_digest); existing != entries_.end()) {
    allowlist_bytes_ -= AllowlistBytes(existing->second.claims);
  }
  entries_.insert_or_assign(token_digest, Entry{claims, clock_()});
  allowlist_bytes_ += AllowlistBytes(claims);
  digests_by_app_[claims.app_id].insert(token_digest);
  insertion_order_.push_back(token_digest);
  // Erased digests stay in the queue until they reach its front; compact
  // when they dominate, so the queue stays proportional to the entries.
  if (insertion_order_.size() > 2 * options_.max_entries + 1024) {
    std::deque<std::string> live;
    for (std::string& digest : insertion_order_) {
      if (entries_.contains(digest)) live.push_back(std::move(digest));
    }
    insertion_order_ = std::move(live);
  }
  return true;
}

void TokenCache::Invalidate(uint64_t app_id, int64_t sequence) {
  absl::MutexLock lock(&mu_);
  if (auto it = digests_by_app_.find(app_id); it != digests_by_app_.end()) {
    for (const std::string& digest : it->second) {
      auto entry = entries_.find(digest);
      if (entry == entries_.end()) continue;
      allowlist_bytes_ -= AllowlistBytes(entry->second.claims);
      entries_.erase(entry);
    }
    digests_by_app_.erase(it);
  }
  applied_.emplace_back(sequence, app_id);
  while (applied_.size() > options_.remembered_invalidations) applied_.pop_front();
  last_applied_ = std::max(last_applied_, sequence);
}

void TokenCache::Clear(int64_t sequence) {
  absl::MutexLock lock(&mu_);
  entries_.clear();
  allowlist_bytes_ = 0;
  digests_by_app_.clear();
  insertion_order_.clear();
  applied_.clear();
  forgotten_before_ = sequence;
  last_applied_ = sequence;
}

size_t TokenCache::Size() {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

size_t TokenCache::ApproximateBytes() {
  absl::MutexLock lock(&mu_);
  return entries_.size() * kBytesPerEntry + allowlist_bytes_;
}

void TokenCache::EraseLocked(const std::string& token_digest) {
  auto it = entries_.find(token_digest);
  if (it == entries_.end()) return;
  auto app = digests_by_app_.find(it->second.claims.app_id);
  if (app != digests_by_app_.end()) {
    app->second.erase(token_digest);
    if (app->second.empty()) digests_by_app_.erase(app);
  }
  allowlist_bytes_ -= AllowlistBytes(it->second.claims);
  entries_.erase(it);
}

}  // namespace crm::data
