// Server secrets: the keys that protect tokens at rest and page tokens in
// flight. They come from a key file or from environment variables, never
// from the database, so a database dump alone yields no usable token.
//
// Key file format, one `name=value` per line, values in standard base64 of
// exactly 32 bytes, `#` starts a comment:
//   token_encryption_key=...   AES-256-GCM key for revealable tokens
//   token_hmac_key=...         HMAC-SHA-256 key for token lookup digests
//   page_token_key=...         HMAC-SHA-256 key for List page tokens
// Each variable CRM_TOKEN_ENCRYPTION_KEY, CRM_TOKEN_HMAC_KEY and
// CRM_PAGE_TOKEN_KEY, when set, overrides the file's value.
#ifndef CRM_COMMON_SECRETS_H_
#define CRM_COMMON_SECRETS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace crm {

struct Secrets {
  std::string token_encryption_key;
  // First 8 hex digits of SHA-256 over token_encryption_key, stored beside
  // each ciphertext so that a reveal after a key change fails clearly.
  std::string token_encryption_key_id;
  std::string token_hmac_key;
  std::string page_token_key;
};

// Loads secrets from `key_file` (may be empty) and the environment. Fails
// with a message naming the missing or invalid entry, never its value.
absl::StatusOr<Secrets> LoadSecrets(const std::string& key_file);

// Writes a new key file with fresh random keys and mode 0600. Fails if
// `path` already exists, so an existing key is never overwritten.
absl::Status WriteNewKeyFile(const std::string& path);

}  // namespace crm

#endif  // CRM_COMMON_SECRETS_H_
