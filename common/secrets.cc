#include "common/secrets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/crypto.h"
#include "common/logging.h"

namespace crm {
namespace {

constexpr char kTokenEncryptionKey[] = "token_encryption_key";
constexpr char kTokenHmacKey[] = "token_hmac_key";
constexpr char kPageTokenKey[] = "page_token_key";

// Largest key number accepted, so numbers stay short and cannot overflow.
constexpr int kMaxKeyNumber = 999999;

struct KeyName {
  const char* name;
  const char* environment_variable;
};

constexpr KeyName kKeyNames[] = {
    {kTokenEncryptionKey, "CRM_TOKEN_ENCRYPTION_KEY"},
    {kTokenHmacKey, "CRM_TOKEN_HMAC_KEY"},
    {kPageTokenKey, "CRM_PAGE_TOKEN_KEY"},
};

// Base64 values of one key name by number, highest (newest) first.
using NumberedValues = std::map<int, std::string, std::greater<>>;

// Suffix of the entry that names the key number used for writes, as in
// "token_encryption_key.current=1".
constexpr char kCurrentSuffix[] = "current";

// The keys of one name as read from the file or the environment.
struct KeySource {
  NumberedValues values;
  // The number named by a `current` entry, or -1 for the highest.
  int current = -1;
};

bool ParseKeyNumber(absl::string_view text, int* number) {
  if (text == "0") {
    *number = 0;
    return true;
  }
  return !text.empty() && text.front() != '0' && absl::SimpleAtoi(text, number) && *number >= 1 &&
         *number <= kMaxKeyNumber;
}

// Splits "name" or "name.N" into the name and N (0 without a number).
bool ParseEntryName(absl::string_view text, std::string* name, int* number) {
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(text, absl::MaxSplits('.', 1));
  *name = std::string(parts.first);
  *number = 0;
  if (text.find('.') == absl::string_view::npos) return true;
  return !parts.second.empty() && parts.second.front() != '0' && absl::SimpleAtoi(parts.second, number) &&
         *number >= 1 && *number <= kMaxKeyNumber;
}

bool IsKnownName(absl::string_view name) {
  for (const KeyName& key_name : kKeyNames) {
    if (name == key_name.name) return true;
  }
  return false;
}

// Reads the key file into values by key name and number.
absl::StatusOr<std::map<std::string, KeySource>> ReadKeyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read key file ", path, ": ", std::strerror(errno)));
  }
  struct stat info {};
  if (stat(path.c_str(), &info) == 0 && (info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    spdlog::warn("key file {} is readable by group or others; chmod 600 it", path);
  }

  std::map<std::string, KeySource> values;
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#') continue;
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(text, absl::MaxSplits('=', 1));
    absl::string_view entry = absl::StripAsciiWhitespace(parts.first);
    absl::string_view value = absl::StripAsciiWhitespace(parts.second);
    if (value.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key file ", path, " line ", line_number, ": expected name=base64value"));
    }
    std::string name;
    int number = 0;
    if (absl::EndsWith(entry, absl::StrCat(".", kCurrentSuffix))) {
      name = std::string(entry.substr(0, entry.size() - std::strlen(kCurrentSuffix) - 1));
      if (!IsKnownName(name) || !ParseKeyNumber(value, &number)) {
        return absl::InvalidArgumentError(absl::StrCat("key file ", path, " line ", line_number, ": ", entry,
                                                       " must name a known key with a number from 0 to ",
                                                       kMaxKeyNumber));
      }
      if (values[name].current >= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("key file ", path, " line ", line_number, ": ", entry, " is defined twice"));
      }
      values[name].current = number;
      continue;
    }
    if (!ParseEntryName(entry, &name, &number) || !IsKnownName(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "key file ", path, " line ", line_number, ": unknown entry \"", entry,
          "\"; use token_encryption_key, token_hmac_key or page_token_key, optionally followed by .N with N "
          "from 1 to ",
          kMaxKeyNumber));
    }
    if (!values[name].values.emplace(number, std::string(value)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("key file ", path, " line ", line_number, ": ", entry, " is defined twice"));
    }
  }
  return values;
}

