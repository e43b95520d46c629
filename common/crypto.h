// Cryptographic primitives on top of OpenSSL: random bytes from the OS
// CSPRNG, HMAC-SHA-256, AES-256-GCM sealing and constant-time comparison.
// Keys and outputs are raw bytes held in std::string.
#ifndef CRM_COMMON_CRYPTO_H_
#define CRM_COMMON_CRYPTO_H_

#include <cstddef>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace crm {

inline constexpr size_t kAes256KeyBytes = 32;
inline constexpr size_t kHmacSha256Bytes = 32;

// Returns `count` bytes from OpenSSL's CSPRNG. Aborts the process when the
// generator fails, because continuing would issue guessable secrets.
std::string RandomBytes(size_t count);

// Returns the 32-byte HMAC-SHA-256 of `data` under `key`.
std::string HmacSha256(absl::string_view key, absl::string_view data);

// Returns the SHA-256 of `data`.
std::string Sha256(absl::string_view data);

// Compares two byte strings in time that depends only on their lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// Encrypts `plaintext` with AES-256-GCM under a 32-byte `key`, binding it to
// `associated_data`. Returns nonce (12 bytes) || ciphertext || tag (16 bytes).
absl::StatusOr<std::string> SealAes256Gcm(absl::string_view key, absl::string_view plaintext,
                                          absl::string_view associated_data);

// Reverses SealAes256Gcm. Fails with DATA_LOSS when the key, the associated
// data or any byte of `sealed` differs from what was sealed.
absl::StatusOr<std::string> OpenAes256Gcm(absl::string_view key, absl::string_view sealed,
                                          absl::string_view associated_data);

// Hex encoding of bytes, lower case.
std::string HexEncode(absl::string_view bytes);

}  // namespace crm

#endif  // CRM_COMMON_CRYPTO_H_
