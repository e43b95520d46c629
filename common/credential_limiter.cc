#include "common/credential_limiter.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "common/error_details.h"
#include "common/ip_allowlist.h"

namespace crm {

CredentialLimiter::CredentialLimiter(CredentialLimiterOptions options)
    : clock_(std::move(options.clock)),
      peers_(options.peer_burst, options.peer_refill_per_second, options.max_tracked_keys),
      prefixes_(options.prefix_burst, options.prefix_refill_per_second, options.max_tracked_keys) {}

double CredentialLimiter::BucketSet::Refilled(const Bucket& bucket, absl::Time now) const {
  double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - bucket.updated));
  return std::min(burst_, bucket.units + elapsed * refill_per_second_);
}

bool CredentialLimiter::BucketSet::HasUnit(const std::string& key, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto found = buckets_.find(key);
  return found == buckets_.end() || Refilled(found->second, now) >= 1.0;
}

void CredentialLimiter::BucketSet::Take(const std::string& key, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto found = buckets_.find(key);
  if (found == buckets_.end()) {
    if (buckets_.size() >= max_keys_) DropFullBuckets(now);
    if (buckets_.size() >= max_keys_) return;
    buckets_[key] = Bucket{burst_ - 1, now};
    return;
  }
  // Below zero, so that failures of lookups that were already in flight when
  // the bucket ran empty still count; at most one burst of debt.
  found->second.units = std::max(-burst_, Refilled(found->second, now) - 1);
  found->second.updated = now;
}

void CredentialLimiter::BucketSet::DropFullBuckets(absl::Time now) {
  absl::erase_if(buckets_, [&](const auto& entry) { return Refilled(entry.second, now) >= burst_; });
}

bool CredentialLimiter::Allow(absl::string_view peer, absl::string_view credential) {
  absl::Time now = clock_();
  bool allowed = peer.empty() || peers_.HasUnit(std::string(peer), now);
  if (allowed) allowed = prefixes_.HasUnit(std::string(credential.substr(0, kLimitedPrefixChars)), now);
  if (!allowed) refused_.fetch_add(1, std::memory_order_relaxed);
  return allowed;
}

void CredentialLimiter::RecordFailure(absl::string_view peer, absl::string_view credential) {
  absl::Time now = clock_();
  if (!peer.empty()) peers_.Take(std::string(peer), now);
  prefixes_.Take(std::string(credential.substr(0, kLimitedPrefixChars)), now);
}

std::string PeerAddress(absl::string_view grpc_peer) {
  std::string address = PeerIpAddress(grpc_peer);
  return address.empty() ? std::string(grpc_peer) : address;
}

absl::Status InvalidAccessTokenError() {
  return WithErrorInfo(absl::UnauthenticatedError(
                           "the access token is not valid: it is mistyped, unknown, rotated, expired or of a "
                           "deleted app; send a current token as 'authorization: Bearer crmpat_...'"),
                       ErrorReason::kTokenInvalid);
}

absl::Status InvalidAdminKeyError() {
  return WithErrorInfo(absl::UnauthenticatedError("the admin key is not valid: it is mistyped, unknown or revoked; "
                                                  "send a current key as 'authorization: Bearer crmadm_...'"),
                       ErrorReason::kAdminKeyInvalid);
}

}  // namespace crm
