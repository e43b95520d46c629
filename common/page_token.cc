#include "common/page_token.h"

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "common/crypto.h"
#include "common/error_details.h"

namespace crm {
namespace {

constexpr size_t kFingerprintBytes = 8;
constexpr size_t kIdBytes = 8;
constexpr size_t kMacBytes = 16;
constexpr char kVersion = 1;
// Tokens of EncodePosition: version, fingerprint, position bytes, MAC.
constexpr char kPositionVersion = 2;

std::string Fingerprint(absl::string_view request_scope) {
  return Sha256(request_scope).substr(0, kFingerprintBytes);
}

absl::Status InvalidToken() {
  return InvalidFieldError(
      "page_token", "page_token is invalid: pass next_page_token unchanged, with the same request and credential",
      ErrorReason::kInvalidPageToken);
}

// Decodes `token` only when it is exactly what WebSafeBase64Escape writes.
// absl's decoder also accepts whitespace, padding and stray low bits in the
// last character, so several texts would decode to one token.
bool UnescapeCanonical(absl::string_view token, std::string* payload) {
  return absl::WebSafeBase64Unescape(token, payload) && absl::WebSafeBase64Escape(*payload) == token;
}

}  // namespace

std::string PageTokenCodec::Encode(absl::string_view request_scope, uint64_t last_id) const {
  std::string payload(1, kVersion);
  payload += Fingerprint(request_scope);
  for (int shift = 56; shift >= 0; shift -= 8) payload.push_back(static_cast<char>(last_id >> shift));
  payload += HmacSha256(key_, payload).substr(0, kMacBytes);
  return absl::WebSafeBase64Escape(payload);
}

absl::StatusOr<uint64_t> PageTokenCodec::Decode(absl::string_view request_scope,
                                                absl::string_view token) const {
  std::string payload;
  if (!UnescapeCanonical(token, &payload) ||
      payload.size() != 1 + kFingerprintBytes + kIdBytes + kMacBytes || payload[0] != kVersion) {
    return InvalidToken();
  }
  absl::string_view signed_part = absl::string_view(payload).substr(0, 1 + kFingerprintBytes + kIdBytes);
  absl::string_view mac = absl::string_view(payload).substr(signed_part.size());
  if (!ConstantTimeEquals(HmacSha256(key_, signed_part).substr(0, kMacBytes), mac) ||
      !ConstantTimeEquals(Fingerprint(request_scope), signed_part.substr(1, kFingerprintBytes))) {
    return InvalidToken();
  }
  uint64_t last_id = 0;
  for (size_t i = 1 + kFingerprintBytes; i < signed_part.size(); ++i) {
    last_id = (last_id << 8) | static_cast<unsigned char>(signed_part[i]);
  }
  return last_id;
}

std::string PageTokenCodec::EncodePosition(absl::string_view request_scope, absl::string_view position) const {
  std::string payload(1, kPositionVersion);
  payload += Fingerprint(request_scope);
  payload.append(position.data(), position.size());
  payload += HmacSha256(key_, payload).substr(0, kMacBytes);
  return absl::WebSafeBase64Escape(payload);
}

absl::StatusOr<std::string> PageTokenCodec::DecodePosition(absl::string_view request_scope,
                                                           absl::string_view token) const {
  constexpr size_t kOverhead = 1 + kFingerprintBytes + kMacBytes;
  // Base64 needs 4 characters per 3 bytes; anything longer cannot be ours.
  if (token.size() > (kOverhead + kMaxPositionBytes + 2) / 3 * 4) return InvalidToken();
  std::string payload;
  if (!UnescapeCanonical(token, &payload) || payload.size() < kOverhead ||
      payload[0] != kPositionVersion) {
    return InvalidToken();
  }
  absl::string_view signed_part = absl::string_view(payload).substr(0, payload.size() - kMacBytes);
  absl::string_view mac = absl::string_view(payload).substr(signed_part.size());
  if (!ConstantTimeEquals(HmacSha256(key_, signed_part).substr(0, kMacBytes), mac) ||
      !ConstantTimeEquals(Fingerprint(request_scope), signed_part.substr(1, kFingerprintBytes))) {
    return InvalidToken();
  }
  return std::string(signed_part.substr(1 + kFingerprintBytes));
}

}  // namespace crm
