// Guessing credentials against real servers: every failed token check gets
// the same response, tokens with a bad checksum never reach the auth server or
// the database, and failed lookups are limited per client address and per
// token prefix on the CRM server and per peer and key prefix for admin keys
// on the auth server.
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/credential_limiter.h"
#include "common/crypto.h"
#include "common/token.h"
#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

// A token of the right prefix, length and alphabet whose checksum is wrong.
std::string TokenWithBadChecksum() {
  std::string token = GenerateToken(TokenKind::kAppToken, RandomBytes);
  char& last = token.back();
  last = last == 'A' ? 'B' : 'A';
  return token;
}

// A well-formed token that was never issued.
std::string UnknownToken() { return GenerateToken(TokenKind::kAppToken, RandomBytes); }

// A well-formed token that shares its first kLimitedPrefixChars characters,
// and so its limiter bucket, with `like`.
std::string UnknownTokenWithPrefixOf(const std::string& like) {
  constexpr absl::string_view kBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string fresh = UnknownToken();
  std::string body = absl::StrCat(like.substr(kTokenPrefixChars, kLimitedPrefixChars - kTokenPrefixChars),
                                  fresh.substr(kLimitedPrefixChars, kTokenPrefixChars + kTokenBodyChars -
                                                                        kLimitedPrefixChars));
  // GenerateToken turns a random byte b below 248 into base62 digit b % 62,
  // so feeding each digit's index issues `body` with a correct checksum.
  RandomSource replay = [body, kBase62](size_t count) {
    std::string bytes;
    for (char c : body) bytes.push_back(static_cast<char>(kBase62.find(c)));
    bytes.resize(count, '\0');
    return bytes;
  };
  return GenerateToken(TokenKind::kAppToken, replay);
}

// Refill rate of the limiter buckets in these tests: slow enough that no
// bucket refills while a test runs.
constexpr double kNoRefillPerSecond = 0.001;

grpc::Status ListLeads(TestStack& stack, const std::string& token, const std::string& forwarded_for = "") {
  std::unique_ptr<grpc::ClientContext> context = WithBearer(token);
  if (!forwarded_for.empty()) context->AddMetadata("x-forwarded-for", forwarded_for);
  crm::data::v1::ListLeadsRequest request;
  crm::data::v1::ListLeadsResponse response;
  return stack.crm().ListLeads(context.get(), request, &response);
}