// Parses an environment value: one base64 key, or NUMBER:BASE64 entries
// and at most one current:NUMBER entry, separated by commas.
absl::StatusOr<KeySource> ParseEnvironmentValue(absl::string_view variable, absl::string_view value) {
  KeySource source;
  NumberedValues& values = source.values;
  if (value.find(':') == absl::string_view::npos) {
    values.emplace(0, std::string(absl::StripAsciiWhitespace(value)));
    return source;
  }
  for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(item, absl::MaxSplits(':', 1));
    int number = 0;
    absl::string_view number_text = absl::StripAsciiWhitespace(parts.first);
    if (number_text == kCurrentSuffix) {
      if (source.current >= 0 || !ParseKeyNumber(absl::StripAsciiWhitespace(parts.second), &number)) {
        return absl::InvalidArgumentError(absl::StrCat("invalid environment variable ", variable,
                                                       ": use one current:NUMBER entry with a key's number"));
      }
      source.current = number;
      continue;
    }
    if (!absl::SimpleAtoi(number_text, &number) || number < 1 || number > kMaxKeyNumber ||
        number_text.front() == '0') {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid environment variable ", variable, ": key number \"", number_text,
                       "\" is not an integer from 1 to ", kMaxKeyNumber, "; use NUMBER:BASE64,NUMBER:BASE64"));
    }
    if (!values.emplace(number, std::string(absl::StripAsciiWhitespace(parts.second))).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid environment variable ", variable, ": key number ", number, " appears twice"));
    }
  }
  if (values.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid environment variable ", variable, ": no key"));
  }
  return source;
}

// Decodes the keys of one name: the current key first (the one a `current`
// entry names, else the highest number), then the others, highest first.
absl::StatusOr<std::vector<std::string>> DecodeKeys(const KeySource& key_source, absl::string_view source) {
  if (key_source.values.empty()) return absl::InvalidArgumentError(absl::StrCat("invalid ", source, ": no key"));
  if (key_source.current >= 0 && !key_source.values.contains(key_source.current)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ", source, ": current names key number ", key_source.current, ", which is not defined"));
  }
  int current = key_source.current >= 0 ? key_source.current : key_source.values.begin()->first;
  std::vector<std::pair<int, std::string>> ordered = {{current, key_source.values.at(current)}};
  for (const auto& [number, encoded] : key_source.values) {
    if (number != current) ordered.emplace_back(number, encoded);
  }

  std::vector<std::string> keys;
  for (const auto& [number, encoded] : ordered) {
    std::string key;
    if (!absl::Base64Unescape(encoded, &key) || key.size() != kAes256KeyBytes) {
      return absl::InvalidArgumentError(absl::StrCat("invalid ", source, " number ", number,
                                                     ": expected exactly 32 bytes in standard base64"));
    }
    for (const std::string& other : keys) {
      if (other == key) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid ", source, ": key number ", number, " repeats a newer key"));
      }
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

std::string DescribeKeys(absl::string_view name, const std::string& newest, const std::vector<std::string>& older) {
  std::vector<std::string> ids = {KeyId(newest)};
  for (const std::string& key : older) ids.push_back(KeyId(key));
  return absl::StrCat(name, " ids [", absl::StrJoin(ids, ", "), "]");
}

}  // namespace

std::string KeyId(absl::string_view key) { return HexEncode(Sha256(key)).substr(0, 8); }

absl::StatusOr<Secrets> LoadSecrets(const std::string& key_file) {
  std::map<std::string, KeySource> from_file;
  if (!key_file.empty()) {
    absl::StatusOr<std::map<std::string, KeySource>> read = ReadKeyFile(key_file);
    if (!read.ok()) return read.status();
    from_file = *std::move(read);
  }

  std::map<std::string, std::vector<std::string>> keys;
  for (const KeyName& key_name : kKeyNames) {
    KeySource values;
    std::string source;
    if (const char* env = std::getenv(key_name.environment_variable); env != nullptr && *env != '\0') {
      absl::StatusOr<KeySource> parsed = ParseEnvironmentValue(key_name.environment_variable, env);
      if (!parsed.ok()) return parsed.status();
      values = *std::move(parsed);
      source = absl::StrCat("environment variable ", key_name.environment_variable);
    } else if (auto it = from_file.find(key_name.name); it != from_file.end()) {
      values = it->second;
      source = absl::StrCat("key file entry ", key_name.name);
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "missing secret ", key_name.name, ": set --key_file to a key file that defines it, or set ",
          key_name.environment_variable, " (32 bytes, base64); tools/run.sh creates a development key file"));
    }
    absl::StatusOr<std::vector<std::string>> decoded = DecodeKeys(values, source);
    if (!decoded.ok()) return decoded.status();
    keys[key_name.name] = *std::move(decoded);
  }

  Secrets secrets;
  std::vector<std::string>& encryption = keys[kTokenEncryptionKey];
  std::vector<std::string>& hmac = keys[kTokenHmacKey];
  secrets.token_encryption_key = encryption.front();
  secrets.older_token_encryption_keys.assign(encryption.begin() + 1, encryption.end());
  secrets.token_hmac_key = hmac.front();
  secrets.older_token_hmac_keys.assign(hmac.begin() + 1, hmac.end());
  secrets.page_token_key = keys[kPageTokenKey].front();
  secrets.token_encryption_key_id = KeyId(secrets.token_encryption_key);
  return secrets;
}

