// Fuzzes the bearer token format in common/token.h.
//
// Properties checked on every input:
//   - ValidateTokenFormat accepts only the documented shape (prefix of the
//     kind, 45 characters, base62 after the prefix), and an accepted token
//     re-formats identically: GenerateToken, fed the base62 digits of its
//     body, returns the same string.
//   - A rejection message is one of the fixed texts and never repeats any
//     part of the input.
//   - A token generated from the input's bytes is accepted for its own kind
//     only, and every truncation, extension and changed checksum digit of it
//     is rejected.
//   - TokenHint shows the prefix and the last four characters, nothing more.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/token.h"
#include "tests/fuzz/fuzz_check.h"

namespace crm {
namespace {

constexpr absl::string_view kBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr TokenKind kKinds[] = {TokenKind::kAppToken, TokenKind::kAdminKey};

TokenKind OtherKind(TokenKind kind) {
  return kind == TokenKind::kAppToken ? TokenKind::kAdminKey : TokenKind::kAppToken;
}

// Whether `message` is one of the texts ValidateTokenFormat documents, with
// only the length as a variable part.
bool IsFixedRejection(TokenKind kind, absl::string_view message, size_t input_size) {
  std::string kind_name = kind == TokenKind::kAppToken ? "access token" : "admin key";
  std::string start = absl::StrCat("malformed ", kind_name, ": ");
  return message == absl::StrCat(start, "expected prefix ", TokenPrefix(kind)) ||
         message == absl::StrCat(start, "expected ", kTokenChars, " characters, got ", input_size) ||
         message == absl::StrCat(start, "characters after the prefix must be base62") ||
         message == absl::StrCat(start, "checksum mismatch (mistyped or truncated?)");
}

// Returns the token GenerateToken issues when its random bytes are the
// base62 digit values of `body`.
std::string Reformat(TokenKind kind, absl::string_view body) {
  std::string digits;
  for (char c : body) digits.push_back(static_cast<char>(kBase62.find(c)));
  return GenerateToken(kind, [&digits](size_t) { return digits; });
}

void CheckValidation(absl::string_view input) {
  for (TokenKind kind : kKinds) {
    absl::Status status = ValidateTokenFormat(kind, input);
    if (!status.ok()) {
      FUZZ_CHECK(status.code() == absl::StatusCode::kUnauthenticated, status.ToString());
      FUZZ_CHECK(IsFixedRejection(kind, status.message(), input.size()), status.message());
      continue;
    }
    FUZZ_CHECK(input.size() == kTokenChars, "accepted a token of the wrong length");
    FUZZ_CHECK(absl::StartsWith(input, TokenPrefix(kind)), "accepted a token without its prefix");
    absl::string_view body = input.substr(kTokenPrefixChars, kTokenBodyChars);
    for (char c : input.substr(kTokenPrefixChars)) {
      FUZZ_CHECK(kBase62.find(c) != absl::string_view::npos, "accepted a non-base62 character");
    }
    FUZZ_CHECK(Reformat(kind, body) == input, "an accepted token does not re-format identically");
    FUZZ_CHECK(!ValidateTokenFormat(OtherKind(kind), input).ok(), "a token is valid for both kinds");
  }
}

// Feeds the input's bytes to GenerateToken, then zero bytes once they run
// out (zero is below the bias limit, so generation always ends).
std::string GenerateFromInput(TokenKind kind, absl::string_view input) {
  size_t next = 0;
  return GenerateToken(kind, [&input, &next](size_t count) {
    std::string bytes;
    for (size_t i = 0; i < count; ++i) bytes.push_back(next < input.size() ? input[next++] : '\0');
    return bytes;
  });
}

void CheckGenerated(absl::string_view input) {
  TokenKind kind = !input.empty() && (input[0] & 1) ? TokenKind::kAdminKey : TokenKind::kAppToken;
  std::string token = GenerateFromInput(kind, input.empty() ? input : input.substr(1));
  FUZZ_CHECK(ValidateTokenFormat(kind, token).ok(), "a generated token is rejected");
  FUZZ_CHECK(!ValidateTokenFormat(OtherKind(kind), token).ok(), "a generated token is valid for the other kind");

  for (size_t length = 0; length < token.size(); ++length) {
    FUZZ_CHECK(!ValidateTokenFormat(kind, absl::string_view(token).substr(0, length)).ok(),
               "a truncated token is accepted");
  }
  FUZZ_CHECK(!ValidateTokenFormat(kind, token + "0").ok(), "an extended token is accepted");
  // Each checksum digit depends on the digest, so changing one digit alone
  // always breaks it.
  for (size_t i = kTokenPrefixChars + kTokenBodyChars; i < token.size(); ++i) {
    std::string changed = token;
    changed[i] = changed[i] == 'z' ? '0' : 'z';
    FUZZ_CHECK(!ValidateTokenFormat(kind, changed).ok(), "a changed checksum digit is accepted");
  }

  std::string hint = TokenHint(token);
  FUZZ_CHECK(hint == absl::StrCat(TokenPrefix(kind), "...", token.substr(token.size() - 4)),
             absl::StrCat("unexpected hint ", hint));
}

}  // namespace
}  // namespace crm

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  crm::CheckValidation(input);
  crm::CheckGenerated(input);
  return 0;
}
