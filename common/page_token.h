// Opaque, integrity-protected List page tokens.
//
// A token carries the id of the last record returned and a fingerprint of
// the request it continues (caller's organization, method and any query
// parameters), sealed with HMAC-SHA-256 under the server's page_token_key.
// A token grants nothing by itself: the caller's credential still decides
// what is listed, and a token from another organization or request is
// rejected as INVALID_ARGUMENT.
#ifndef CRM_COMMON_PAGE_TOKEN_H_
#define CRM_COMMON_PAGE_TOKEN_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace crm {

class PageTokenCodec {
 public:
  explicit PageTokenCodec(std::string key) : key_(std::move(key)) {}

  // Returns a token that continues after `last_id` for the request named by
  // `request_scope`.
  std::string Encode(absl::string_view request_scope, uint64_t last_id) const;

  // Returns the last id of a token issued for `request_scope`.
  absl::StatusOr<uint64_t> Decode(absl::string_view request_scope, absl::string_view token) const;

 private:
  std::string key_;
};

}  // namespace crm

#endif  // CRM_COMMON_PAGE_TOKEN_H_
