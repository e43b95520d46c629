// Unit tests of the failed-lookup limiter, peer address parsing and the
// loopback rules that decide where plaintext is accepted.
#include <string>

#include "absl/strings/str_cat.h"
#include "common/credential_limiter.h"
#include "common/tls.h"
#include "gtest/gtest.h"

namespace crm {
namespace {

constexpr char kToken[] = "crmpat_AAAAAAAAbbbbbbbbbbbbbbbbbbbbbbbbcccccc";
constexpr char kSamePrefix[] = "crmpat_AAAAAAAAzzzzzzzzzzzzzzzzzzzzzzzzcccccc";
constexpr char kOtherPrefix[] = "crmpat_BBBBBBBBbbbbbbbbbbbbbbbbbbbbbbbbcccccc";

struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1000000);
};

// Returns a token whose limiter prefix differs for each `index`, so every
// failure with it lands in a new prefix bucket and only the peer bucket fills.
std::string TokenWithPrefix(int index) { return absl::StrCat("crmpat_", index, "AAAAAAA"); }

CredentialLimiterOptions Options(FakeClock* clock) {
  CredentialLimiterOptions options;
  options.peer_burst = 3;
  options.peer_refill_per_second = 1;
  options.prefix_burst = 2;
  options.prefix_refill_per_second = 0.5;
  options.clock = [clock] { return clock->now; };
  return options;
}

TEST(CredentialLimiter, RefusesPeerAfterBurst) {
  FakeClock clock;
  CredentialLimiter limiter(Options(&clock));
  const char* tokens[] = {kToken, kOtherPrefix, "crmpat_CCCCCCCC"};
  for (const char* token : tokens) {
    EXPECT_TRUE(limiter.Allow("10.0.0.1", token));
    limiter.RecordFailure("10.0.0.1", token);
  }
  EXPECT_FALSE(limiter.Allow("10.0.0.1", "crmpat_DDDDDDDD"));
  EXPECT_TRUE(limiter.Allow("10.0.0.2", "crmpat_DDDDDDDD"));
  EXPECT_EQ(limiter.refused(), 1);
}

TEST(CredentialLimiter, RefillsOverTime) {
  FakeClock clock;
  CredentialLimiter limiter(Options(&clock));
  for (int i = 0; i < 3; ++i) limiter.RecordFailure("10.0.0.1", TokenWithPrefix(i));
  EXPECT_FALSE(limiter.Allow("10.0.0.1", "crmpat_XXXXXXXX"));

  clock.now += absl::Milliseconds(999);
  EXPECT_FALSE(limiter.Allow("10.0.0.1", "crmpat_XXXXXXXX"));
  clock.now += absl::Milliseconds(1);
  EXPECT_TRUE(limiter.Allow("10.0.0.1", "crmpat_XXXXXXXX"));
}

TEST(CredentialLimiter, ConcurrentFailuresCountAsDebt) {
  FakeClock clock;
  CredentialLimiter limiter(Options(&clock));
  // Five lookups allowed at once, as concurrent calls are, then all fail.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Allow("10.0.0.1", TokenWithPrefix(i)));
  for (int i = 0; i < 5; ++i) limiter.RecordFailure("10.0.0.1", TokenWithPrefix(i));

  // The peer bucket is at 3 - 5 = -2 units, so at 1 unit per second it has
  // one unit again after 3 s.
  clock.now += absl::Milliseconds(2900);
  EXPECT_FALSE(limiter.Allow("10.0.0.1", "crmpat_XXXXXXXX"));
  clock.now += absl::Milliseconds(100);
  EXPECT_TRUE(limiter.Allow("10.0.0.1", "crmpat_XXXXXXXX"));
}

TEST(CredentialLimiter, LimitsPrefixAcrossPeers) {
  FakeClock clock;
  CredentialLimiter limiter(Options(&clock));
  limiter.RecordFailure("10.0.0.1", kToken);
  limiter.RecordFailure("10.0.0.2", kToken);
  EXPECT_FALSE(limiter.Allow("10.0.0.3", kSamePrefix));
  EXPECT_TRUE(limiter.Allow("10.0.0.3", kOtherPrefix));
}

TEST(CredentialLimiter, EmptyPeerChecksPrefixOnly) {
  FakeClock clock;
  CredentialLimiter limiter(Options(&clock));
  for (int i = 0; i < 10; ++i) limiter.RecordFailure("", TokenWithPrefix(i));
  EXPECT_TRUE(limiter.Allow("", kToken));
  limiter.RecordFailure("", kToken);
  limiter.RecordFailure("", kToken);
  EXPECT_FALSE(limiter.Allow("", kSamePrefix));
}

