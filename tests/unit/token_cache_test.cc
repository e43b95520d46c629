// Tests of the token-check cache and the caching checker: bounds, maximum
// age, invalidation by app, results that raced with an invalidation, and
// fail-closed behaviour while the invalidation stream is not current.
#include <deque>

#include "common/crypto.h"
#include "common/token.h"
#include "gtest/gtest.h"
#include "services/crm/caching_token_checker.h"
#include "services/crm/token_cache.h"
#include "services/crm/token_usage.h"

namespace crm::data {
namespace {

Claims ClaimsFor(uint64_t app_id, int64_t sequence = 0) {
  Claims claims;
  claims.organization_id = 1;
  claims.app_id = app_id;
  claims.scopes = 0xF;
  claims.invalidation_sequence = sequence;
  return claims;
}

std::string Digest(int n) { return Sha256(std::to_string(n)); }

class FakeClock {
 public:
  absl::Time Now() const { return now_; }
  void Advance(absl::Duration duration) { now_ += duration; }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1800000000);
};

TEST(TokenCache, EntryBoundEvictsOldest) {
  TokenCacheOptions options;
  options.max_entries = 3;
  TokenCache cache(options);
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(cache.Insert(Digest(i), ClaimsFor(i)));
  EXPECT_EQ(cache.Size(), 3u);
  EXPECT_FALSE(cache.Lookup(Digest(1)).has_value());
  EXPECT_TRUE(cache.Lookup(Digest(4)).has_value());
  EXPECT_GT(cache.ApproximateBytes(), 0u);
}

TEST(TokenCache, MemoryStaysBoundedUnderChurn) {
  TokenCacheOptions options;
  options.max_entries = 100;
  TokenCache cache(options);
  for (int i = 0; i < 100000; ++i) cache.Insert(Digest(i % 1000), ClaimsFor(i % 50));
  EXPECT_LE(cache.Size(), 100u);
  EXPECT_LE(cache.ApproximateBytes(), 100 * 1024u);
}

// A token that reaches its own expiry is no longer returned from the cache,
// with no invalidation entry and long before max_age.
TEST(TokenCache, TokenExpiryEndsHits) {
  FakeClock clock;
  TokenCache cache(TokenCacheOptions{}, [&clock] { return clock.Now(); });
  Claims claims = ClaimsFor(7);
  claims.expire_time = clock.Now() + absl::Seconds(10);
  ASSERT_TRUE(cache.Insert(Digest(1), claims));
  clock.Advance(absl::Seconds(9));
  EXPECT_TRUE(cache.Lookup(Digest(1)).has_value());
  clock.Advance(absl::Seconds(1));
  EXPECT_FALSE(cache.Lookup(Digest(1)).has_value());
  EXPECT_EQ(cache.Size(), 0u);
}

TEST(TokenCache, ExpiredClaimsAreNotStored) {
  FakeClock clock;
  TokenCache cache(TokenCacheOptions{}, [&clock] { return clock.Now(); });
  Claims claims = ClaimsFor(7);
  claims.expire_time = clock.Now();
  EXPECT_FALSE(cache.Insert(Digest(1), claims));
  EXPECT_FALSE(cache.Lookup(Digest(1)).has_value());
}

TEST(PeerIpAddress, StripsSchemeAndPort) {
  EXPECT_EQ(PeerIpAddress("ipv4:127.0.0.1:53211"), "127.0.0.1");
  EXPECT_EQ(PeerIpAddress("ipv6:[::1]:53211"), "::1");
  EXPECT_EQ(PeerIpAddress("ipv6:[fe80::1%eth0]:80"), "fe80::1%eth0");
  // gRPC 1.51 percent-encodes the brackets and the zone's "%".
  EXPECT_EQ(PeerIpAddress("ipv6:%5B::1%5D:53211"), "::1");
  EXPECT_EQ(PeerIpAddress("ipv6:%5Bfe80::1%25eth0%5D:80"), "fe80::1%eth0");
  EXPECT_EQ(PeerIpAddress("unix:/tmp/socket"), "");
  EXPECT_EQ(PeerIpAddress("ipv6:::1"), "");
}

TEST(TokenCache, MaximumAgeExpires) {
  FakeClock clock;
  TokenCacheOptions options;
  options.max_age = absl::Seconds(30);
  TokenCache cache(options, [&clock] { return clock.Now(); });
  ASSERT_TRUE(cache.Insert(Digest(1), ClaimsFor(7)));
  clock.Advance(absl::Seconds(29));
  EXPECT_TRUE(cache.Lookup(Digest(1)).has_value());
  clock.Advance(absl::Seconds(2));
  EXPECT_FALSE(cache.Lookup(Digest(1)).has_value());
  EXPECT_EQ(cache.Size(), 0u);
}

TEST(TokenCache, InvalidationDropsOnlyThatApp) {
  TokenCache cache(TokenCacheOptions{});
  cache.Insert(Digest(1), ClaimsFor(7));
  cache.Insert(Digest(2), ClaimsFor(7));
  cache.Insert(Digest(3), ClaimsFor(8));
  cache.Invalidate(7, 1);
  EXPECT_FALSE(cache.Lookup(Digest(1)).has_value());
  EXPECT_FALSE(cache.Lookup(Digest(2)).has_value());
  EXPECT_TRUE(cache.Lookup(Digest(3)).has_value());
}

TEST(TokenCache, RacedAnswerIsStale) {
  TokenCache cache(TokenCacheOptions{});
  cache.Clear(10);
  cache.Invalidate(7, 11);
  cache.Invalidate(8, 12);
  // Read at sequence 10, before app 7's invalidation 11 was applied here.
  EXPECT_TRUE(cache.IsStale(7, 10));
  EXPECT_FALSE(cache.Insert(Digest(1), ClaimsFor(7, 10)));
  // App 9 had no invalidation after 10; app 7 none after 11.
  EXPECT_FALSE(cache.IsStale(9, 10));
  EXPECT_FALSE(cache.IsStale(7, 11));
  EXPECT_TRUE(cache.Insert(Digest(2), ClaimsFor(7, 12)));
  // Older than what Clear() forgot: cannot be judged, so stale.
  EXPECT_TRUE(cache.IsStale(9, 9));
}

TEST(TokenCache, ForgottenInvalidationsCountAsStale) {
  TokenCacheOptions options;
  options.remembered_invalidations = 2;
  TokenCache cache(options);
  cache.Clear(0);
  for (int sequence = 1; sequence <= 5; ++sequence) cache.Invalidate(100 + sequence, sequence);
  EXPECT_FALSE(cache.IsStale(999, 3)) << "4 and 5 are remembered and concern other apps";
  EXPECT_TRUE(cache.IsStale(999, 1)) << "2 and 3 are forgotten";
}

// A remote checker that records its calls and returns results from a queue.
class FakeRemote : public TokenChecker {
 public:
  void Check(const std::string& token, absl::Time deadline, Callback done) override {
    ++calls;
    absl::StatusOr<Claims> answer = answers.empty() ? absl::StatusOr<Claims>(absl::UnavailableError("down"))
                                                    : answers.front();
    if (!answers.empty()) answers.pop_front();
    done(answer);
  }

