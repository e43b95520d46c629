#include "common/secrets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/crypto.h"
#include "common/logging.h"

namespace crm {
namespace {

struct KeyEntry {
  const char* name;
  const char* environment_variable;
  std::string Secrets::*field;
};

constexpr KeyEntry kKeyEntries[] = {
    {"token_encryption_key", "CRM_TOKEN_ENCRYPTION_KEY", &Secrets::token_encryption_key},
    {"token_hmac_key", "CRM_TOKEN_HMAC_KEY", &Secrets::token_hmac_key},
    {"page_token_key", "CRM_PAGE_TOKEN_KEY", &Secrets::page_token_key},
};

absl::StatusOr<std::map<std::string, std::string>> ReadKeyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read key file ", path, ": ", std::strerror(errno)));
  }
  struct stat info {};
  if (stat(path.c_str(), &info) == 0 && (info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    spdlog::warn("key file {} is readable by group or others; chmod 600 it", path);
  }

  std::map<std::string, std::string> values;
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#') continue;
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(text, absl::MaxSplits('=', 1));
    if (parts.second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key file ", path, " line ", line_number, ": expected name=base64value"));
    }
    values[std::string(absl::StripAsciiWhitespace(parts.first))] =
        std::string(absl::StripAsciiWhitespace(parts.second));
  }
  return values;
}

}  // namespace

absl::StatusOr<Secrets> LoadSecrets(const std::string& key_file) {
  std::map<std::string, std::string> values;
  if (!key_file.empty()) {
    absl::StatusOr<std::map<std::string, std::string>> from_file = ReadKeyFile(key_file);
    if (!from_file.ok()) return from_file.status();
    values = *std::move(from_file);
  }

  Secrets secrets;
  for (const KeyEntry& entry : kKeyEntries) {
    std::string encoded;
    std::string source;
    if (const char* env = std::getenv(entry.environment_variable); env != nullptr && *env != '\0') {
      encoded = env;
      source = absl::StrCat("environment variable ", entry.environment_variable);
    } else if (auto it = values.find(entry.name); it != values.end()) {
      encoded = it->second;
      source = absl::StrCat("key file entry ", entry.name);
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "missing secret ", entry.name, ": set --key_file to a key file that defines it, or set ",
          entry.environment_variable, " (32 bytes, base64); tools/run.sh creates a development key file"));
    }
    std::string key;
    if (!absl::Base64Unescape(encoded, &key) || key.size() != kAes256KeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid ", source, ": expected exactly 32 bytes in standard base64"));
    }
    secrets.*(entry.field) = std::move(key);
  }
  secrets.token_encryption_key_id = HexEncode(Sha256(secrets.token_encryption_key)).substr(0, 8);
  return secrets;
}

absl::Status WriteNewKeyFile(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create key file ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << "# Secrets of the CRM private-app services. Readable by the service user only.\n";
  for (const KeyEntry& entry : kKeyEntries) {
    text << entry.name << "=" << absl::Base64Escape(RandomBytes(kAes256KeyBytes)) << "\n";
  }
  std::string content = text.str();
  bool written = write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  bool closed = close(fd) == 0;
  if (!written || !closed) {
    return absl::InternalError(absl::StrCat("cannot write key file ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace crm
