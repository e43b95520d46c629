// Page tokens, text checks and scope masks from common/.
#include "common/page_token.h"
#include "common/scopes.h"
#include "common/text.h"
#include "gtest/gtest.h"

namespace crm {
namespace {

TEST(PageToken, RoundTrip) {
  PageTokenCodec codec(std::string(32, 'k'));
  std::string token = codec.Encode("list|org=1", 12345);
  absl::StatusOr<uint64_t> id = codec.Decode("list|org=1", token);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, 12345u);
}

TEST(PageToken, OtherRequestRejected) {
  PageTokenCodec codec(std::string(32, 'k'));
  std::string token = codec.Encode("list|org=1", 7);
  EXPECT_EQ(codec.Decode("list|org=2", token).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PageToken, TamperedOrGarbageRejected) {
  PageTokenCodec codec(std::string(32, 'k'));
  std::string token = codec.Encode("scope", 7);
  for (size_t i = 0; i < token.size(); ++i) {
    std::string tampered = token;
    tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(codec.Decode("scope", tampered).ok()) << "position " << i;
  }
  EXPECT_FALSE(codec.Decode("scope", token.substr(0, token.size() - 2)).ok());
  EXPECT_FALSE(codec.Decode("scope", "not a token").ok());
  PageTokenCodec other_key(std::string(32, 'x'));
  EXPECT_FALSE(other_key.Decode("scope", token).ok());
}

// absl's base64 decoder skips whitespace and accepts padding and stray low
// bits in the last character. The fuzzer found a token with a space inside
// that still decoded. Only the exact text Encode wrote may decode.
TEST(PageToken, OtherSpellingsOfTokenRejected) {
  PageTokenCodec codec(std::string(32, 'k'));
  std::string token = codec.Encode("scope", 7);
  ASSERT_TRUE(codec.Decode("scope", token).ok());
  EXPECT_FALSE(codec.Decode("scope", token.substr(0, 10) + " " + token.substr(10)).ok()) << "space inside";
  EXPECT_FALSE(codec.Decode("scope", token + "\n").ok()) << "trailing line break";
  EXPECT_FALSE(codec.Decode("scope", token + "=").ok()) << "padding";

  // A 26-byte payload takes 35 characters, so the last one carries two
  // unused low bits.
  std::string position_token = codec.EncodePosition("scope", "a");
  ASSERT_EQ(35u, position_token.size());
  ASSERT_TRUE(codec.DecodePosition("scope", position_token).ok());
  std::string stray_bits = position_token;
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  stray_bits.back() = alphabet[alphabet.find(stray_bits.back()) ^ 1];
  EXPECT_FALSE(codec.DecodePosition("scope", stray_bits).ok()) << "stray low bits";
  EXPECT_FALSE(codec.DecodePosition("scope", position_token + "=").ok()) << "padding";
}

TEST(Text, InvalidUtf8Rejected) {
  TextRules rules{.max_code_points = 100};
  for (const char* bytes : {"\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "a\xFFz"}) {
    EXPECT_EQ(ValidateText("name", bytes, rules).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(ValidateText("name", "K\xC3\xB6ln \xF0\x9F\x98\x80", rules).ok());
}

TEST(Text, ControlCharactersAndLineBreaks) {
  TextRules single_line{.max_code_points = 100};
  TextRules multi_line{.max_code_points = 100, .allow_line_breaks = true};
  EXPECT_FALSE(ValidateText("name", "a\nb", single_line).ok());
  EXPECT_TRUE(ValidateText("description", "a\nb\tc", multi_line).ok());
  EXPECT_FALSE(ValidateText("description", "a\x07", multi_line).ok());
  EXPECT_FALSE(ValidateText("name", "a\xC2\x85", single_line).ok()) << "C1 control U+0085";
}

TEST(Text, SurroundingSpace) {
  TextRules rules{.max_code_points = 100, .allow_surrounding_space = false};
  EXPECT_FALSE(ValidateText("name", " padded", rules).ok());
  EXPECT_FALSE(ValidateText("name", "padded ", rules).ok());
  EXPECT_TRUE(ValidateText("name", "in side", rules).ok());
}

TEST(Text, ParseBearer) {
  absl::string_view credential;
  EXPECT_TRUE(ParseBearer("Bearer abc", TokenKind::kAppToken, &credential).ok());
  EXPECT_EQ(credential, "abc");
  EXPECT_TRUE(ParseBearer("bearer abc", TokenKind::kAppToken, &credential).ok());
  EXPECT_EQ(ParseBearer("", TokenKind::kAppToken, &credential).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ParseBearer("Basic abc", TokenKind::kAppToken, &credential).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ParseBearer("Bearer ", TokenKind::kAppToken, &credential).code(), absl::StatusCode::kUnauthenticated);
}

TEST(Scopes, MaskRoundTrip) {
  google::protobuf::RepeatedPtrField<crm::auth::v1::Scope> scopes;
  auto* scope = scopes.Add();
  scope->set_module(crm::auth::v1::MODULE_MESSAGE);
  scope->set_action(crm::auth::v1::ACTION_DELETE);
  scope = scopes.Add();
  scope->set_module(crm::auth::v1::MODULE_LEAD);
  scope->set_action(crm::auth::v1::ACTION_READ);
  absl::StatusOr<ScopeMask> mask = ScopeMaskFromProto(scopes);
  ASSERT_TRUE(mask.ok());

  google::protobuf::RepeatedPtrField<crm::auth::v1::Scope> sorted;
  ScopeMaskToProto(*mask, &sorted);
  ASSERT_EQ(sorted.size(), 2);
  EXPECT_EQ(sorted[0].module(), crm::auth::v1::MODULE_LEAD);
  EXPECT_EQ(sorted[1].module(), crm::auth::v1::MODULE_MESSAGE);
}

TEST(Scopes, InvalidScopesRejected) {
  google::protobuf::RepeatedPtrField<crm::auth::v1::Scope> scopes;
  auto* scope = scopes.Add();
  scope->set_module(crm::auth::v1::MODULE_LEAD);
  EXPECT_EQ(ScopeMaskFromProto(scopes).status().code(), absl::StatusCode::kInvalidArgument) << "unspecified action";
  scope->set_action(crm::auth::v1::ACTION_READ);
  *scopes.Add() = *scope;
  EXPECT_EQ(ScopeMaskFromProto(scopes).status().code(), absl::StatusCode::kInvalidArgument) << "duplicate";
  scopes.RemoveLast();
  scope->set_module(static_cast<crm::auth::v1::Module>(42));
  EXPECT_EQ(ScopeMaskFromProto(scopes).status().code(), absl::StatusCode::kInvalidArgument) << "unknown";
}

}  // namespace
}  // namespace crm
