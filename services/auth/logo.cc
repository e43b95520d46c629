#include "services/auth/logo.h"

#include <zlib.h>

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace crm::auth {
namespace {

constexpr absl::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);
constexpr size_t kPngIhdrDataBytes = 13;
// Length, type and CRC fields around each chunk's data.
constexpr size_t kPngChunkOverheadBytes = 12;
// The PNG specification caps chunk lengths, widths and heights at 2^31 - 1.
constexpr uint32_t kPngMaxValue = 0x7FFFFFFF;

constexpr unsigned char kJpegMarkerPrefix = 0xFF;
constexpr unsigned char kJpegSoi = 0xD8;
constexpr unsigned char kJpegEoi = 0xD9;
constexpr unsigned char kJpegSos = 0xDA;
constexpr unsigned char kJpegTem = 0x01;
constexpr unsigned char kJpegRst0 = 0xD0;
constexpr unsigned char kJpegRst7 = 0xD7;

struct Dimensions {
  uint32_t width = 0;
  uint32_t height = 0;
};

unsigned char ByteAt(absl::string_view bytes, size_t pos) { return static_cast<unsigned char>(bytes[pos]); }

uint32_t ReadBigEndian32(absl::string_view bytes, size_t pos) {
  return (uint32_t{ByteAt(bytes, pos)} << 24) | (uint32_t{ByteAt(bytes, pos + 1)} << 16) |
         (uint32_t{ByteAt(bytes, pos + 2)} << 8) | uint32_t{ByteAt(bytes, pos + 3)};
}

uint16_t ReadBigEndian16(absl::string_view bytes, size_t pos) {
  return static_cast<uint16_t>((ByteAt(bytes, pos) << 8) | ByteAt(bytes, pos + 1));
}

absl::Status Truncated(absl::string_view detail) {
  return absl::InvalidArgumentError(absl::StrCat("logo is truncated: ", detail));
}

absl::Status Corrupt(absl::string_view format, absl::string_view detail) {
  return absl::InvalidArgumentError(absl::StrCat("logo is not a valid ", format, " image: ", detail));
}

bool IsJpegStartOfFrame(unsigned char marker) {
  // SOF0-SOF15 are C0-CF, except C4 (DHT), C8 (JPG extension) and CC (DAC).
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

// Walks the chunk list: IHDR first, every chunk inside the file with a
// correct CRC, at least one IDAT, and IEND as the last bytes.
absl::StatusOr<Dimensions> ReadPngDimensions(absl::string_view bytes) {
  Dimensions dimensions;
  bool seen_image_data = false;
  size_t pos = kPngSignature.size();
  while (true) {
    if (pos + kPngChunkOverheadBytes > bytes.size()) {
      return Truncated(pos == bytes.size() ? "the PNG ends without an IEND chunk"
                                           : "the PNG ends inside a chunk header");
    }
    uint32_t length = ReadBigEndian32(bytes, pos);
    absl::string_view type = bytes.substr(pos + 4, 4);
    bool first = pos == kPngSignature.size();
    if (first && (type != "IHDR" || length != kPngIhdrDataBytes)) {
      return Corrupt("PNG", "the first chunk must be IHDR with 13 bytes of data");
    }
    if (length > kPngMaxValue)
      return Corrupt("PNG", absl::StrCat("chunk length ", length, " is out of range"));
    if (length > bytes.size() - pos - kPngChunkOverheadBytes) {
      return Truncated(absl::StrCat("the PNG ends inside a chunk of ", length, " bytes"));
    }

    // The CRC covers the chunk type and data.
    absl::string_view covered = bytes.substr(pos + 4, 4 + length);
    uint32_t expected_crc = ReadBigEndian32(bytes, pos + 8 + length);
    uint32_t actual_crc =
        static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(covered.data()),
                                    static_cast<uInt>(covered.size())));
    if (actual_crc != expected_crc) {
      return Corrupt("PNG", absl::StrCat("chunk ", type, " has a wrong CRC"));
    }

    if (first) {
      dimensions.width = ReadBigEndian32(bytes, pos + 8);
      dimensions.height = ReadBigEndian32(bytes, pos + 12);
      if (dimensions.width > kPngMaxValue || dimensions.height > kPngMaxValue) {
        return Corrupt("PNG", "width or height is above 2^31 - 1");
      }
    } else if (type == "IHDR") {
      return Corrupt("PNG", "IHDR appears twice");
    } else if (type == "IDAT") {
      seen_image_data = true;
    } else if (type == "IEND") {
      size_t end = pos + kPngChunkOverheadBytes + length;
      if (end != bytes.size()) {
        return Corrupt("PNG", absl::StrCat(bytes.size() - end, " bytes follow the IEND chunk"));
      }
      if (!seen_image_data) return Corrupt("PNG", "there is no IDAT chunk");
      return dimensions;
    }
    pos += kPngChunkOverheadBytes + length;
  }
}

