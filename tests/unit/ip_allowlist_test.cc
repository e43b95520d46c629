// CIDR ranges, allowlists, gRPC peer strings and X-Forwarded-For parsing
// from common/ip_allowlist.h.
#include "common/ip_allowlist.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace crm {
namespace {

IpAddress Address(absl::string_view text) {
  absl::StatusOr<IpAddress> address = ParseIpAddress(text);
  EXPECT_TRUE(address.ok()) << text << ": " << address.status();
  return address.value_or(IpAddress{});
}

IpAllowlist List(const std::vector<std::string>& ranges) {
  absl::StatusOr<IpAllowlist> list = IpAllowlist::Parse(ranges);
  EXPECT_TRUE(list.ok()) << list.status();
  return list.value_or(IpAllowlist{});
}

TEST(CidrRange, CanonicalForms) {
  const std::pair<std::string, std::string> cases[] = {
      {"203.0.113.0/24", "203.0.113.0/24"},
      {"192.0.2.7", "192.0.2.7/32"},
      {"0.0.0.0/0", "0.0.0.0/0"},
      {"10.0.0.0/8", "10.0.0.0/8"},
      {"2001:db8::/32", "2001:db8::/32"},
      {"2001:DB8:0:0::/64", "2001:db8::/64"},
      {"::1", "::1/128"},
      {"::/0", "::/0"},
      {"fe80::/10", "fe80::/10"},
      {"2001:db8::8:800:200c:417a/128", "2001:db8::8:800:200c:417a/128"},
  };
  for (const auto& [input, canonical] : cases) {
    absl::StatusOr<CidrRange> range = ParseCidrRange(input);
    ASSERT_TRUE(range.ok()) << input << ": " << range.status();
    EXPECT_EQ(range->ToString(), canonical) << input;
  }
}

TEST(CidrRange, InvalidRangesRejected) {
  const char* cases[] = {
      "",                      // empty
      "10.0.0.0/",             // missing prefix
      "10.0.0.0/33",           // prefix beyond 32
      "2001:db8::/129",        // prefix beyond 128
      "10.0.0.0/-1",           // sign
      "10.0.0.0/+8",           // sign
      "10.0.0.0/08",           // leading zero
      "10.0.0.0/8/8",          // two slashes
      "10.0.0.0 /8",           // space
      " 10.0.0.0/8",           // leading space
      "10.0.0/8",              // three parts
      "10.0.0.256/32",         // octet out of range
      "010.0.0.0/8",           // leading zero in an octet
      "1.2.3.4.5",             // five parts
      "example.com/24",        // a name
      "2001:db8:::/32",        // three colons
      "fe80::1%eth0/128",      // zone
      "::ffff:10.0.0.0/104",   // IPv4-mapped IPv6
      "::ffff:192.0.2.1",      // IPv4-mapped IPv6 host
      "10.0.0.0/8,10.1.0.0/16",  // two ranges in one string
      "/8",                    // no address
  };
  for (const char* input : cases) {
    absl::StatusOr<CidrRange> range = ParseCidrRange(input);
    EXPECT_EQ(range.status().code(), absl::StatusCode::kInvalidArgument) << "\"" << input << "\" was accepted";
  }
}

TEST(CidrRange, HostBitsRejectedWithNetwork) {
  absl::StatusOr<CidrRange> range = ParseCidrRange("10.1.2.3/8");
  ASSERT_EQ(range.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(range.status().message().find("host bits"), absl::string_view::npos) << range.status();
  EXPECT_NE(range.status().message().find("\"10.0.0.0/8\""), absl::string_view::npos) << range.status();

  absl::StatusOr<CidrRange> ipv6 = ParseCidrRange("2001:db8::1/32");
  ASSERT_EQ(ipv6.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ipv6.status().message().find("\"2001:db8::/32\""), absl::string_view::npos) << ipv6.status();

  // A bit inside the last partial byte of the prefix.
  EXPECT_FALSE(ParseCidrRange("192.168.1.0/23").ok());
  EXPECT_TRUE(ParseCidrRange("192.168.0.0/23").ok());
}

TEST(CidrRange, LongInputQuotedShort) {
  std::string input(5000, '1');
  absl::StatusOr<CidrRange> range = ParseCidrRange(input);
  ASSERT_FALSE(range.ok());
  EXPECT_LT(range.status().message().size(), 300u) << range.status();
}

TEST(CidrRange, MessageIsPrintableAscii) {
  // 63 ASCII characters, then a two-byte UTF-8 sequence cut by the quote
  // limit, and a control character.
  std::string input = std::string(63, '1') + "\xc3\xa9\x01";
  absl::StatusOr<CidrRange> range = ParseCidrRange(input);
  ASSERT_FALSE(range.ok());
  for (char c : range.status().message()) {
    int byte = static_cast<unsigned char>(c);
    EXPECT_GE(byte, 0x20) << "byte " << byte;
    EXPECT_LT(byte, 0x7f) << "byte " << byte;
  }
}

TEST(CidrRange, ContainsIpv4) {
  absl::StatusOr<CidrRange> range = ParseCidrRange("192.168.0.0/23");
  ASSERT_TRUE(range.ok());
  EXPECT_TRUE(range->Contains(Address("192.168.0.0")));
  EXPECT_TRUE(range->Contains(Address("192.168.1.255")));
  EXPECT_FALSE(range->Contains(Address("192.168.2.0")));
  EXPECT_FALSE(range->Contains(Address("192.167.255.255")));
  // Same bytes, other family.
  EXPECT_FALSE(range->Contains(Address("c0a8::")));
}

TEST(CidrRange, ContainsIpv6) {
  absl::StatusOr<CidrRange> range = ParseCidrRange("2001:db8::/32");
  ASSERT_TRUE(range.ok());
  EXPECT_TRUE(range->Contains(Address("2001:db8::1")));
  EXPECT_TRUE(range->Contains(Address("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(range->Contains(Address("2001:db9::")));
  EXPECT_FALSE(range->Contains(Address("32.1.13.184")));  // 2001:0db8 as IPv4 bytes
}

TEST(CidrRange, ZeroPrefixMatchesOneFamily) {
  absl::StatusOr<CidrRange> ipv4_all = ParseCidrRange("0.0.0.0/0");
  absl::StatusOr<CidrRange> ipv6_all = ParseCidrRange("::/0");
  ASSERT_TRUE(ipv4_all.ok());
  ASSERT_TRUE(ipv6_all.ok());
  EXPECT_TRUE(ipv4_all->Contains(Address("255.255.255.255")));
  EXPECT_FALSE(ipv4_all->Contains(Address("::1")));
  EXPECT_TRUE(ipv6_all->Contains(Address("::1")));
  EXPECT_FALSE(ipv6_all->Contains(Address("127.0.0.1")));
}

TEST(IpAddress, MappedIpv6BecomesIpv4) {
  IpAddress address = Address("::ffff:1.2.3.4");
  EXPECT_FALSE(address.is_ipv6);
  EXPECT_EQ(address.ToString(), "1.2.3.4");
  EXPECT_TRUE(List({"1.2.3.0/24"}).Allows(address));
  EXPECT_TRUE(Address("::ffff:102:304") == address);
}

TEST(IpAddress, InvalidAddressesRejected) {
  for (const char* input : {"", "1.2.3", "1.2.3.4/32", "::1/128", "[::1]", "1.2.3.4:80", "abc", "fe80::1%eth0"}) {
    EXPECT_FALSE(ParseIpAddress(input).ok()) << "\"" << input << "\" was accepted";
  }
}

TEST(IpAllowlist, EmptyAllowsEverything) {
  IpAllowlist empty;
  EXPECT_TRUE(empty.Allows(Address("10.0.0.1")));
  EXPECT_TRUE(empty.Allows(Address("::1")));
  EXPECT_FALSE(empty.Contains(Address("10.0.0.1")));
}

TEST(IpAllowlist, MatchesAnyRange) {
  IpAllowlist list = List({"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"});
  EXPECT_TRUE(list.Allows(Address("10.255.0.1")));
  EXPECT_TRUE(list.Allows(Address("2001:db8:1::5")));
  EXPECT_TRUE(list.Allows(Address("192.0.2.7")));
  EXPECT_FALSE(list.Allows(Address("192.0.2.8")));
  EXPECT_FALSE(list.Allows(Address("11.0.0.1")));
  EXPECT_FALSE(list.Allows(Address("::1")));
  EXPECT_TRUE(list.Allows(Address("::ffff:10.1.1.1")));
}

TEST(IpAllowlist, FirstInvalidRangeFailsList) {
  absl::StatusOr<IpAllowlist> list = IpAllowlist::Parse({"10.0.0.0/8", "10.0.0.0/33"});
  EXPECT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrpcPeer, ParsesBothFamilies) {
  const std::pair<std::string, std::string> cases[] = {
      {"ipv4:127.0.0.1:5678", "127.0.0.1"},
      {"ipv4:203.0.113.9:1", "203.0.113.9"},
      {"ipv6:[::1]:5678", "::1"},
      {"ipv6:%5B::1%5D:5678", "::1"},
      {"ipv6:[2001:db8::1]:443", "2001:db8::1"},
      {"ipv6:[::ffff:1.2.3.4]:5678", "1.2.3.4"},
      {"ipv6:[fe80::1%25eth0]:5678", "fe80::1"},
  };
  for (const auto& [peer, expected] : cases) {
    absl::StatusOr<IpAddress> address = ParseGrpcPeerAddress(peer);
    ASSERT_TRUE(address.ok()) << peer << ": " << address.status();
    EXPECT_EQ(address->ToString(), expected) << peer;
  }
  EXPECT_FALSE(ParseGrpcPeerAddress("ipv6:[::ffff:1.2.3.4]:5678")->is_ipv6);
}

TEST(GrpcPeer, OtherPeersRejected) {
  for (const char* peer : {"", "unix:/tmp/socket", "ipv4:", "ipv4:1.2.3.4", "ipv4:::1:80", "ipv6:::1:80",
                           "ipv6:[::1", "ipv6:[::1]:80x", "ipv6:[::1]", "ipv6:[1.2.3.4]:80", "ipv4:1.2.3.4:",
                           "ipv4:[::1]:80", "tcp:1.2.3.4:80"}) {
    absl::StatusOr<IpAddress> address = ParseGrpcPeerAddress(peer);
    EXPECT_FALSE(address.ok()) << "\"" << peer << "\" gave " << address->ToString();
  }
}

class ForwardedFor : public ::testing::Test {
 protected:
  // The direct peer is a proxy in 10.0.0.0/8, which is trusted.
  IpAllowlist trusted_ = List({"10.0.0.0/8", "fd00::/8"});
  IpAddress proxy_ = Address("10.0.0.2");

  std::string Resolve(const IpAddress& peer, const std::vector<absl::string_view>& header) {
    absl::StatusOr<IpAddress> client = ResolveClientAddress(peer, header, trusted_);
    return client.ok() ? client->ToString() : "error: " + std::string(client.status().message());
  }
};

TEST_F(ForwardedFor, UntrustedPeerIgnoresHeader) {
  EXPECT_EQ(Resolve(Address("198.51.100.1"), {"203.0.113.5"}), "198.51.100.1");
  // Even a malformed header is ignored: it is never read.
  EXPECT_EQ(Resolve(Address("198.51.100.1"), {"garbage"}), "198.51.100.1");
}

TEST_F(ForwardedFor, TrustedPeerWithoutHeaderIsClient) { EXPECT_EQ(Resolve(proxy_, {}), "10.0.0.2"); }

TEST_F(ForwardedFor, RightMostUntrustedAddressIsClient) {
  EXPECT_EQ(Resolve(proxy_, {"203.0.113.5"}), "203.0.113.5");
  // The client forged the first element, and the trusted proxy appended the
  // address it received the call from.
  EXPECT_EQ(Resolve(proxy_, {"192.0.2.1, 203.0.113.5"}), "203.0.113.5");
  // Two trusted proxies in the chain.
  EXPECT_EQ(Resolve(proxy_, {"192.0.2.1, 203.0.113.5, 10.9.9.9"}), "203.0.113.5");
  // Several header values are one list, in order.
  EXPECT_EQ(Resolve(proxy_, {"192.0.2.1", "203.0.113.5,10.9.9.9"}), "203.0.113.5");
}

TEST_F(ForwardedFor, AllTrustedGivesLeftMost) { EXPECT_EQ(Resolve(proxy_, {"10.1.1.1, 10.2.2.2"}), "10.1.1.1"); }

TEST_F(ForwardedFor, ElementForms) {
  EXPECT_EQ(Resolve(proxy_, {"  203.0.113.5  "}), "203.0.113.5");
  EXPECT_EQ(Resolve(proxy_, {"203.0.113.5:4711"}), "203.0.113.5");
  EXPECT_EQ(Resolve(proxy_, {"2001:db8::5"}), "2001:db8::5");
  EXPECT_EQ(Resolve(proxy_, {"[2001:db8::5]"}), "2001:db8::5");
  EXPECT_EQ(Resolve(proxy_, {"[2001:db8::5]:4711"}), "2001:db8::5");
  EXPECT_EQ(Resolve(proxy_, {"::ffff:203.0.113.5"}), "203.0.113.5");
  EXPECT_EQ(Resolve(proxy_, {"203.0.113.5, fd00::1"}), "203.0.113.5");
}

TEST_F(ForwardedFor, MalformedElementBeforeClientFails) {
  for (absl::string_view header : {"unknown", "203.0.113.5, garbage", "203.0.113.5,", "", "[2001:db8::5",
                                   "203.0.113.5:port", "[::1]x", "10.0.0.0/8"}) {
    std::string result = Resolve(proxy_, {header});
    EXPECT_EQ(result.rfind("error: ", 0), 0u) << "\"" << header << "\" gave " << result;
  }
}

TEST_F(ForwardedFor, MalformedElementLeftOfClientIgnored) {
  EXPECT_EQ(Resolve(proxy_, {"garbage, 203.0.113.5, 10.1.1.1"}), "203.0.113.5");
}

}  // namespace
}  // namespace crm