TEST(CredentialLimiter, FullSetKeepsExistingBuckets) {
  FakeClock clock;
  CredentialLimiterOptions options = Options(&clock);
  options.max_tracked_keys = 2;
  CredentialLimiter limiter(options);
  limiter.RecordFailure("10.0.0.1", kToken);
  limiter.RecordFailure("10.0.0.1", kToken);
  limiter.RecordFailure("10.0.0.1", kToken);
  // New prefixes do not fit, and do not evict the peer's bucket.
  for (int i = 0; i < 50; ++i) limiter.RecordFailure("10.0.0.2", absl::StrCat("crmpat_", i, "ZZZZZZZ"));
  EXPECT_FALSE(limiter.Allow("10.0.0.1", kOtherPrefix));
  // Once refilled, buckets are dropped to make room.
  clock.now += absl::Seconds(60);
  limiter.RecordFailure("10.0.0.3", kOtherPrefix);
  EXPECT_TRUE(limiter.Allow("10.0.0.1", kOtherPrefix));
}

TEST(PeerAddress, DropsSchemeAndPort) {
  EXPECT_EQ(PeerAddress("ipv4:10.0.0.7:41234"), "10.0.0.7");
  EXPECT_EQ(PeerAddress("ipv6:[::1]:41234"), "::1");
  // gRPC 1.51 percent-encodes IPv6 peers; the port must not reach the key.
  EXPECT_EQ(PeerAddress("ipv6:%5B::1%5D:41234"), "::1");
  EXPECT_EQ(PeerAddress("ipv6:%5Bfe80::1%25eth0%5D:5"), "fe80::1%eth0");
  EXPECT_EQ(PeerAddress("unix:/run/crm.sock"), "unix:/run/crm.sock");
}

TEST(Tls, LoopbackHosts) {
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_TRUE(IsLoopbackHost("[::1]"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("::"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("127.0.0.1.example.com"));
  EXPECT_FALSE(IsLoopbackHost("127.0.0.256"));
}

TEST(Tls, LoopbackTargets) {
  EXPECT_TRUE(IsLoopbackTarget("127.0.0.1:50053"));
  EXPECT_TRUE(IsLoopbackTarget("localhost:50053"));
  EXPECT_TRUE(IsLoopbackTarget("[::1]:50053"));
  EXPECT_TRUE(IsLoopbackTarget("ipv4:127.0.0.1:50053,127.0.0.1:50063"));
  EXPECT_TRUE(IsLoopbackTarget("dns:///localhost:50053"));
  EXPECT_TRUE(IsLoopbackTarget("unix:/run/auth.sock"));
  EXPECT_FALSE(IsLoopbackTarget("ipv4:127.0.0.1:50053,10.0.0.2:50053"));
  EXPECT_FALSE(IsLoopbackTarget("dns:///auth-internal:50053"));
  EXPECT_FALSE(IsLoopbackTarget("auth:50053"));
  EXPECT_FALSE(IsLoopbackTarget("xds:///auth"));
  EXPECT_FALSE(IsLoopbackTarget(""));
}

TEST(Tls, PlaintextOnlyOnLoopbackUnlessAllowed) {
  EXPECT_TRUE(CheckPlaintextAllowed("server", true, false).ok());
  EXPECT_TRUE(CheckPlaintextAllowed("server", false, true).ok());
  absl::Status rejected = CheckPlaintextAllowed("server", false, false);
  EXPECT_EQ(rejected.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(rejected.message().find("--allow_insecure_plaintext"), absl::string_view::npos) << rejected;
}

TEST(Tls, IncompleteFilesAreRejected) {
  TlsServerFiles server;
  server.cert_file = "/nonexistent/cert.pem";
  EXPECT_EQ(MakeServerCredentials(server).status().code(), absl::StatusCode::kInvalidArgument);
  server.key_file = "/nonexistent/key.pem";
  EXPECT_EQ(MakeServerCredentials(server).status().code(), absl::StatusCode::kNotFound);

  TlsServerFiles client_ca_only;
  client_ca_only.client_ca_file = "/nonexistent/ca.pem";
  EXPECT_EQ(MakeServerCredentials(client_ca_only).status().code(), absl::StatusCode::kInvalidArgument);

  TlsChannelFiles channel;
  channel.cert_file = "/nonexistent/client.pem";
  channel.key_file = "/nonexistent/client.key";
  EXPECT_EQ(MakeChannelCredentials(channel).status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_TRUE(MakeServerCredentials({}).ok());
  EXPECT_TRUE(MakeChannelCredentials({}).ok());
}

}  // namespace
}  // namespace crm
