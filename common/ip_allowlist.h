// IP address ranges in CIDR notation and the allowlists built from them,
// for the per-app IP allowlist and the CRM server's trusted proxies. Pure
// logic with no I/O: a list is parsed once and then matched per call.
//
// Parsing is strict. A range is "address/prefix" or a bare address, which
// means a single host (/32 for IPv4, /128 for IPv6). A range with host bits
// set ("10.1.2.3/8") is rejected rather than widened, and the message
// names the range it was probably meant to be ("10.0.0.0/8"). IPv4 ranges
// must be written in IPv4 form: an IPv4-mapped IPv6 range
// ("::ffff:10.0.0.0/104") is rejected with a hint. Addresses with a zone
// ("fe80::1%eth0") are rejected. A client address that is IPv4-mapped IPv6
// (a dual-stack listener reports "::ffff:1.2.3.4") is matched as the IPv4
// address it carries.
#ifndef CRM_COMMON_IP_ALLOWLIST_H_
#define CRM_COMMON_IP_ALLOWLIST_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm {

// An IPv4 or IPv6 address. IPv4 addresses use the first 4 bytes.
struct IpAddress {
  bool is_ipv6 = false;
  std::array<uint8_t, 16> bytes = {};

  // The usual text form: dotted decimal, or RFC 5952 compressed IPv6.
  std::string ToString() const;

  friend bool operator==(const IpAddress& a, const IpAddress& b) {
    return a.is_ipv6 == b.is_ipv6 && a.bytes == b.bytes;
  }
};

// Parses a plain address ("192.0.2.1", "2001:db8::1"). An IPv4-mapped IPv6
// address becomes the IPv4 address it carries. INVALID_ARGUMENT otherwise.
absl::StatusOr<IpAddress> ParseIpAddress(absl::string_view text);

// A network: the address with every bit after prefix_length cleared.
struct CidrRange {
  IpAddress network;
  int prefix_length = 0;

  // Whether `address` is of the same family and inside the network.
  bool Contains(const IpAddress& address) const;

  // Canonical form, always with the prefix: "10.0.0.0/8", "2001:db8::/32",
  // "192.0.2.1/32".
  std::string ToString() const;
};

// Parses one range as described at the top of this file. The error is
// INVALID_ARGUMENT with a message that quotes the input and names the fix.
absl::StatusOr<CidrRange> ParseCidrRange(absl::string_view text);

// A parsed list of ranges. An empty list allows every address.
class IpAllowlist {
 public:
  IpAllowlist() = default;
  explicit IpAllowlist(std::vector<CidrRange> ranges) : ranges_(std::move(ranges)) {}

  // Parses every range. The first invalid one fails the whole list.
  static absl::StatusOr<IpAllowlist> Parse(const std::vector<std::string>& ranges);

  bool empty() const { return ranges_.empty(); }
  const std::vector<CidrRange>& ranges() const { return ranges_; }

  // Whether `address` is in one of the ranges, or the list is empty.
  bool Allows(const IpAddress& address) const;

  // Whether `address` is in one of the ranges. False for an empty list.
  bool Contains(const IpAddress& address) const;

 private:
  std::vector<CidrRange> ranges_;
};

// Returns the IP address text of a gRPC peer string without scheme, brackets
// and port, keeping a zone ("fe80::1%eth0"). Returns "" for other peers,
// such as "unix:/path". Decodes the percent-encoding that gRPC 1.51 applies
// to IPv6 peers ("ipv6:%5B::1%5D:5678").
std::string PeerIpAddress(absl::string_view grpc_peer);

// Returns the IP address of a gRPC peer string: "ipv4:192.0.2.1:5678",
// "ipv6:[2001:db8::1]:5678" or the percent-encoded
// "ipv6:%5B2001:db8::1%5D:5678" that gRPC 1.51 reports. INVALID_ARGUMENT
// for other peers, such as "unix:/path".
absl::StatusOr<IpAddress> ParseGrpcPeerAddress(absl::string_view grpc_peer);

// Finds the client address of a call that may have passed through proxies.
//
// `direct_peer` is the address that connected. Unless it is in
// `trusted_proxies`, it is the client and `forwarded_for` is ignored,
// because anyone can send that header. Otherwise `forwarded_for` contains the
// header's values in the order received, each an X-Forwarded-For list
// ("client, proxy1, proxy2"; each proxy appends the address it saw). The
// list is read from the right, skipping trusted proxies, and the first
// address that is not a trusted proxy is the client. When every address is
// a trusted proxy, the left-most one is the client; with no header values
// the direct peer is.
//
// Elements may be a plain address, "[ipv6]", "[ipv6]:port" or
// "ipv4:port", with spaces around them. Elements left of the client are
// never read. An element that is not an address, met before the client is
// found, makes the result INVALID_ARGUMENT rather than a guess, because it
// is where the client or a trusted proxy should be.
absl::StatusOr<IpAddress> ResolveClientAddress(const IpAddress& direct_peer,
                                               const std::vector<absl::string_view>& forwarded_for,
                                               const IpAllowlist& trusted_proxies);

}  // namespace crm

#endif  // CRM_COMMON_IP_ALLOWLIST_H_
