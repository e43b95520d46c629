// Opaque, integrity-protected List page tokens.
//
// A token carries the position of the last record returned: its id, or any
// bytes the caller encodes, such as sort values and id. It also carries a
// fingerprint of the request it continues (caller's organization, method
// and any query parameters). HMAC-SHA-256 under the server's
// page_token_key seals both.
// A token grants nothing by itself: the caller's credential still decides
// what is listed, and a token from another organization or request is
// rejected as INVALID_ARGUMENT.
#ifndef CRM_COMMON_PAGE_TOKEN_H_
#define CRM_COMMON_PAGE_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm {

class PageTokenCodec {
 public:
  explicit PageTokenCodec(std::string key) : key_(std::move(key)) {}

  // Returns a token that continues after `last_id` for the request named by
  // `request_scope`.
  std::string Encode(absl::string_view request_scope, uint64_t last_id) const;

  // Returns the last id of a token issued for `request_scope`.
  absl::StatusOr<uint64_t> Decode(absl::string_view request_scope, absl::string_view token) const;

  // Returns a token that carries `position`, at most kMaxPositionBytes of
  // caller-defined bytes, for the request named by `request_scope`.
  std::string EncodePosition(absl::string_view request_scope, absl::string_view position) const;

  // Returns the position of a token that EncodePosition issued for
  // `request_scope`; INVALID_ARGUMENT for any other text.
  absl::StatusOr<std::string> DecodePosition(absl::string_view request_scope, absl::string_view token) const;

  static constexpr size_t kMaxPositionBytes = 4096;

 private:
  std::string key_;
};

}  // namespace crm

#endif  // CRM_COMMON_PAGE_TOKEN_H_
