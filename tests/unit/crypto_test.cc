// Tests of the primitives in common/crypto.h: SHA-256 and HMAC-SHA-256
// against published test vectors, AES-256-GCM sealing and constant-time
// comparison.
#include "common/crypto.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/status/status.h"

namespace crm {
namespace {

std::string TestKey(char fill) { return std::string(kAes256KeyBytes, fill); }

TEST(Unit, Sha256MatchesFips180Vector) {
  EXPECT_EQ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", HexEncode(Sha256("abc")));
}

TEST(Unit, HmacMatchesRfc4231Vector) {
  // RFC 4231, test case 2.
  EXPECT_EQ("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")));
}

TEST(Unit, HmacDependsOnKeyAndData) {
  std::string digest = HmacSha256(TestKey('k'), "crmpat_token");

  EXPECT_EQ(kHmacSha256Bytes, digest.size());
  EXPECT_EQ(digest, HmacSha256(TestKey('k'), "crmpat_token"));
  EXPECT_NE(digest, HmacSha256(TestKey('j'), "crmpat_token"));
  EXPECT_NE(digest, HmacSha256(TestKey('k'), "crmpat_tokem"));
}

TEST(Unit, AesGcmRoundTrip) {
  absl::StatusOr<std::string> sealed = SealAes256Gcm(TestKey('k'), "secret token", "app_id=7");
  ASSERT_TRUE(sealed.ok()) << sealed.status();

  EXPECT_EQ(12 + std::string("secret token").size() + 16, sealed->size());
  absl::StatusOr<std::string> opened = OpenAes256Gcm(TestKey('k'), *sealed, "app_id=7");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ("secret token", *opened);
}

TEST(Unit, AesGcmNonceIsFresh) {
  absl::StatusOr<std::string> first = SealAes256Gcm(TestKey('k'), "secret token", "");
  absl::StatusOr<std::string> second = SealAes256Gcm(TestKey('k'), "secret token", "");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());

  EXPECT_NE(first->substr(0, 12), second->substr(0, 12));
  EXPECT_NE(*first, *second);
}

TEST(Unit, AesGcmWrongKeyIsDataLoss) {
  absl::StatusOr<std::string> sealed = SealAes256Gcm(TestKey('k'), "secret token", "app_id=7");
  ASSERT_TRUE(sealed.ok());

  absl::StatusOr<std::string> opened = OpenAes256Gcm(TestKey('j'), *sealed, "app_id=7");

  EXPECT_TRUE(absl::IsDataLoss(opened.status())) << opened.status();
}

TEST(Unit, AesGcmWrongAssociatedDataIsDataLoss) {
  absl::StatusOr<std::string> sealed = SealAes256Gcm(TestKey('k'), "secret token", "app_id=7");
  ASSERT_TRUE(sealed.ok());

  EXPECT_TRUE(absl::IsDataLoss(OpenAes256Gcm(TestKey('k'), *sealed, "app_id=8").status()));
  EXPECT_TRUE(absl::IsDataLoss(OpenAes256Gcm(TestKey('k'), *sealed, "").status()));
}

TEST(Unit, AesGcmTamperedByteIsDataLoss) {
  absl::StatusOr<std::string> sealed = SealAes256Gcm(TestKey('k'), "secret token", "app_id=7");
  ASSERT_TRUE(sealed.ok());

  // Nonce, ciphertext and tag: every byte is authenticated.
  for (size_t pos = 0; pos < sealed->size(); ++pos) {
    std::string tampered = *sealed;
    tampered[pos] = static_cast<char>(tampered[pos] ^ 0x01);
    EXPECT_TRUE(absl::IsDataLoss(OpenAes256Gcm(TestKey('k'), tampered, "app_id=7").status()))
        << "byte " << pos;
  }
}

TEST(Unit, AesGcmTruncatedIsDataLoss) {
  absl::StatusOr<std::string> sealed = SealAes256Gcm(TestKey('k'), "secret token", "");
  ASSERT_TRUE(sealed.ok());

  for (size_t length = 0; length < sealed->size(); ++length) {
    EXPECT_TRUE(absl::IsDataLoss(OpenAes256Gcm(TestKey('k'), sealed->substr(0, length), "").status()))
        << "length " << length;
  }
}

TEST(Unit, AesGcmRejectsShortKey) {
  EXPECT_TRUE(absl::IsInvalidArgument(SealAes256Gcm("short", "secret token", "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(OpenAes256Gcm("short", std::string(40, 'x'), "").status()));
}

TEST(Unit, ConstantTimeEqualsComparesBytes) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

}  // namespace
}  // namespace crm
