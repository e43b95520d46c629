// Tests of the token format in common/token.h: prefix, length, alphabet,
// checksum and hint.
#include "common/token.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/crypto.h"

namespace crm {
namespace {

constexpr absl::string_view kBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr size_t kChecksumStart = kTokenPrefixChars + kTokenBodyChars;

// Returns a source that repeats `pattern` as often as needed.
RandomSource RepeatingSource(std::string pattern) {
  return [pattern](size_t count) {
    std::string bytes;
    while (bytes.size() < count) bytes += pattern;
    bytes.resize(count);
    return bytes;
  };
}

// Returns a source of the bytes 0, 2, 4, ..., so the body contains digits,
// upper-case and lower-case letters.
RandomSource EvenBytesSource() {
  return [](size_t count) {
    std::string bytes;
    for (size_t i = 0; i < count; ++i) bytes.push_back(static_cast<char>(2 * i));
    return bytes;
  };
}

// Returns another character of the same class (digit, upper, lower).
char OtherOfSameClass(char c) {
  if (absl::ascii_isdigit(c)) return c == '9' ? '0' : static_cast<char>(c + 1);
  if (absl::ascii_isupper(c)) return c == 'Z' ? 'A' : static_cast<char>(c + 1);
  return c == 'z' ? 'a' : static_cast<char>(c + 1);
}

TEST(Unit, TokenGeneratedIsValid) {
  std::string token = GenerateToken(TokenKind::kAppToken, RandomBytes);

  EXPECT_EQ(kTokenChars, token.size());
  EXPECT_TRUE(absl::StartsWith(token, "crmpat_"));
  EXPECT_TRUE(ValidateTokenFormat(TokenKind::kAppToken, token).ok());
}

TEST(Unit, AdminKeyGeneratedIsValid) {
  std::string key = GenerateToken(TokenKind::kAdminKey, RandomBytes);

  EXPECT_EQ(kTokenChars, key.size());
  EXPECT_TRUE(absl::StartsWith(key, "crmadm_"));
  EXPECT_TRUE(ValidateTokenFormat(TokenKind::kAdminKey, key).ok());
}

TEST(Unit, TokenRandomTokensDiffer) {
  EXPECT_NE(GenerateToken(TokenKind::kAppToken, RandomBytes),
            GenerateToken(TokenKind::kAppToken, RandomBytes));
}

TEST(Unit, TokenDeterministicSource) {
  std::string first = GenerateToken(TokenKind::kAppToken, RepeatingSource("\x01"));
  std::string second = GenerateToken(TokenKind::kAppToken, RepeatingSource("\x01"));

  EXPECT_EQ(first, second);
  EXPECT_EQ("crmpat_" + std::string(kTokenBodyChars, '1'), first.substr(0, kChecksumStart));
  EXPECT_TRUE(ValidateTokenFormat(TokenKind::kAppToken, first).ok());
}

TEST(Unit, TokenBodyMapsBytesToBase62) {
  std::string token = GenerateToken(TokenKind::kAppToken, EvenBytesSource());

  std::string expected_body;
  for (size_t i = 0; i < kTokenBodyChars; ++i) expected_body.push_back(kBase62[(2 * i) % 62]);
  EXPECT_EQ(expected_body, token.substr(kTokenPrefixChars, kTokenBodyChars));
  EXPECT_TRUE(ValidateTokenFormat(TokenKind::kAppToken, token).ok());
}

TEST(Unit, TokenSkipsBiasedBytes) {
  // 248 and above would favour the first base62 digits, so they are redrawn;
  // 247 is the largest byte used and maps to "z".
  std::string token = GenerateToken(TokenKind::kAppToken, RepeatingSource("\xf8\xff\xf7"));

  EXPECT_EQ(std::string(kTokenBodyChars, 'z'), token.substr(kTokenPrefixChars, kTokenBodyChars));
  EXPECT_TRUE(ValidateTokenFormat(TokenKind::kAppToken, token).ok());
}

TEST(Unit, TokenAnyChangedCharacterFails) {
  std::string token = GenerateToken(TokenKind::kAppToken, EvenBytesSource());

  for (size_t pos = kTokenPrefixChars; pos < token.size(); ++pos) {
    std::string changed = token;
    changed[pos] = OtherOfSameClass(token[pos]);
    absl::Status status = ValidateTokenFormat(TokenKind::kAppToken, changed);
    EXPECT_TRUE(absl::IsUnauthenticated(status)) << "position " << pos;
    EXPECT_TRUE(absl::StrContains(status.message(), "checksum")) << "position " << pos << ": " << status;
  }
}

TEST(Unit, TokenNonBase62CharacterFails) {
  std::string token = GenerateToken(TokenKind::kAppToken, RandomBytes);

  for (char bad : std::string("-_+/ .=\0\xe9", 10)) {
    std::string changed = token;
    changed[kTokenPrefixChars + 3] = bad;
    absl::Status status = ValidateTokenFormat(TokenKind::kAppToken, changed);
    EXPECT_TRUE(absl::IsUnauthenticated(status)) << "byte " << static_cast<int>(bad);
    EXPECT_TRUE(absl::StrContains(status.message(), "base62")) << status;
  }
}

TEST(Unit, TokenTruncatedOrExtendedFails) {
  std::string token = GenerateToken(TokenKind::kAppToken, RandomBytes);

  for (size_t length = 0; length < token.size(); ++length) {
    EXPECT_TRUE(absl::IsUnauthenticated(ValidateTokenFormat(TokenKind::kAppToken, token.substr(0, length))))
        << "length " << length;
  }
  absl::Status extended = ValidateTokenFormat(TokenKind::kAppToken, token + "0");
  EXPECT_TRUE(absl::IsUnauthenticated(extended));
  EXPECT_TRUE(absl::StrContains(extended.message(), "characters")) << extended;
}

TEST(Unit, TokenWrongPrefixFails) {
  std::string token = GenerateToken(TokenKind::kAppToken, RandomBytes);
  std::string body_and_checksum = token.substr(kTokenPrefixChars);

  for (absl::string_view prefix : {"CRMPAT_", "crmpak_", "xrmpat_", "crmpat-"}) {
    absl::Status status = ValidateTokenFormat(TokenKind::kAppToken, std::string(prefix) + body_and_checksum);
    EXPECT_TRUE(absl::IsUnauthenticated(status)) << prefix;
    EXPECT_TRUE(absl::StrContains(status.message(), "prefix")) << status;
  }
}

TEST(Unit, TokenKindsAreNotInterchangeable) {
  std::string token = GenerateToken(TokenKind::kAppToken, RandomBytes);
  std::string key = GenerateToken(TokenKind::kAdminKey, RandomBytes);

  EXPECT_TRUE(absl::IsUnauthenticated(ValidateTokenFormat(TokenKind::kAdminKey, token)));
  EXPECT_TRUE(absl::IsUnauthenticated(ValidateTokenFormat(TokenKind::kAppToken, key)));

  // The checksum covers the prefix, so relabelling an admin key fails too.
  std::string relabelled = "crmpat_" + key.substr(kTokenPrefixChars);
  absl::Status status = ValidateTokenFormat(TokenKind::kAppToken, relabelled);
  EXPECT_TRUE(absl::IsUnauthenticated(status));
  EXPECT_TRUE(absl::StrContains(status.message(), "checksum")) << status;
}

TEST(Unit, TokenErrorsNeverEchoToken) {
  std::string token = GenerateToken(TokenKind::kAppToken, RandomBytes);
  std::string changed = token;
  changed.back() = OtherOfSameClass(changed.back());
  absl::string_view body = absl::string_view(token).substr(kTokenPrefixChars, kTokenBodyChars);

  for (const std::string& candidate :
       {changed, token.substr(0, 20), "crmpak_" + token.substr(kTokenPrefixChars)}) {
    absl::Status status = ValidateTokenFormat(TokenKind::kAppToken, candidate);
    ASSERT_FALSE(status.ok());
    EXPECT_FALSE(absl::StrContains(status.message(), body.substr(0, 8))) << status;
  }
}

TEST(Unit, TokenHintShowsPrefixAndLastFour) {
  std::string token = GenerateToken(TokenKind::kAppToken, RandomBytes);

  std::string hint = TokenHint(token);

  EXPECT_EQ("crmpat_..." + token.substr(token.size() - 4), hint);
  EXPECT_FALSE(absl::StrContains(hint, token.substr(kTokenPrefixChars, 8)));
  EXPECT_EQ("(invalid)", TokenHint("crmpat_"));
}

}  // namespace
}  // namespace crm
