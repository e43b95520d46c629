// Server secrets: the keys that protect tokens at rest and page tokens in
// flight. They come from a key file or from environment variables, never
// from the database, so a database dump alone yields no usable token.
//
// Key file format, one `name=value` per line, values in standard base64 of
// exactly 32 bytes, `#` starts a comment:
//   token_encryption_key.2=...   AES-256-GCM key for revealable tokens
//   token_encryption_key.1=...   an older one, still read
//   token_hmac_key.1=...         HMAC-SHA-256 key for token lookup digests
//   page_token_key.1=...         HMAC-SHA-256 key for List page tokens
// The number after the dot orders the keys of one name. The highest is the
// newest, which new writes use. The others stay readable, so a key can be
// rotated while tokens written under the older key still work. A name
// without a number (the format before rotation existed) counts as number 0.
// An entry `token_encryption_key.current=1` makes key 1 the one new writes
// use even when a higher number exists, so that a new key can reach every
// server before any server writes with it.
//
// Each variable CRM_TOKEN_ENCRYPTION_KEY, CRM_TOKEN_HMAC_KEY and
// CRM_PAGE_TOKEN_KEY, when set, replaces every key of its name from the
// file. Its value is one base64 key (number 0) or a comma-separated list of
// NUMBER:BASE64 entries with at most one current:NUMBER entry, such as
// "2:AAAA...,1:BBBB...,current:1".
//
// The database records each key by its id, the first 8 hex digits of the
// SHA-256 of the key, so renumbering keys in the file never pairs a
// ciphertext with the wrong key. The id reveals nothing useful about a
// random 32-byte key.
#ifndef CRM_COMMON_SECRETS_H_
#define CRM_COMMON_SECRETS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm {

struct Secrets {
  // The current key of each name (the newest unless a `current` entry names
  // another): new ciphertexts, digests and page tokens use these.
  std::string token_encryption_key;
  // KeyId(token_encryption_key), stored beside each ciphertext.
  std::string token_encryption_key_id;
  std::string token_hmac_key;
  std::string page_token_key;
  // The other keys, still read, highest number first. Ciphertexts and lookup
  // digests written under them stay valid until `crmctl reencrypt-tokens`
  // moves them to the newest key.
  std::vector<std::string> older_token_encryption_keys;
  std::vector<std::string> older_token_hmac_keys;
};

// Returns the id under which the database records `key`: the first 8 hex
// digits of its SHA-256.
std::string KeyId(absl::string_view key);

// Loads secrets from `key_file` (may be empty) and the environment. Fails
// with a message naming the missing or invalid entry, never its value.
// Keys of page_token_key older than the newest are accepted in the file but
// not used: page tokens signed with them are rejected.
absl::StatusOr<Secrets> LoadSecrets(const std::string& key_file);

// Returns one line describing the loaded keys by name, number of keys and
// id, for the start-up log. It contains no key material.
std::string DescribeSecrets(const Secrets& secrets);

// Writes a new key file with fresh random keys numbered 1 and mode 0600.
// Fails if `path` already exists, so an existing key is never overwritten.
absl::Status WriteNewKeyFile(const std::string& path);

// Appends a new token_encryption_key and token_hmac_key to an existing key
// file, numbered one above the highest number of each name, and returns
// one description per new key with its id. Unless the file already has a
// `current` entry for the name, it also appends one naming the key that was
// current, so that servers read the new key but do not write with it until
// that entry is removed. Other lines are kept as they are.
absl::StatusOr<std::vector<std::string>> AddNewestKeys(const std::string& path);

}  // namespace crm

#endif  // CRM_COMMON_SECRETS_H_
