// Tests of ValidateLogo. The images are built byte by byte here: PNG chunks
// with real zlib CRCs and JPEG marker segments, so no binary fixtures.
#include "services/auth/logo.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"

namespace crm::auth {
namespace {

std::string BigEndian32(uint32_t value) {
  return {static_cast<char>(value >> 24), static_cast<char>(value >> 16), static_cast<char>(value >> 8),
          static_cast<char>(value)};
}

std::string BigEndian16(uint16_t value) { return {static_cast<char>(value >> 8), static_cast<char>(value)}; }

std::string PngChunk(const std::string& type, const std::string& data) {
  std::string covered = type + data;
  uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(covered.data()),
                    static_cast<uInt>(covered.size()));
  return BigEndian32(static_cast<uint32_t>(data.size())) + covered + BigEndian32(static_cast<uint32_t>(crc));
}

std::string PngIhdr(uint32_t width, uint32_t height) {
  // Bit depth 8, colour type 2 (RGB), deflate, adaptive filter, no interlace.
  return PngChunk("IHDR", BigEndian32(width) + BigEndian32(height) + std::string("\x08\x02\x00\x00\x00", 5));
}

// Returns image data for a black RGB image of this size when it is small.
// Larger sizes get the data of a 1x1 image, because ValidateLogo never
// decodes.
std::string PngImageData(uint32_t width, uint32_t height) {
  if (width > 64 || height > 64) width = height = 1;
  std::string raw;
  for (uint32_t row = 0; row < height; ++row)
    raw += std::string(1 + 3 * width, '\0');  // Filter byte + pixels.
  uLongf size = compressBound(raw.size());
  std::string compressed(size, '\0');
  compress(reinterpret_cast<Bytef*>(compressed.data()), &size, reinterpret_cast<const Bytef*>(raw.data()),
           raw.size());
  compressed.resize(size);
  return PngChunk("IDAT", compressed);
}

std::string Png(uint32_t width, uint32_t height, const std::string& extra_chunks = "") {
  return std::string("\x89PNG\r\n\x1a\n", 8) + PngIhdr(width, height) + extra_chunks +
         PngImageData(width, height) + PngChunk("IEND", "");
}

std::string JpegSegment(unsigned char marker, const std::string& data) {
  return std::string{'\xff', static_cast<char>(marker)} +
         BigEndian16(static_cast<uint16_t>(data.size() + 2)) + data;
}

std::string JpegFrameHeader(unsigned char marker, uint16_t width, uint16_t height) {
  // Precision 8, height, width, one component: id 1, sampling 1x1, table 0.
  return JpegSegment(marker, std::string("\x08", 1) + BigEndian16(height) + BigEndian16(width) +
                                 std::string("\x01\x01\x11\x00", 4));
}

const std::string kJfifHeader =
    JpegSegment(0xE0, std::string("JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00", 14));
// One component, tables 0/0, spectral selection 0-63, no approximation.
const std::string kStartOfScan = JpegSegment(0xDA, std::string("\x01\x01\x00\x00\x3f\x00", 6));
const std::string kEntropyData("\x12\x34\xff\x00\x56", 5);  // FF 00 is a stuffed byte.
const std::string kEndOfImage = "\xff\xd9";

std::string Jpeg(uint16_t width, uint16_t height, unsigned char frame_marker = 0xC0) {
  return "\xff\xd8" + kJfifHeader + JpegFrameHeader(frame_marker, width, height) + kStartOfScan +
         kEntropyData + kEndOfImage;
}

// Asserts INVALID_ARGUMENT whose message contains `expected`.
void ExpectRejected(const std::string& bytes, absl::string_view expected) {
  absl::StatusOr<std::string> result = ValidateLogo(bytes);
  ASSERT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
  EXPECT_TRUE(absl::StrContains(result.status().message(), expected)) << result.status();
}

TEST(Unit, LogoPngAccepted) {
  absl::StatusOr<std::string> result = ValidateLogo(Png(16, 16));

  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ("image/png", *result);
}

TEST(Unit, LogoJpegAccepted) {
  absl::StatusOr<std::string> result = ValidateLogo(Jpeg(32, 32));

  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ("image/jpeg", *result);
}

TEST(Unit, LogoJpegEveryFrameTypeAccepted) {
  for (unsigned char marker :
       {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}) {
    absl::StatusOr<std::string> result = ValidateLogo(Jpeg(8, 8, marker));
    EXPECT_TRUE(result.ok()) << "SOF marker " << static_cast<int>(marker) << ": " << result.status();
  }
}

TEST(Unit, LogoJpegTableSegmentsAreNotFrames) {
  // Markers C4 (DHT) and CC (DAC) lie inside the SOF range C0-CF. A size read
  // from these segments would be 0x0304 by 0x0102 and fail the square check.
  std::string tables = JpegSegment(0xC4, std::string("\x00\x01\x02\x03\x04\x05", 6)) +
                       JpegSegment(0xCC, std::string("\x00\x01\x02\x03\x04\x05", 6));
  std::string jpeg =
      "\xff\xd8" + tables + JpegFrameHeader(0xC0, 8, 8) + kStartOfScan + kEntropyData + kEndOfImage;

  EXPECT_TRUE(ValidateLogo(jpeg).ok()) << ValidateLogo(jpeg).status();
}

TEST(Unit, LogoJpegFillBytesAndStandaloneMarkers) {
  // Extra 0xFF fill bytes before a marker, and TEM / RST markers without a
  // length field.
  std::string jpeg = "\xff\xd8\xff\xff\xff" + kJfifHeader.substr(1) + "\xff\x01\xff\xd0" +
                     JpegFrameHeader(0xC0, 8, 8) + kStartOfScan + kEntropyData + kEndOfImage;

  EXPECT_TRUE(ValidateLogo(jpeg).ok()) << ValidateLogo(jpeg).status();
}

TEST(Unit, LogoPngNotSquare) { ExpectRejected(Png(300, 200), "logo is 300x200 pixels; it must be square"); }

TEST(Unit, LogoJpegNotSquare) { ExpectRejected(Jpeg(200, 300), "logo is 200x300 pixels; it must be square"); }

TEST(Unit, LogoZeroSizeRejected) {
  ExpectRejected(Png(0, 0), "above 0");
  ExpectRejected(Jpeg(0, 0), "above 0");
}

TEST(Unit, LogoPngEveryPrefixRejected) {
  std::string png = Png(4, 4);
  for (size_t length = 1; length < png.size(); ++length) {
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateLogo(png.substr(0, length)).status())) << "length " << length;
  }
  ExpectRejected(png.substr(0, png.size() - 12), "truncated");  // Without IEND.
  ExpectRejected(png.substr(0, png.size() - 1), "truncated");
}