TEST(BruteForce, FailuresLookIdentical) {
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start();
  ASSERT_TRUE(stack.ok()) << stack.status();
  std::string admin_key = (*stack)->NewOrganization();
  auto all = AllScopes();
  crm::auth::v1::CreatePrivateAppResponse rotated = (*stack)->NewApp(admin_key, all, "Rotated");
  crm::auth::v1::CreatePrivateAppResponse deleted = (*stack)->NewApp(admin_key, all, "Deleted");
  ASSERT_TRUE(ListLeads(**stack, rotated.access_token()).ok());

  crm::auth::v1::RotateAccessTokenRequest rotate;
  rotate.set_id(rotated.private_app().id());
  crm::auth::v1::RotateAccessTokenResponse rotate_response;
  ASSERT_TRUE((*stack)->apps().RotateAccessToken(WithBearer(admin_key).get(), rotate, &rotate_response).ok());
  crm::auth::v1::DeletePrivateAppRequest remove;
  remove.set_id(deleted.private_app().id());
  crm::auth::v1::DeletePrivateAppResponse remove_response;
  ASSERT_TRUE((*stack)->apps().DeletePrivateApp(WithBearer(admin_key).get(), remove, &remove_response).ok());
  (*stack)->AwaitApplied(remove_response.invalidation_sequence());

  std::string truncated = UnknownToken().substr(0, kTokenChars - 1);
  std::map<std::string, std::string> bad_tokens = {
      {"bad checksum", TokenWithBadChecksum()},
      {"truncated", truncated},
      {"wrong prefix", absl::StrCat("crmadm_", UnknownToken().substr(kTokenPrefixChars))},
      {"unknown", UnknownToken()},
      {"rotated", rotated.access_token()},
      {"app deleted", deleted.access_token()},
  };
  grpc::Status first = ListLeads(**stack, bad_tokens.begin()->second);
  EXPECT_EQ(first.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  for (const auto& [label, token] : bad_tokens) {
    grpc::Status status = ListLeads(**stack, token);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << label;
    EXPECT_EQ(status.error_message(), first.error_message()) << label;
    EXPECT_EQ(status.error_details(), first.error_details()) << label;
  }

  // Admin keys: malformed and unknown keys get one response too.
  std::map<std::string, std::string> bad_keys = {
      {"bad checksum", admin_key.substr(0, kTokenChars - 1) + (admin_key.back() == 'A' ? "B" : "A")},
      {"unknown", GenerateToken(TokenKind::kAdminKey, RandomBytes)},
      {"app token", rotate_response.access_token()},
  };
  std::string first_message;
  for (const auto& [label, key] : bad_keys) {
    crm::auth::v1::ListPrivateAppsResponse apps;
    grpc::Status status = (*stack)->apps().ListPrivateApps(WithBearer(key).get(), {}, &apps);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << label;
    if (first_message.empty()) first_message = status.error_message();
    EXPECT_EQ(status.error_message(), first_message) << label;
  }
}

TEST(BruteForce, BadChecksumBurstNeverReachesAuthOrDatabase) {
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start();
  ASSERT_TRUE(stack.ok()) << stack.status();
  std::string admin_key = (*stack)->NewOrganization();
  std::string valid = (*stack)->NewApp(admin_key, AllScopes()).access_token();
  ASSERT_TRUE(ListLeads(**stack, valid).ok());

  int64_t lookups_before = (*stack)->auth_server().credential_lookups();
  int64_t remote_before = (*stack)->crm_server().remote_token_checks();
  int64_t malformed_before = (*stack)->crm_server().malformed_tokens();
  constexpr int kBurst = 10000;
  int unauthenticated = 0;
  for (int i = 0; i < kBurst; ++i) {
    if (ListLeads(**stack, TokenWithBadChecksum()).error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      ++unauthenticated;
    }
  }
  EXPECT_EQ(unauthenticated, kBurst);
  EXPECT_EQ((*stack)->crm_server().malformed_tokens() - malformed_before, kBurst);
  EXPECT_EQ((*stack)->crm_server().remote_token_checks(), remote_before) << "a bad checksum reached the auth server";
  EXPECT_EQ((*stack)->auth_server().credential_lookups(), lookups_before) << "a bad checksum reached the database";

  // The valid token still works from the same address after the burst.
  EXPECT_TRUE(ListLeads(**stack, valid).ok());
}

TEST(BruteForce, PeerLimitStopsLookupsButNotCachedTokens) {
  StackOptions options;
  options.credential_limiter.peer_burst = 5;
  options.credential_limiter.peer_refill_per_second = kNoRefillPerSecond;
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  std::string admin_key = (*stack)->NewOrganization();
  std::string cached = (*stack)->NewApp(admin_key, AllScopes(), "Cached").access_token();
  std::string uncached = (*stack)->NewApp(admin_key, AllScopes(), "Uncached").access_token();
  ASSERT_TRUE(ListLeads(**stack, cached).ok());

  int64_t remote_before = (*stack)->crm_server().remote_token_checks();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ListLeads(**stack, UnknownToken()).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ((*stack)->crm_server().remote_token_checks() - remote_before, 5);

  // The sixth unknown token, and even a valid one that is not cached, are
  // rejected without a remote check.
  int64_t rejected_before = (*stack)->crm_server().refused_token_checks();
  EXPECT_EQ(ListLeads(**stack, UnknownToken()).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListLeads(**stack, uncached).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ((*stack)->crm_server().remote_token_checks() - remote_before, 5);
  EXPECT_EQ((*stack)->crm_server().refused_token_checks() - rejected_before, 2);

  // A token already in the cache passes.
  EXPECT_TRUE(ListLeads(**stack, cached).ok());
}

TEST(BruteForce, PeerLimitKeyedByClientBehindProxy) {
  StackOptions options;
  options.credential_limiter.peer_burst = 5;
  options.credential_limiter.peer_refill_per_second = kNoRefillPerSecond;
  options.adjust_crm_options = [](crm::data::CrmServerOptions& crm) {
    crm.client_ip_header = "x-forwarded-for";
    crm.trusted_proxy_cidrs = {"127.0.0.0/8"};
  };
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  std::string uncached = (*stack)->NewApp((*stack)->NewOrganization(), AllScopes()).access_token();

  int64_t remote_before = (*stack)->crm_server().remote_token_checks();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ListLeads(**stack, UnknownToken(), "203.0.113.1").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ((*stack)->crm_server().remote_token_checks() - remote_before, 5);
  int64_t rejected_before = (*stack)->crm_server().refused_token_checks();
  EXPECT_EQ(ListLeads(**stack, UnknownToken(), "203.0.113.1").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ((*stack)->crm_server().refused_token_checks() - rejected_before, 1);

  // Another client of the same proxy keeps its own count.
  grpc::Status other_client = ListLeads(**stack, uncached, "203.0.113.2");
  EXPECT_TRUE(other_client.ok()) << other_client.error_message();
  EXPECT_EQ((*stack)->crm_server().refused_token_checks() - rejected_before, 1);
}

TEST(BruteForce, PrefixLimitStopsGuessesOfOneToken) {
  StackOptions options;
  options.credential_limiter.prefix_burst = 3;
  options.credential_limiter.prefix_refill_per_second = kNoRefillPerSecond;
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  (*stack)->NewOrganization();

  std::string target = UnknownToken();
  int64_t remote_before = (*stack)->crm_server().remote_token_checks();
  for (int i = 0; i < 3; ++i) {
    std::string guess = UnknownTokenWithPrefixOf(target);
    ASSERT_TRUE(ValidateTokenFormat(TokenKind::kAppToken, guess).ok());
    ASSERT_EQ(guess.substr(0, kLimitedPrefixChars), target.substr(0, kLimitedPrefixChars));
    EXPECT_EQ(ListLeads(**stack, guess).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ((*stack)->crm_server().remote_token_checks() - remote_before, 3);

  EXPECT_EQ(ListLeads(**stack, UnknownTokenWithPrefixOf(target)).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ((*stack)->crm_server().remote_token_checks() - remote_before, 3) << "the fourth guess was checked";

  // Another prefix from the same address is still checked.
  EXPECT_EQ(ListLeads(**stack, UnknownToken()).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ((*stack)->crm_server().remote_token_checks() - remote_before, 4);
}

TEST(BruteForce, AdminKeyLookupsAreLimitedPerPeer) {
  StackOptions options;
  options.credential_limiter.peer_burst = 3;
  options.credential_limiter.peer_refill_per_second = kNoRefillPerSecond;
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  std::string admin_key = (*stack)->NewOrganization();

  int64_t lookups_before = (*stack)->auth_server().credential_lookups();
  for (int i = 0; i < 3; ++i) {
    crm::auth::v1::ListPrivateAppsResponse apps;
    grpc::Status status = (*stack)->apps().ListPrivateApps(
        WithBearer(GenerateToken(TokenKind::kAdminKey, RandomBytes)).get(), {}, &apps);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ((*stack)->auth_server().credential_lookups() - lookups_before, 3);

  crm::auth::v1::ListPrivateAppsResponse apps;
  grpc::Status rejected = (*stack)->apps().ListPrivateApps(WithBearer(admin_key).get(), {}, &apps);
  EXPECT_EQ(rejected.error_code(), grpc::StatusCode::UNAUTHENTICATED) << "the peer is over its limit";
  EXPECT_EQ((*stack)->auth_server().credential_lookups() - lookups_before, 3) << "a rejected key reached the database";
  EXPECT_GE((*stack)->auth_server().refused_lookups(), 1);
}

}  // namespace
}  // namespace crm::testing