// Walks the marker segments from SOI to the first SOS and reads the size from
// the frame header (SOFn) on the way. The entropy-coded data after SOS is not
// parsed, but the file must end with EOI.
absl::StatusOr<Dimensions> ReadJpegDimensions(absl::string_view bytes) {
  std::optional<Dimensions> dimensions;
  size_t pos = 2;  // After SOI.
  while (true) {
    if (pos >= bytes.size()) return Truncated("the JPEG ends before its image data");
    if (ByteAt(bytes, pos) != kJpegMarkerPrefix) {
      return Corrupt("JPEG", absl::StrCat("expected a marker at offset ", pos));
    }
    // Any number of 0xFF fill bytes may precede a marker.
    while (pos < bytes.size() && ByteAt(bytes, pos) == kJpegMarkerPrefix) ++pos;
    if (pos >= bytes.size()) return Truncated("the JPEG ends inside a marker");
    unsigned char marker = ByteAt(bytes, pos);
    ++pos;

    // Markers without a length field.
    if (marker == kJpegTem || (marker >= kJpegRst0 && marker <= kJpegRst7)) continue;
    if (marker == 0x00 || marker == kJpegSoi || marker == kJpegEoi) {
      return Corrupt("JPEG", absl::StrCat("unexpected marker 0x", absl::Hex(marker, absl::kZeroPad2),
                                          " before the image data"));
    }

    if (pos + 2 > bytes.size()) return Truncated("the JPEG ends inside a segment length");
    uint16_t length = ReadBigEndian16(bytes, pos);  // Counts itself, not the marker.
    if (length < 2) return Corrupt("JPEG", absl::StrCat("segment length ", length, " is below 2"));
    if (pos + length > bytes.size()) {
      return Truncated(absl::StrCat("the JPEG ends inside a segment of ", length, " bytes"));
    }

    if (IsJpegStartOfFrame(marker)) {
      // Length (2), sample precision (1), height (2), width (2), components (1).
      if (length < 8) return Corrupt("JPEG", "the frame header is shorter than 8 bytes");
      if (dimensions.has_value()) return Corrupt("JPEG", "more than one frame header");
      dimensions =
          Dimensions{.width = ReadBigEndian16(bytes, pos + 5), .height = ReadBigEndian16(bytes, pos + 3)};
    } else if (marker == kJpegSos) {
      if (!dimensions.has_value()) return Corrupt("JPEG", "image data starts before the frame header (SOF)");
      if (bytes.size() < pos + length + 2 || ByteAt(bytes, bytes.size() - 2) != kJpegMarkerPrefix ||
          ByteAt(bytes, bytes.size() - 1) != kJpegEoi) {
        return Truncated("the JPEG does not end with an EOI marker");
      }
      return *dimensions;
    }
    pos += length;
  }
}

}  // namespace

absl::StatusOr<std::string> ValidateLogo(absl::string_view bytes) {
  if (bytes.empty()) return absl::InvalidArgumentError("logo is empty");
  if (bytes.size() > kMaxLogoBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("logo is ", bytes.size(), " bytes; the maximum is 262,144 bytes (256 KiB)"));
  }

  absl::StatusOr<Dimensions> dimensions;
  std::string mime_type;
  if (bytes.substr(0, kPngSignature.size()) == kPngSignature) {
    mime_type = "image/png";
    dimensions = ReadPngDimensions(bytes);
  } else if (bytes.size() >= 2 && ByteAt(bytes, 0) == kJpegMarkerPrefix && ByteAt(bytes, 1) == kJpegSoi) {
    mime_type = "image/jpeg";
    dimensions = ReadJpegDimensions(bytes);
  } else {
    return absl::InvalidArgumentError("logo is not a PNG or JPEG image (judged by content)");
  }
  if (!dimensions.ok()) return dimensions.status();

  if (dimensions->width == 0 || dimensions->height == 0) {
    return absl::InvalidArgumentError(absl::StrCat("logo is ", dimensions->width, "x", dimensions->height,
                                                   " pixels; both sides must be above 0"));
  }
  if (dimensions->width != dimensions->height) {
    return absl::InvalidArgumentError(
        absl::StrCat("logo is ", dimensions->width, "x", dimensions->height, " pixels; it must be square"));
  }
  if (dimensions->width > kMaxLogoSidePixels) {
    return absl::InvalidArgumentError(absl::StrCat("logo is ", dimensions->width, "x", dimensions->height,
                                                   " pixels; the maximum is ", kMaxLogoSidePixels, "x",
                                                   kMaxLogoSidePixels));
  }
  return mime_type;
}

}  // namespace crm::auth