  int calls = 0;
  std::deque<absl::StatusOr<Claims>> answers;
};

absl::StatusOr<Claims> CheckNow(TokenChecker& checker, const std::string& token) {
  absl::StatusOr<Claims> result = absl::InternalError("no answer");
  checker.Check(token, absl::InfiniteFuture(), [&](absl::StatusOr<Claims> claims) { result = std::move(claims); });
  return result;
}

std::string ValidToken() { return GenerateToken(TokenKind::kAppToken, RandomBytes); }

TEST(CachingTokenChecker, HitsCacheWhileCurrent) {
  FakeRemote remote;
  TokenCache cache(TokenCacheOptions{});
  bool current = true;
  CachingTokenChecker checker(&remote, &cache, [&] { return current; });
  std::string token = ValidToken();
  remote.answers.push_back(ClaimsFor(7, 0));

  ASSERT_TRUE(CheckNow(checker, token).ok());
  ASSERT_TRUE(CheckNow(checker, token).ok());
  EXPECT_EQ(remote.calls, 1);
  EXPECT_EQ(checker.hits(), 1);
  EXPECT_EQ(checker.misses(), 1);
}

TEST(CachingTokenChecker, ChecksLiveWhileDisconnected) {
  FakeRemote remote;
  TokenCache cache(TokenCacheOptions{});
  bool current = true;
  CachingTokenChecker checker(&remote, &cache, [&] { return current; });
  std::string token = ValidToken();
  remote.answers.push_back(ClaimsFor(7, 0));
  ASSERT_TRUE(CheckNow(checker, token).ok());

  current = false;  // The stream dropped, so the cached result must not be used.
  absl::StatusOr<Claims> answer = CheckNow(checker, token);
  EXPECT_EQ(remote.calls, 2);
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable) << "auth unreachable fails the call";
}

TEST(CachingTokenChecker, RacedAnswerIsCheckedAgain) {
  FakeRemote remote;
  TokenCache cache(TokenCacheOptions{});
  cache.Clear(10);
  cache.Invalidate(7, 11);
  CachingTokenChecker checker(&remote, &cache, [] { return true; });
  remote.answers.push_back(ClaimsFor(7, 10));  // Read before the invalidation.
  remote.answers.push_back(ClaimsFor(7, 11));
  absl::StatusOr<Claims> answer = CheckNow(checker, ValidToken());
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->invalidation_sequence, 11);
  EXPECT_EQ(remote.calls, 2);
}

TEST(CachingTokenChecker, MalformedTokenNeverLeavesProcess) {
  FakeRemote remote;
  TokenCache cache(TokenCacheOptions{});
  CachingTokenChecker checker(&remote, &cache, [] { return true; });
  EXPECT_EQ(CheckNow(checker, "crmpat_short").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(remote.calls, 0);
}

}  // namespace
}  // namespace crm::data
