#include "common/ip_allowlist.h"

#include <arpa/inet.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace crm {
namespace {

// Longer input is never a valid range ("ffff:...:ffff/128" has 43
// characters), so messages quote at most this much of it.
constexpr size_t kMaxRangeChars = 64;

// Quotes `text` for a message. Escaping keeps the message printable ASCII,
// so a cut through a UTF-8 sequence cannot make it invalid UTF-8.
std::string Quote(absl::string_view text) {
  if (text.size() > kMaxRangeChars) {
    return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMaxRangeChars)), "...\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

// The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:0:0/96).
constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool IsIpv4Mapped(const IpAddress& address) {
  return address.is_ipv6 && std::equal(std::begin(kMappedPrefix), std::end(kMappedPrefix), address.bytes.begin());
}

IpAddress Unmapped(const IpAddress& address) {
  IpAddress ipv4;
  std::copy(address.bytes.begin() + 12, address.bytes.end(), ipv4.bytes.begin());
  return ipv4;
}

// Parses a plain address without unmapping IPv4-mapped IPv6. Rejects
// zones, because inet_pton does.
bool ParseRawAddress(absl::string_view text, IpAddress* address) {
  if (text.empty() || text.size() > kMaxRangeChars) return false;
  std::string terminated(text);
  if (absl::StrContains(text, ':')) {
    address->is_ipv6 = true;
    return inet_pton(AF_INET6, terminated.c_str(), address->bytes.data()) == 1;
  }
  address->is_ipv6 = false;
  // glibc's inet_pton takes exactly four decimal parts and rejects leading
  // zeros, so "010.0.0.1" (octal to inet_aton) is not accepted.
  return inet_pton(AF_INET, terminated.c_str(), address->bytes.data()) == 1;
}

int MaxPrefixLength(const IpAddress& address) { return address.is_ipv6 ? 128 : 32; }

// `address` with every bit after `prefix_length` cleared.
IpAddress Masked(const IpAddress& address, int prefix_length) {
  IpAddress masked = address;
  for (int byte = 0; byte < 16; ++byte) {
    int bits_kept = std::clamp(prefix_length - byte * 8, 0, 8);
    masked.bytes[byte] &= static_cast<uint8_t>(0xff00 >> bits_kept);
  }
  return masked;
}

// Whether `text` is a decimal port of 1 to 5 digits. Its value is not
// checked further.
bool IsPort(absl::string_view text) {
  return !text.empty() && text.size() <= 5 &&
         std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isdigit(c); });
}

// One X-Forwarded-For element: "192.0.2.1", "192.0.2.1:80", "2001:db8::1",
// "[2001:db8::1]" or "[2001:db8::1]:80".
absl::StatusOr<IpAddress> ParseForwardedElement(absl::string_view element) {
  absl::string_view address = element;
  if (absl::ConsumePrefix(&address, "[")) {
    size_t close = address.find(']');
    if (close == absl::string_view::npos) return ParseIpAddress(element);
    absl::string_view rest = address.substr(close + 1);
    address = address.substr(0, close);
    if (!rest.empty() && !(absl::ConsumePrefix(&rest, ":") && IsPort(rest))) return ParseIpAddress(element);
  } else if (std::count(address.begin(), address.end(), ':') == 1) {
    size_t colon = address.find(':');
    if (!IsPort(address.substr(colon + 1))) return ParseIpAddress(element);
    address = address.substr(0, colon);
  }
  return ParseIpAddress(address);
}

}  // namespace

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(is_ipv6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof(text));
  return text;
}

absl::StatusOr<IpAddress> ParseIpAddress(absl::string_view text) {
  IpAddress address;
  if (!ParseRawAddress(text, &address)) {
    return absl::InvalidArgumentError(absl::StrCat(Quote(text), " is not an IPv4 or IPv6 address"));
  }
  if (IsIpv4Mapped(address)) return Unmapped(address);
  return address;
}

bool CidrRange::Contains(const IpAddress& address) const {
  return address.is_ipv6 == network.is_ipv6 && Masked(address, prefix_length) == network;
}

std::string CidrRange::ToString() const { return absl::StrCat(network.ToString(), "/", prefix_length); }

absl::StatusOr<CidrRange> ParseCidrRange(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("an IP range must not be empty");
  std::vector<absl::string_view> parts = absl::StrSplit(text, absl::MaxSplits('/', 1));
  CidrRange range;
  if (!ParseRawAddress(parts[0], &range.network)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Quote(text), " is not an IP range; use an IPv4 or IPv6 address with an optional /prefix, such as "
                     "\"203.0.113.0/24\" or \"2001:db8::/32\""));
  }
  if (IsIpv4Mapped(range.network)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Quote(text), " is an IPv4-mapped IPv6 range; write it in IPv4 form, such as \"",
        Unmapped(range.network).ToString(), "/32\""));
  }

  int max_prefix = MaxPrefixLength(range.network);
  range.prefix_length = max_prefix;
  if (parts.size() == 2) {
    absl::string_view prefix = parts[1];
    bool digits_only = !prefix.empty() && prefix.size() <= 3 &&
                       std::all_of(prefix.begin(), prefix.end(), [](char c) { return absl::ascii_isdigit(c); });
    int value = 0;
    if (!digits_only || (prefix.size() > 1 && prefix.front() == '0') || !absl::SimpleAtoi(prefix, &value) ||
        value > max_prefix) {
      return absl::InvalidArgumentError(absl::StrCat(Quote(text), " has an invalid prefix length; an ",
                                                     range.network.is_ipv6 ? "IPv6" : "IPv4",
                                                     " prefix is a decimal number from 0 to ", max_prefix));
    }
    range.prefix_length = value;
  }

  IpAddress network = Masked(range.network, range.prefix_length);
  if (!(network == range.network)) {
    return absl::InvalidArgumentError(absl::StrCat(Quote(text), " has host bits set after the /",
                                                   range.prefix_length, " prefix; the network is \"",
                                                   network.ToString(), "/", range.prefix_length, "\""));
  }
  return range;
}

