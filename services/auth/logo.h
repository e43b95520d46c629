// Validation of private-app logos. The format is judged from the bytes alone
// (magic numbers and structure), never from a file name or a claimed MIME
// type. The image is never decoded: only headers are read, every length is
// bounds-checked, and nothing is allocated from a declared size.
#ifndef CRM_SERVICES_AUTH_LOGO_H_
#define CRM_SERVICES_AUTH_LOGO_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm::auth {

// 256 KiB; the documented maximum of PrivateApp.logo.
inline constexpr size_t kMaxLogoBytes = 262144;

// Largest accepted width and height. A logo needs no more, and a small file
// that declares a huge size is a decompression bomb for clients that render it.
inline constexpr uint32_t kMaxLogoSidePixels = 4096;

// Checks that `bytes` is a complete, square PNG or JPEG image of at most
// kMaxLogoBytes and returns its MIME type, "image/png" or "image/jpeg".
// Every failure is INVALID_ARGUMENT with a message that starts with "logo"
// and gives the reason (wrong format, truncated, not square, too large).
// Empty bytes mean "no logo" and are for the caller to handle; they fail here.
absl::StatusOr<std::string> ValidateLogo(absl::string_view bytes);

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_LOGO_H_