TEST(Unit, LogoJpegEveryPrefixRejected) {
  std::string jpeg = Jpeg(4, 4);
  for (size_t length = 1; length < jpeg.size(); ++length) {
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateLogo(jpeg.substr(0, length)).status()))
        << "length " << length;
  }
  ExpectRejected(jpeg.substr(0, jpeg.size() - 2), "truncated");  // Without EOI.
  ExpectRejected(jpeg.substr(0, 30), "truncated");               // Inside the frame header.
}

TEST(Unit, LogoWrongMagicBytes) {
  constexpr absl::string_view kNotImage = "logo is not a PNG or JPEG image (judged by content)";
  ExpectRejected(std::string("GIF89a\x01\x00\x01\x00\x00\x00\x00;", 14), kNotImage);
  ExpectRejected(std::string("RIFF\x10\x00\x00\x00WEBPVP8 ", 16), kNotImage);
  ExpectRejected("<svg xmlns=\"http://www.w3.org/2000/svg\"/>", kNotImage);

  std::string png = Png(4, 4);
  png[1] = 'Q';
  ExpectRejected(png, kNotImage);
  std::string jpeg = Jpeg(4, 4);
  jpeg[1] = '\xd9';
  ExpectRejected(jpeg, kNotImage);
}

TEST(Unit, LogoPngBadCrcRejected) {
  std::string png = Png(4, 4);
  png[8 + 8 + 13] ^= 0x01;  // First byte of the IHDR CRC.
  ExpectRejected(png, "IHDR has a wrong CRC");

  std::string changed_width = Png(4, 4);
  changed_width[8 + 8 + 3] = 5;  // Width 5 with the CRC of width 4.
  ExpectRejected(changed_width, "wrong CRC");
}

