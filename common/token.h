// Format of the bearer secrets this product issues: private-app access
// tokens and organization admin keys.
//
// A token is `<prefix><body><checksum>`:
//   prefix    "crmpat_" for app tokens, "crmadm_" for admin keys, so that
//             people and secret scanners can tell what leaked;
//   body      32 base62 characters drawn from OpenSSL's CSPRNG without
//             modulo bias (about 190 bits);
//   checksum  6 base62 characters of the first 32 bits of SHA-256 over
//             prefix and body, so that a mistyped or truncated token is
//             rejected without a database lookup.
#ifndef CRM_COMMON_TOKEN_H_
#define CRM_COMMON_TOKEN_H_

#include <functional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace crm {

enum class TokenKind { kAppToken, kAdminKey };

inline constexpr size_t kTokenBodyChars = 32;
inline constexpr size_t kTokenChecksumChars = 6;
inline constexpr size_t kTokenPrefixChars = 7;
inline constexpr size_t kTokenChars = kTokenPrefixChars + kTokenBodyChars + kTokenChecksumChars;

// Source of random bytes; tests inject a deterministic one.
using RandomSource = std::function<std::string(size_t)>;

absl::string_view TokenPrefix(TokenKind kind);

// Issues a new token of `kind`, drawing randomness from `random`.
std::string GenerateToken(TokenKind kind, const RandomSource& random);

// Checks prefix, length, alphabet and checksum. Returns UNAUTHENTICATED with
// a message that never repeats the token, and reason TOKEN_INVALID or
// ADMIN_KEY_INVALID. The message names the check that failed, for logs and
// tools; servers reply to callers with InvalidAccessTokenError or
// InvalidAdminKeyError (credential_limiter.h) instead.
absl::Status ValidateTokenFormat(TokenKind kind, absl::string_view token);

// Returns the prefix and the last four characters, such as "crmpat_…a1B2",
// the only part of a token that logs and API responses may show.
std::string TokenHint(absl::string_view token);

}  // namespace crm

#endif  // CRM_COMMON_TOKEN_H_
