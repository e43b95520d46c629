// Fuzzes the CIDR range, address and X-Forwarded-For parsing in
// common/ip_allowlist.h.
//
// Properties checked on every input:
//   - A range that ParseCidrRange accepts prints a canonical form that
//     parses to the same range and prints the same again, and the range
//     contains its own network address. A rejection is INVALID_ARGUMENT
//     with a message of bounded length, whatever the input's length.
//   - An address that ParseIpAddress or ParseGrpcPeerAddress accepts prints
//     a form that ParseIpAddress reads back to the same address, and it is
//     never an IPv4-mapped IPv6 address.
//   - ResolveClientAddress returns the direct peer unchanged when the peer
//     is not a trusted proxy, and otherwise an address or
//     INVALID_ARGUMENT.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/ip_allowlist.h"
#include "tests/fuzz/fuzz_check.h"

namespace crm {
namespace {

// Messages quote at most 64 characters of the input, so they stay short.
constexpr size_t kMaxMessageChars = 400;

void CheckAddressRoundTrip(const IpAddress& address) {
  absl::StatusOr<IpAddress> again = ParseIpAddress(address.ToString());
  FUZZ_CHECK(again.ok(), absl::StrCat("printed address does not parse: ", address.ToString()));
  FUZZ_CHECK(*again == address, absl::StrCat("printed address parses differently: ", address.ToString()));
  FUZZ_CHECK(!(address.is_ipv6 && address.ToString().rfind("::ffff:", 0) == 0 &&
               address.ToString().find('.') != std::string::npos),
             absl::StrCat("an IPv4-mapped address was not unmapped: ", address.ToString()));
}

void CheckRange(absl::string_view input) {
  absl::StatusOr<CidrRange> range = ParseCidrRange(input);
  if (!range.ok()) {
    FUZZ_CHECK(range.status().code() == absl::StatusCode::kInvalidArgument, range.status().ToString());
    FUZZ_CHECK(range.status().message().size() <= kMaxMessageChars, "a rejection message is too long");
    return;
  }
  std::string canonical = range->ToString();
  absl::StatusOr<CidrRange> again = ParseCidrRange(canonical);
  FUZZ_CHECK(again.ok(), absl::StrCat("canonical form does not parse: ", canonical));
  FUZZ_CHECK(again->ToString() == canonical, absl::StrCat("canonical form is not stable: ", canonical));
  FUZZ_CHECK(again->network == range->network && again->prefix_length == range->prefix_length,
             absl::StrCat("canonical form parses to another range: ", canonical));
  FUZZ_CHECK(range->Contains(range->network), absl::StrCat("range does not contain its network: ", canonical));
}

void CheckAddresses(absl::string_view input) {
  absl::StatusOr<IpAddress> address = ParseIpAddress(input);
  if (address.ok()) CheckAddressRoundTrip(*address);
  absl::StatusOr<IpAddress> peer = ParseGrpcPeerAddress(input);
  if (peer.ok()) CheckAddressRoundTrip(*peer);
}

void CheckForwardedFor(absl::string_view input) {
  static const IpAllowlist* trusted = new IpAllowlist(*IpAllowlist::Parse({"10.0.0.0/8", "fd00::/8"}));
  IpAddress proxy = *ParseIpAddress("10.0.0.1");
  IpAddress outsider = *ParseIpAddress("198.51.100.1");

  absl::StatusOr<IpAddress> ignored = ResolveClientAddress(outsider, {input}, *trusted);
  FUZZ_CHECK(ignored.ok() && *ignored == outsider, "the header of an untrusted peer was read");

  absl::StatusOr<IpAddress> client = ResolveClientAddress(proxy, {input}, *trusted);
  if (!client.ok()) {
    FUZZ_CHECK(client.status().code() == absl::StatusCode::kInvalidArgument, client.status().ToString());
    return;
  }
  CheckAddressRoundTrip(*client);
}

}  // namespace
}  // namespace crm

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  crm::CheckRange(input);
  crm::CheckAddresses(input);
  crm::CheckForwardedFor(input);
  return 0;
}
