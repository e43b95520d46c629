#include "common/text.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/error_details.h"

namespace crm {
namespace {

// Decodes one UTF-8 sequence at `value[*pos]`, advancing *pos. Rejects
// overlong forms, surrogates and values above U+10FFFF.
bool DecodeCodePoint(absl::string_view value, size_t* pos, uint32_t* code_point) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(value[i]); };
  unsigned char lead = byte(*pos);
  size_t length;
  uint32_t cp;
  if (lead < 0x80) {
    *code_point = lead;
    *pos += 1;
    return true;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2;
    cp = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    cp = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    cp = lead & 0x07;
  } else {
    return false;
  }
  if (*pos + length > value.size()) return false;
  for (size_t i = 1; i < length; ++i) {
    unsigned char next = byte(*pos + i);
    if ((next & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (next & 0x3F);
  }
  static constexpr uint32_t kMinimumForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinimumForLength[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return false;
  }
  *code_point = cp;
  *pos += length;
  return true;
}

bool IsControl(uint32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp < 0xA0); }

}  // namespace

long CountUtf8CodePoints(absl::string_view value) {
  long count = 0;
  size_t pos = 0;
  uint32_t cp = 0;
  while (pos < value.size()) {
    if (!DecodeCodePoint(value, &pos, &cp)) return -1;
    ++count;
  }
  return count;
}

absl::Status ValidateText(absl::string_view field, absl::string_view value, const TextRules& rules) {
  size_t count = 0;
  size_t pos = 0;
  uint32_t cp = 0;
  while (pos < value.size()) {
    size_t start = pos;
    if (!DecodeCodePoint(value, &pos, &cp)) {
      return InvalidFieldError(field, absl::StrCat(field, " is not valid UTF-8 (bad byte at offset ", start, ")"));
    }
    bool allowed_break = rules.allow_line_breaks && (cp == '\n' || cp == '\r' || cp == '\t');
    if (IsControl(cp) && !allowed_break) {
      return InvalidFieldError(field, absl::StrCat(field, " contains control character U+",
                                                   absl::Hex(cp, absl::kZeroPad4), " at offset ", start));
    }
    ++count;
  }
  if (count > rules.max_code_points) {
    return InvalidFieldError(
        field, absl::StrCat(field, " is ", count, " characters long; the maximum is ", rules.max_code_points));
  }
  if (!rules.allow_surrounding_space && !value.empty() &&
      (absl::ascii_isspace(static_cast<unsigned char>(value.front())) ||
       absl::ascii_isspace(static_cast<unsigned char>(value.back())))) {
    return InvalidFieldError(field, absl::StrCat(field, " must not start or end with white space"));
  }
  return absl::OkStatus();
}

absl::Status ParseBearer(absl::string_view header, TokenKind kind, absl::string_view* credential) {
  bool app_token = kind == TokenKind::kAppToken;
  if (header.empty()) {
    return WithErrorInfo(
        absl::UnauthenticatedError("missing authorization metadata; send 'authorization: Bearer <token>'"),
        app_token ? ErrorReason::kTokenMissing : ErrorReason::kAdminKeyMissing);
  }
  constexpr absl::string_view kScheme = "Bearer ";
  if (header.size() <= kScheme.size() || !absl::StartsWithIgnoreCase(header, kScheme)) {
    return WithErrorInfo(absl::UnauthenticatedError("authorization metadata must be 'Bearer <token>'"),
                         app_token ? ErrorReason::kTokenMalformed : ErrorReason::kAdminKeyMalformed);
  }
  *credential = absl::StripLeadingAsciiWhitespace(header.substr(kScheme.size()));
  return absl::OkStatus();
}

}  // namespace crm