std::string DescribeSecrets(const Secrets& secrets) {
  return absl::StrCat(
      DescribeKeys(kTokenEncryptionKey, secrets.token_encryption_key, secrets.older_token_encryption_keys), ", ",
      DescribeKeys(kTokenHmacKey, secrets.token_hmac_key, secrets.older_token_hmac_keys), ", ",
      DescribeKeys(kPageTokenKey, secrets.page_token_key, {}), " (current first)");
}

absl::Status WriteNewKeyFile(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot create key file ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << "# Secrets of the CRM private-app services. Readable by the service user only.\n"
       << "# New writes use the highest number of each name, unless a NAME.current=N line names another.\n";
  for (const KeyName& key_name : kKeyNames) {
    text << key_name.name << ".1=" << absl::Base64Escape(RandomBytes(kAes256KeyBytes)) << "\n";
  }
  std::string content = text.str();
  bool written = write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  bool closed = close(fd) == 0;
  if (!written || !closed) {
    return absl::InternalError(absl::StrCat("cannot write key file ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> AddNewestKeys(const std::string& path) {
  absl::StatusOr<std::map<std::string, KeySource>> existing = ReadKeyFile(path);
  if (!existing.ok()) return existing.status();
  std::string content;
  {
    std::ifstream in(path);
    content.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  std::string lines;
  std::vector<std::string> ids;
  for (const char* name : {kTokenEncryptionKey, kTokenHmacKey}) {
    const KeySource& source = (*existing)[name];
    const NumberedValues& values = source.values;
    if (values.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("key file ", path, " has no ", name));
    }
    int next = values.begin()->first + 1;
    if (next > kMaxKeyNumber) {
      return absl::FailedPreconditionError(absl::StrCat(name, " already has number ", kMaxKeyNumber,
                                                        "; renumber the keys in ", path, " first"));
    }
    std::string key = RandomBytes(kAes256KeyBytes);
    absl::StrAppend(&lines, name, ".", next, "=", absl::Base64Escape(key), "\n");
    // Until every server loads the new key, writes stay on the current one.
    int current = source.current >= 0 ? source.current : values.begin()->first;
    if (source.current < 0) absl::StrAppend(&lines, name, ".", kCurrentSuffix, "=", current, "\n");
    ids.push_back(absl::StrCat(name, ".", next, " id ", KeyId(key), ", read only while ", name, ".", kCurrentSuffix,
                               "=", current));
  }
  if (!content.empty() && content.back() != '\n') lines.insert(0, "\n");

  int fd = open(path.c_str(), O_WRONLY | O_APPEND);
  if (fd < 0) return absl::FailedPreconditionError(absl::StrCat("cannot open key file ", path, ": ", std::strerror(errno)));
  bool written = write(fd, lines.data(), lines.size()) == static_cast<ssize_t>(lines.size());
  bool synced = fsync(fd) == 0;
  bool closed = close(fd) == 0;
  if (!written || !synced || !closed) {
    return absl::InternalError(absl::StrCat("cannot append to key file ", path, ": ", std::strerror(errno)));
  }
  return ids;
}

}  // namespace crm
