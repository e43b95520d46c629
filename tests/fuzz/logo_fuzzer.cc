// Fuzzes the logo checks in services/auth/logo.h against the reference
// decoders libpng and libjpeg.
//
// Properties checked on every input:
//   - A rejection is INVALID_ARGUMENT with a message starting with "logo".
//   - An accepted logo is at most kMaxLogoBytes, and its MIME type matches
//     its signature.
//   - For an accepted PNG, the IHDR chunk declares a square size between 1
//     and kMaxLogoSidePixels.
//   - Whenever the reference decoder reads the header of an accepted logo,
//     the size it decodes is square and the same as the check's limits
//     allow. The check never accepts a logo whose decoded dimensions
//     disagree with what it verified.
#include <png.h>
// jpeglib.h needs FILE and size_t declared first.
#include <csetjmp>
#include <cstdio>
#include <jpeglib.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "services/auth/logo.h"
#include "tests/fuzz/fuzz_check.h"

namespace crm::auth {
namespace {

struct Size {
  uint32_t width;
  uint32_t height;
};

uint32_t BigEndian32(absl::string_view bytes, size_t pos) {
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[pos + i])); };
  return byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
}

// The size libpng reads from the header, or nullopt when it rejects it.
std::optional<Size> PngReferenceSize(absl::string_view bytes) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  bool read = png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()) != 0;
  std::optional<Size> size;
  if (read) size = Size{image.width, image.height};
  png_image_free(&image);
  return size;
}

struct JpegError {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
};

[[noreturn]] void JumpOnJpegError(j_common_ptr info) {
  std::longjmp(reinterpret_cast<JpegError*>(info->err)->jump, 1);
}

void IgnoreJpegMessage(j_common_ptr, int) {}

// The size libjpeg reads from the header, or nullopt when it rejects it.
// No C++ object with a destructor lives across the setjmp.
std::optional<Size> JpegReferenceSize(absl::string_view bytes) {
  jpeg_decompress_struct info;
  JpegError error;
  info.err = jpeg_std_error(&error.manager);
  error.manager.error_exit = JumpOnJpegError;
  error.manager.emit_message = IgnoreJpegMessage;
  // Volatile, because they change between setjmp and a possible longjmp.
  volatile uint32_t width = 0;
  volatile uint32_t height = 0;
  volatile bool read = false;
  if (setjmp(error.jump) == 0) {
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
    if (jpeg_read_header(&info, TRUE) == JPEG_HEADER_OK) {
      width = info.image_width;
      height = info.image_height;
      read = true;
    }
  }
  jpeg_destroy_decompress(&info);
  if (!read) return std::nullopt;
  return Size{width, height};
}

void CheckAccepted(absl::string_view bytes, const std::string& mime_type) {
  FUZZ_CHECK(bytes.size() <= kMaxLogoBytes, "accepted a logo above the maximum size");
  std::optional<Size> reference;
  if (mime_type == "image/png") {
    FUZZ_CHECK(absl::StartsWith(bytes, absl::string_view("\x89PNG\r\n\x1a\n", 8)), "image/png without its signature");
    FUZZ_CHECK(bytes.size() >= 24, "accepted a PNG too short for IHDR");
    uint32_t width = BigEndian32(bytes, 16);
    uint32_t height = BigEndian32(bytes, 20);
    FUZZ_CHECK(width == height && width >= 1 && width <= kMaxLogoSidePixels,
               absl::StrCat("accepted a PNG whose IHDR says ", width, "x", height));
    reference = PngReferenceSize(bytes);
  } else {
    FUZZ_CHECK(mime_type == "image/jpeg", absl::StrCat("unexpected MIME type ", mime_type));
    FUZZ_CHECK(absl::StartsWith(bytes, "\xff\xd8"), "image/jpeg without SOI");
    reference = JpegReferenceSize(bytes);
  }
  if (reference.has_value()) {
    FUZZ_CHECK(reference->width == reference->height && reference->width >= 1 &&
                   reference->width <= kMaxLogoSidePixels,
               absl::StrCat("accepted a ", mime_type, " logo that decodes as ", reference->width, "x",
                            reference->height));
  }
}

}  // namespace
}  // namespace crm::auth

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::string> mime_type = crm::auth::ValidateLogo(bytes);
  if (!mime_type.ok()) {
    FUZZ_CHECK(mime_type.status().code() == absl::StatusCode::kInvalidArgument, mime_type.status().ToString());
    FUZZ_CHECK(absl::StartsWith(mime_type.status().message(), "logo"), mime_type.status().message());
    return 0;
  }
  crm::auth::CheckAccepted(bytes, *mime_type);
  return 0;
}