absl::StatusOr<IpAllowlist> IpAllowlist::Parse(const std::vector<std::string>& ranges) {
  std::vector<CidrRange> parsed;
  parsed.reserve(ranges.size());
  for (const std::string& text : ranges) {
    absl::StatusOr<CidrRange> range = ParseCidrRange(text);
    if (!range.ok()) return range.status();
    parsed.push_back(*std::move(range));
  }
  return IpAllowlist(std::move(parsed));
}

bool IpAllowlist::Allows(const IpAddress& address) const { return ranges_.empty() || Contains(address); }

bool IpAllowlist::Contains(const IpAddress& address) const {
  return std::any_of(ranges_.begin(), ranges_.end(), [&](const CidrRange& range) { return range.Contains(address); });
}

std::string PeerIpAddress(absl::string_view grpc_peer) {
  if (absl::ConsumePrefix(&grpc_peer, "ipv4:")) return std::string(grpc_peer.substr(0, grpc_peer.rfind(':')));
  if (!absl::ConsumePrefix(&grpc_peer, "ipv6:")) return "";

  // "[address]:port", where an address with a zone keeps its %zone.
  std::string decoded = absl::StrReplaceAll(grpc_peer, {{"%5B", "["}, {"%5D", "]"}, {"%25", "%"}});
  absl::string_view rest = decoded;
  if (!absl::ConsumePrefix(&rest, "[")) return "";
  size_t end = rest.find(']');
  if (end == absl::string_view::npos) return "";
  return std::string(rest.substr(0, end));
}

absl::StatusOr<IpAddress> ParseGrpcPeerAddress(absl::string_view grpc_peer) {
  absl::string_view rest = grpc_peer;
  if (absl::ConsumePrefix(&rest, "ipv4:")) {
    size_t colon = rest.rfind(':');
    if (colon != absl::string_view::npos && IsPort(rest.substr(colon + 1))) {
      absl::StatusOr<IpAddress> address = ParseIpAddress(rest.substr(0, colon));
      if (address.ok() && !address->is_ipv6) return address;
    }
  } else if (absl::ConsumePrefix(&rest, "ipv6:")) {
    // "[address]:port", with the brackets percent-encoded as gRPC 1.51
    // reports them. A zone ("%25eth0" or "%eth0") is dropped.
    bool encoded = absl::ConsumePrefix(&rest, "%5B") || absl::ConsumePrefix(&rest, "%5b");
    if (encoded || absl::ConsumePrefix(&rest, "[")) {
      size_t close = encoded ? std::min(rest.find("%5D"), rest.find("%5d")) : rest.find(']');
      if (close != absl::string_view::npos) {
        absl::string_view address = rest.substr(0, close);
        absl::string_view port = rest.substr(close + (encoded ? 3 : 1));
        address = address.substr(0, address.find('%'));
        absl::StatusOr<IpAddress> parsed = ParseIpAddress(address);
        if (parsed.ok() && absl::ConsumePrefix(&port, ":") && IsPort(port) &&
            (parsed->is_ipv6 || absl::StrContains(address, ':'))) {
          return parsed;
        }
      }
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("gRPC peer ", Quote(grpc_peer), " is not an IP address and port"));
}

absl::StatusOr<IpAddress> ResolveClientAddress(const IpAddress& direct_peer,
                                               const std::vector<absl::string_view>& forwarded_for,
                                               const IpAllowlist& trusted_proxies) {
  if (!trusted_proxies.Contains(direct_peer)) return direct_peer;

  std::vector<absl::string_view> elements;
  for (absl::string_view value : forwarded_for) {
    for (absl::string_view element : absl::StrSplit(value, ',')) elements.push_back(element);
  }
  IpAddress client = direct_peer;
  for (size_t i = elements.size(); i-- > 0;) {
    absl::string_view element = absl::StripAsciiWhitespace(elements[i]);
    absl::StatusOr<IpAddress> address = ParseForwardedElement(element);
    if (!address.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("forwarded address ", Quote(element), " (element ", i + 1,
                                                     " of ", elements.size(), ") is not an IP address"));
    }
    client = *address;
    if (!trusted_proxies.Contains(client)) return client;
  }
  return client;
}

}  // namespace crm
