// Checks for user-supplied text fields, shared by both services so that
// names, descriptions and record fields follow one rule set.
#ifndef CRM_COMMON_TEXT_H_
#define CRM_COMMON_TEXT_H_

#include <cstddef>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "common/token.h"

namespace crm {

struct TextRules {
  size_t max_code_points = 0;
  bool allow_line_breaks = false;  // Also allows tabs.
  bool allow_surrounding_space = true;
};

// Returns INVALID_ARGUMENT naming `field` when `value` is not valid UTF-8,
// contains a control character the rules do not allow, or is longer than the
// maximum in Unicode code points. The error has reason VALIDATION_FAILED and
// a field violation of `field`.
absl::Status ValidateText(absl::string_view field, absl::string_view value, const TextRules& rules);

// Number of code points in valid UTF-8, or -1 for invalid UTF-8.
long CountUtf8CodePoints(absl::string_view value);

// Splits `authorization` metadata of the form "Bearer <credential>".
// Returns UNAUTHENTICATED when it is missing (reason TOKEN_MISSING or
// ADMIN_KEY_MISSING, after `kind`) or of another scheme (TOKEN_MALFORMED or
// ADMIN_KEY_MALFORMED).
absl::Status ParseBearer(absl::string_view header, TokenKind kind, absl::string_view* credential);

}  // namespace crm

#endif  // CRM_COMMON_TEXT_H_
