#include "common/token.h"

#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/error_details.h"

namespace crm {
namespace {

constexpr absl::string_view kBase62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// Bytes at or above this value are redrawn so that every base62 digit is
// equally likely (248 = 4 * 62).
constexpr unsigned kUnbiasedByteLimit = 248;

std::string Checksum(absl::string_view prefix_and_body) {
  std::string digest = Sha256(prefix_and_body);
  uint32_t value = (static_cast<uint32_t>(static_cast<unsigned char>(digest[0])) << 24) |
                   (static_cast<uint32_t>(static_cast<unsigned char>(digest[1])) << 16) |
                   (static_cast<uint32_t>(static_cast<unsigned char>(digest[2])) << 8) |
                   static_cast<uint32_t>(static_cast<unsigned char>(digest[3]));
  std::string out(kTokenChecksumChars, '0');
  for (size_t i = kTokenChecksumChars; i > 0; --i) {
    out[i - 1] = kBase62[value % 62];
    value /= 62;
  }
  return out;
}

}  // namespace

absl::string_view TokenPrefix(TokenKind kind) {
  return kind == TokenKind::kAppToken ? "crmpat_" : "crmadm_";
}

std::string GenerateToken(TokenKind kind, const RandomSource& random) {
  std::string token(TokenPrefix(kind));
  while (token.size() < kTokenPrefixChars + kTokenBodyChars) {
    for (unsigned char byte : random(kTokenBodyChars)) {
      if (byte >= kUnbiasedByteLimit) continue;
      token.push_back(kBase62[byte % 62]);
      if (token.size() == kTokenPrefixChars + kTokenBodyChars) break;
    }
  }
  absl::StrAppend(&token, Checksum(token));
  return token;
}

absl::Status ValidateTokenFormat(TokenKind kind, absl::string_view token) {
  const char* what = kind == TokenKind::kAppToken ? "access token" : "admin key";
  auto malformed = [kind](std::string message) {
    return WithErrorInfo(absl::UnauthenticatedError(message), kind == TokenKind::kAppToken
                                                                  ? ErrorReason::kTokenInvalid
                                                                  : ErrorReason::kAdminKeyInvalid);
  };
  if (!absl::StartsWith(token, TokenPrefix(kind))) {
    return malformed(absl::StrCat("malformed ", what, ": expected prefix ", TokenPrefix(kind)));
  }
  if (token.size() != kTokenChars) {
    return malformed(
        absl::StrCat("malformed ", what, ": expected ", kTokenChars, " characters, got ", token.size()));
  }
  for (char c : token.substr(kTokenPrefixChars)) {
    if (kBase62.find(c) == absl::string_view::npos) {
      return malformed(absl::StrCat("malformed ", what, ": characters after the prefix must be base62"));
    }
  }
  absl::string_view prefix_and_body = token.substr(0, kTokenPrefixChars + kTokenBodyChars);
  if (!ConstantTimeEquals(Checksum(prefix_and_body), token.substr(prefix_and_body.size()))) {
    return malformed(absl::StrCat("malformed ", what, ": checksum mismatch (mistyped or truncated?)"));
  }
  return absl::OkStatus();
}

std::string TokenHint(absl::string_view token) {
  if (token.size() < kTokenPrefixChars + 4) return "(invalid)";
  return absl::StrCat(token.substr(0, kTokenPrefixChars), "...", token.substr(token.size() - 4));
}

}  // namespace crm
