#include "common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdlib>
#include <memory>

#include "absl/status/status.h"
#include "common/logging.h"

namespace crm {
namespace {

constexpr size_t kGcmNonceBytes = 12;
constexpr size_t kGcmTagBytes = 16;

using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

unsigned char* MutableBytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

}  // namespace

std::string RandomBytes(size_t count) {
  std::string out(count, '\0');
  if (RAND_bytes(MutableBytes(out), static_cast<int>(count)) != 1) {
    spdlog::critical("OpenSSL RAND_bytes failed; stopping rather than issuing weak secrets");
    std::abort();
  }
  return out;
}

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  std::string out(kHmacSha256Bytes, '\0');
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), Bytes(data), data.size(),
       MutableBytes(out), &length);
  out.resize(length);
  return out;
}

std::string Sha256(absl::string_view data) {
  // OpenSSL 3's one-shot SHA256() looks the algorithm up again on every
  // call; fetching it once keeps that off the per-request path.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  unsigned int length = 0;
  if (kSha256 == nullptr || EVP_Digest(data.data(), data.size(), MutableBytes(out), &length, kSha256, nullptr) != 1) {
    spdlog::critical("OpenSSL SHA-256 failed; stopping rather than comparing tokens wrongly");
    std::abort();
  }
  return out;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<std::string> SealAes256Gcm(absl::string_view key, absl::string_view plaintext,
                                          absl::string_view associated_data) {
  if (key.size() != kAes256KeyBytes) {
    return absl::InvalidArgumentError("AES-256-GCM needs a 32-byte key");
  }
  std::string out = RandomBytes(kGcmNonceBytes);
  out.resize(kGcmNonceBytes + plaintext.size() + kGcmTagBytes);

  CipherContext ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int length = 0;
  bool ok = ctx != nullptr &&
            EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, Bytes(key), Bytes(out)) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &length, Bytes(associated_data),
                              static_cast<int>(associated_data.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), MutableBytes(out) + kGcmNonceBytes, &length,
                              Bytes(plaintext), static_cast<int>(plaintext.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.get(), MutableBytes(out) + kGcmNonceBytes + length, &length) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagBytes,
                                MutableBytes(out) + kGcmNonceBytes + plaintext.size()) == 1;
  if (!ok) return absl::InternalError("AES-256-GCM encryption failed in OpenSSL");
  return out;
}

absl::StatusOr<std::string> OpenAes256Gcm(absl::string_view key, absl::string_view sealed,
                                          absl::string_view associated_data) {
  if (key.size() != kAes256KeyBytes) {
    return absl::InvalidArgumentError("AES-256-GCM needs a 32-byte key");
  }
  if (sealed.size() < kGcmNonceBytes + kGcmTagBytes) {
    return absl::DataLossError("sealed value is shorter than nonce and tag");
  }
  absl::string_view nonce = sealed.substr(0, kGcmNonceBytes);
  absl::string_view ciphertext =
      sealed.substr(kGcmNonceBytes, sealed.size() - kGcmNonceBytes - kGcmTagBytes);
  std::string tag(sealed.substr(sealed.size() - kGcmTagBytes));
  std::string out(ciphertext.size(), '\0');

  CipherContext ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int length = 0;
  bool ok = ctx != nullptr &&
            EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, Bytes(key), Bytes(nonce)) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &length, Bytes(associated_data),
                              static_cast<int>(associated_data.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), MutableBytes(out), &length, Bytes(ciphertext),
                              static_cast<int>(ciphertext.size())) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagBytes, tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), MutableBytes(out) + length, &length) == 1;
  if (!ok) return absl::DataLossError("AES-256-GCM authentication failed: wrong key or altered data");
  return out;
}

std::string HexEncode(absl::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

}  // namespace crm