TEST(Unit, LogoPngIhdrMustComeFirst) {
  std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + PngChunk("tEXt", std::string("a\0b", 3)) +
                    PngIhdr(4, 4) + PngImageData(4, 4) + PngChunk("IEND", "");
  ExpectRejected(png, "first chunk must be IHDR");
}

TEST(Unit, LogoPngNeedsImageData) {
  std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + PngIhdr(4, 4) + PngChunk("IEND", "");
  ExpectRejected(png, "no IDAT");
}

TEST(Unit, LogoPngDataAfterEndRejected) { ExpectRejected(Png(4, 4) + "trailing", "follow the IEND chunk"); }

TEST(Unit, LogoJpegWithoutFrameHeaderRejected) {
  std::string jpeg = "\xff\xd8" + kJfifHeader + kStartOfScan + kEntropyData + kEndOfImage;
  ExpectRejected(jpeg, "before the frame header");
}

TEST(Unit, LogoJpegSegmentPastEndRejected) {
  std::string jpeg = "\xff\xd8\xff\xe0\x7f\xff" + std::string(20, 'x');
  ExpectRejected(jpeg, "truncated");
}

TEST(Unit, LogoJpegMissingEndMarkerRejected) {
  std::string jpeg = Jpeg(4, 4);
  ExpectRejected(jpeg.substr(0, jpeg.size() - 2) + "xx", "does not end with an EOI marker");
}

TEST(Unit, LogoSizeLimit) {
  // Pads a valid PNG with a tEXt chunk to exactly the limit, then one more.
  std::string base = Png(4, 4);
  std::string padding(kMaxLogoBytes - base.size() - 12, 'x');
  std::string at_limit = Png(4, 4, PngChunk("tEXt", padding));
  ASSERT_EQ(kMaxLogoBytes, at_limit.size());
  EXPECT_TRUE(ValidateLogo(at_limit).ok()) << ValidateLogo(at_limit).status();

  std::string over_limit = Png(4, 4, PngChunk("tEXt", padding + "x"));
  ExpectRejected(over_limit, "logo is 262145 bytes; the maximum is 262,144 bytes (256 KiB)");
}

TEST(Unit, LogoHugeDeclaredSizeJudgedByHeader) {
  // Small files that declare large sizes: judged from the header alone,
  // with nothing allocated from the declared size.
  EXPECT_TRUE(ValidateLogo(Png(kMaxLogoSidePixels, kMaxLogoSidePixels)).ok());
  EXPECT_TRUE(ValidateLogo(Jpeg(kMaxLogoSidePixels, kMaxLogoSidePixels)).ok());
  ExpectRejected(Png(kMaxLogoSidePixels + 1, kMaxLogoSidePixels + 1),
                 "logo is 4097x4097 pixels; the maximum is");
  ExpectRejected(Jpeg(65535, 65535), "logo is 65535x65535 pixels; the maximum is");
  ExpectRejected(Png(0x80000000u, 0x80000000u), "above 2^31 - 1");
  ExpectRejected(Png(0xFFFFFFFFu, 1), "above 2^31 - 1");
}

TEST(Unit, LogoEmptyRejected) { ExpectRejected("", "logo is empty"); }

}  // namespace
}  // namespace crm::auth
