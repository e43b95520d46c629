// The project's logging entry point: spdlog, plus formatting support for
// absl::string_view. Debian's Abseil is built with its own string_view type
// (ABSL_OPTION_USE_STD_STRING_VIEW is 0), which fmt cannot format unaided.
// Include this header instead of spdlog/spdlog.h.
#ifndef CRM_COMMON_LOGGING_H_
#define CRM_COMMON_LOGGING_H_

#include "absl/strings/string_view.h"
#include "fmt/format.h"
#include "spdlog/spdlog.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view value, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(value.data(), value.size()), ctx);
  }
};

#endif  // CRM_COMMON_LOGGING_H_
