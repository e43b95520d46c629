// Rate limit for failed credential lookups (app tokens and admin keys), so
// that guessing credentials costs the guesser time and costs the auth
// server and the database little.
//
// Failures are counted in two sets of token buckets. One is per peer, the
// caller's IP address without the port. The other is per credential prefix,
// the first kLimitedPrefixChars characters: the kind prefix such as "crmpat_"
// and the first 8 characters of the body. The peer limit slows one client
// that tries many credentials. The prefix limit slows many clients that
// try to complete a partly known credential. Each failure takes one unit
// from both buckets, and each bucket refills at a steady rate. A lookup is
// allowed while both buckets of the call contain at least one unit. Lookups
// that were allowed together and then fail take the bucket below zero (at
// most one burst), so concurrent callers cannot exceed the rate.
//
// Memory is bounded: each set keeps at most `max_tracked_keys` buckets.
// Buckets that have refilled completely are dropped first. When the set is
// still full, the bucket of a new key is not stored, so a flood of
// distinct prefixes cannot evict the buckets of the peers behind it.
#ifndef CRM_COMMON_CREDENTIAL_LIMITER_H_
#define CRM_COMMON_CREDENTIAL_LIMITER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace crm {

// Characters of a credential that key its prefix bucket: the 7-character
// kind prefix and 8 characters of the 32-character random body.
inline constexpr size_t kLimitedPrefixChars = 15;

struct CredentialLimiterOptions {
  // Failures a peer may have in a row, and failures per second it may
  // sustain after that.
  double peer_burst = 100;
  double peer_refill_per_second = 10;
  // The same for one credential prefix.
  double prefix_burst = 10;
  double prefix_refill_per_second = 1;
  // Buckets kept per set (peers, prefixes).
  size_t max_tracked_keys = 100000;
  std::function<absl::Time()> clock = absl::Now;
};

class CredentialLimiter {
 public:
  explicit CredentialLimiter(CredentialLimiterOptions options = {});

  // Returns whether a lookup of `credential` from `peer` may proceed. An
  // empty peer skips the peer limit (callers that cannot name the client,
  // such as the auth server's TokenService, whose peer is a CRM server).
  bool Allow(absl::string_view peer, absl::string_view credential);

  // Counts one failed lookup against `peer` and the credential's prefix.
  void RecordFailure(absl::string_view peer, absl::string_view credential);

  // Lookups that Allow() has rejected so far.
  int64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  struct Bucket {
    double units = 0;
    absl::Time updated;
  };
  class BucketSet {
   public:
    BucketSet(double burst, double refill_per_second, size_t max_keys)
        : burst_(burst), refill_per_second_(refill_per_second), max_keys_(max_keys) {}
    bool HasUnit(const std::string& key, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
    void Take(const std::string& key, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

   private:
    double Refilled(const Bucket& bucket, absl::Time now) const;
    void DropFullBuckets(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

    const double burst_;
    const double refill_per_second_;
    const size_t max_keys_;
    absl::Mutex mu_;
    absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  };

  const std::function<absl::Time()> clock_;
  BucketSet peers_;
  BucketSet prefixes_;
  std::atomic<int64_t> refused_{0};
};

// Returns the limiter's key for a gRPC peer: its IP address (PeerIpAddress
// in ip_allowlist.h), so "ipv4:10.0.0.7:41234" becomes "10.0.0.7". Other
// forms, such as "unix:/run/x.sock", are returned unchanged.
std::string PeerAddress(absl::string_view grpc_peer);

// Returns the one error of every failed app token lookup: UNAUTHENTICATED,
// one message and ErrorInfo reason TOKEN_INVALID. The token may be malformed,
// unknown, rotated, expired, of a deleted app or rejected by the limiter, and
// the caller cannot tell which.
absl::Status InvalidAccessTokenError();

// The same for admin keys, with reason ADMIN_KEY_INVALID.
absl::Status InvalidAdminKeyError();

}  // namespace crm

#endif  // CRM_COMMON_CREDENTIAL_LIMITER_H_
