// Bad input against a real stack: every case gets INVALID_ARGUMENT (or the
// code the contract documents for it) with a message naming the problem,
// and stores nothing, which each test checks by reading the tables back.
// Requests that protobuf's C++ serializer would not produce, such as invalid
// UTF-8 in a string field or a page_size of 2^31, are written as wire bytes
// by hand and sent through a generic stub, so the servers really receive
// them. docs/reliability.md lists every case with its test.
#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/text.h"
#include "crm/data/v1/annotations.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/table_lock.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_CREATE;
using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_LEAD;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

constexpr char kCreateApp[] = "/crm.auth.v1.PrivateAppService/CreatePrivateApp";
constexpr char kListApps[] = "/crm.auth.v1.PrivateAppService/ListPrivateApps";
constexpr char kCreateLead[] = "/crm.data.v1.CrmService/CreateLead";
constexpr char kListLeads[] = "/crm.data.v1.CrmService/ListLeads";

// Text that breaks naive SQL, LIKE patterns, shells and log lines, with
// characters of one to four UTF-8 bytes. It has no control characters and no
// surrounding white space, so every text field accepts it.
const std::string kHostileText =
    "Robert'); DROP TABLE leads; -- \" OR 1=1 # /* */ \\ \\' \\0 %_% `id` ${x} $(id) <b>&amp; "
    "\xC3\xA9\xE2\x80\xAE\xF0\x9F\x98\x80\xE4\xB8\xAD";

// ---- Protobuf wire format, written by hand ----

std::string Varint(uint64_t value) {
  std::string bytes;
  while (value >= 0x80) {
    bytes.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  bytes.push_back(static_cast<char>(value));
  return bytes;
}

std::string VarintField(int field, uint64_t value) { return Varint(static_cast<uint64_t>(field) << 3) + Varint(value); }

std::string BytesField(int field, const std::string& bytes) {
  return Varint((static_cast<uint64_t>(field) << 3) | 2) + Varint(bytes.size()) + bytes;
}

// A CreatePrivateAppRequest whose app has `display_name` and Lead Read.
std::string RawCreateAppRequest(const std::string& display_name) {
  std::string scope = VarintField(1, MODULE_LEAD) + VarintField(2, ACTION_READ);
  return BytesField(1, BytesField(3, display_name) + BytesField(7, scope));
}

// ---- Logos, built byte by byte ----

std::string BigEndian32(uint32_t value) {
  return {static_cast<char>(value >> 24), static_cast<char>(value >> 16), static_cast<char>(value >> 8),
          static_cast<char>(value)};
}

std::string PngChunk(const std::string& type, const std::string& data) {
  std::string covered = type + data;
  uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(covered.data()),
                    static_cast<uInt>(covered.size()));
  return BigEndian32(static_cast<uint32_t>(data.size())) + covered + BigEndian32(static_cast<uint32_t>(crc));
}

// A PNG that declares width x height pixels. The image data is that of a
// black 1x1 image when the declared size is large, so a huge declared size
// costs only a few bytes.
std::string Png(uint32_t width, uint32_t height) {
  std::string header =
      PngChunk("IHDR", BigEndian32(width) + BigEndian32(height) + std::string("\x08\x02\x00\x00\x00", 5));
  uint32_t rows = width > 64 || height > 64 ? 1 : height;
  uint32_t columns = width > 64 || height > 64 ? 1 : width;
  std::string raw(rows * (1 + 3 * columns), '\0');
  uLongf size = compressBound(raw.size());
  std::string compressed(size, '\0');
  compress(reinterpret_cast<Bytef*>(compressed.data()), &size, reinterpret_cast<const Bytef*>(raw.data()),
           raw.size());
  compressed.resize(size);
  return std::string("\x89PNG\r\n\x1a\n", 8) + header + PngChunk("IDAT", compressed) + PngChunk("IEND", "");
}

// A 1x1 GIF89a image.
std::string Gif() {
  return std::string("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
                     "\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
                     43);
}

// Returns `text` repeated until it is exactly `code_points` long.
std::string RepeatToLength(const std::string& text, size_t code_points) {
  std::string result;
  size_t count = 0;
  size_t pos = 0;
  while (count < code_points) {
    size_t length = 1;
    unsigned char lead = static_cast<unsigned char>(text[pos]);
    if (lead >= 0xF0) {
      length = 4;
    } else if (lead >= 0xE0) {
      length = 3;
    } else if (lead >= 0xC0) {
      length = 2;
    }
    result.append(text, pos, length);
    ++count;
    pos = (pos + length) % text.size();
  }
  // Text fields may not end with white space in every service.
  if (result.back() == ' ') result.back() = '.';
  return result;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override { StartStack({}); }

  void StartStack(const StackOptions& options) {
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_key_ = stack_->NewOrganization();
    token_ = stack_->NewApp(admin_key_, AllScopes()).access_token();
    ASSERT_FALSE(token_.empty());
  }

  // Sends `bytes` as the request of `method` and returns the status; the
  // reply's bytes go to `reply` when it is set.
  grpc::Status RawCall(grpc::GenericStub& stub, const std::string& method, const std::string& credential,
                       const std::string& bytes, std::string* reply = nullptr) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::unique_ptr<grpc::ClientContext> context = WithBearer(credential);
    std::promise<grpc::Status> done;
    stub.UnaryCall(context.get(), method, grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status status) { done.set_value(std::move(status)); });
    grpc::Status status = done.get_future().get();
    if (status.ok() && reply != nullptr) {
      std::vector<grpc::Slice> slices;
      EXPECT_TRUE(response.Dump(&slices).ok());
      reply->clear();
      for (const grpc::Slice& part : slices) reply->append(reinterpret_cast<const char*>(part.begin()), part.size());
    }
    return status;
  }

  int64_t AppRows() { return CountRows(stack_->auth_pool(), "private_apps"); }
  int64_t LeadRows() { return CountRows(stack_->data_pool(), "leads"); }

  crm::auth::v1::CreatePrivateAppRequest AppRequest(const std::string& display_name = "Valid app") {
    crm::auth::v1::CreatePrivateAppRequest request;
    request.mutable_private_app()->set_display_name(display_name);
    *request.mutable_private_app()->add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
    return request;
  }

  // Sends CreatePrivateApp and expects INVALID_ARGUMENT with `expected` in
  // the message and no new app row.
  void ExpectAppRejected(const crm::auth::v1::CreatePrivateAppRequest& request, const std::string& expected) {
    int64_t before = AppRows();
    crm::auth::v1::CreatePrivateAppResponse response;
    grpc::Status status = stack_->apps().CreatePrivateApp(WithBearer(admin_key_).get(), request, &response);
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), expected))
        << "message \"" << status.error_message() << "\" lacks \"" << expected << "\"";
    EXPECT_EQ(before, AppRows());
  }

  // Sends UpdatePrivateApp on a fresh app and expects INVALID_ARGUMENT with
  // `expected` in the message and the app unchanged.
  void ExpectAppUpdateRejected(const crm::auth::v1::PrivateApp& change, const std::vector<std::string>& paths,
                               const std::string& expected) {
    crm::auth::v1::PrivateApp app = stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)}).private_app();
    crm::auth::v1::UpdatePrivateAppRequest request;
    *request.mutable_private_app() = change;
    request.mutable_private_app()->set_id(app.id());
    for (const std::string& path : paths) request.mutable_update_mask()->add_paths(path);
    crm::auth::v1::UpdatePrivateAppResponse response;
    grpc::Status status = stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), request, &response);
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), expected))
        << "message \"" << status.error_message() << "\" lacks \"" << expected << "\"";

    crm::auth::v1::GetPrivateAppRequest get;
    get.set_id(app.id());
    crm::auth::v1::GetPrivateAppResponse after;
    ASSERT_TRUE(stack_->apps().GetPrivateApp(WithBearer(admin_key_).get(), get, &after).ok());
    EXPECT_EQ(app.SerializeAsString(), after.private_app().SerializeAsString()) << "the rejected update changed the app";
  }

  crm::data::v1::Lead NewLead(const std::string& last_name) {
    crm::data::v1::CreateLeadRequest request;
    request.mutable_lead()->set_last_name(last_name);
    crm::data::v1::CreateLeadResponse response;
    grpc::Status status = stack_->crm().CreateLead(WithBearer(token_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.lead();
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
  std::string token_;
};

// ---- Names and descriptions ----

TEST_F(BadInputTest, AppNameEmptyRejected) { ExpectAppRejected(AppRequest(""), "display_name is required"); }

TEST_F(BadInputTest, AppNameOversizedRejected) {
  ExpectAppRejected(AppRequest(std::string(101, 'n')), "101 characters long; the maximum is 100");
  // The limit counts characters, not bytes: 101 four-byte emoji.
  ExpectAppRejected(AppRequest(RepeatToLength("\xF0\x9F\x98\x80", 101)), "the maximum is 100");
}

TEST_F(BadInputTest, AppNameControlCharactersRejected) {
  for (const std::string& control : {std::string("\x01"), std::string("\n"), std::string("\t"), std::string("\x1b"),
                                     std::string("\x7f"), std::string("\xC2\x85"), std::string(1, '\0')}) {
    SCOPED_TRACE(absl::StrCat("byte 0x", absl::Hex(static_cast<unsigned char>(control.back()))));
    ExpectAppRejected(AppRequest(absl::StrCat("bad", control, "name")), "contains control character");
  }
}

TEST_F(BadInputTest, AppNameInvalidUtf8Rejected) {
  int64_t before = AppRows();
  // A lone continuation byte, a truncated sequence, an overlong encoding of
  // '/', an encoded surrogate, a code point above U+10FFFF, and 0xFF.
  for (const std::string& bad : {std::string("\x80"), std::string("\xC3"), std::string("\xC0\xAF"),
                                 std::string("\xED\xA0\x80"), std::string("\xF4\x90\x80\x80"), std::string("\xFF")}) {
    SCOPED_TRACE(absl::StrCat("bytes ", absl::BytesToHexString(bad)));
    grpc::Status status = RawCall(stack_->generic_auth(), kCreateApp, admin_key_, RawCreateAppRequest("app " + bad));
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "valid UTF-8")) << status.error_message();
  }
  EXPECT_EQ(before, AppRows());

  // The server keeps serving, and the same bytes made valid are accepted.
  EXPECT_TRUE(RawCall(stack_->generic_auth(), kCreateApp, admin_key_, RawCreateAppRequest("app \xC3\xA9")).ok());
  EXPECT_EQ(before + 1, AppRows());
}

TEST_F(BadInputTest, RecordInvalidUtf8Rejected) {
  int64_t before = LeadRows();
  for (const std::string& bad : {std::string("\x80"), std::string("\xC3"), std::string("\xC0\xAF"),
                                 std::string("\xED\xA0\x80"), std::string("\xFF")}) {
    SCOPED_TRACE(absl::StrCat("bytes ", absl::BytesToHexString(bad)));
    // CreateLeadRequest.lead (1) with last_name (3).
    std::string request = BytesField(1, BytesField(3, "Lovelace" + bad));
    grpc::Status status = RawCall(stack_->generic_crm(), kCreateLead, token_, request);
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "valid UTF-8")) << status.error_message();
  }
  EXPECT_EQ(before, LeadRows());
}

TEST_F(BadInputTest, DescriptionOverLimitRejected) {
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest();
  request.mutable_private_app()->set_description(std::string(1001, 'd'));
  ExpectAppRejected(request, "1001 characters long; the maximum is 1000");

  crm::auth::v1::PrivateApp change;
  change.set_description(std::string(1001, 'd'));
  ExpectAppUpdateRejected(change, {"description"}, "the maximum is 1000");
}

TEST_F(BadInputTest, RecordFieldOverLimitRejected) {
  int64_t before = LeadRows();
  crm::data::v1::CreateLeadRequest request;
  request.mutable_lead()->set_last_name(RepeatToLength("\xF0\x9F\x98\x80", 101));
  crm::data::v1::CreateLeadResponse response;
  grpc::Status status = stack_->crm().CreateLead(WithBearer(token_).get(), request, &response);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "the maximum is 100")) << status.error_message();
  EXPECT_EQ(before, LeadRows());
}

// ---- Logos ----

TEST_F(BadInputTest, LogoTruncatedRejected) {
  std::string png = Png(16, 16);
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest();
  request.mutable_private_app()->set_logo(png.substr(0, png.size() - 12));  // Without IEND.
  ExpectAppRejected(request, "truncated");
  request.mutable_private_app()->set_logo(png.substr(0, 20));  // Inside the IHDR chunk.
  ExpectAppRejected(request, "logo");
}

TEST_F(BadInputTest, LogoNotSquareRejected) {
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest();
  request.mutable_private_app()->set_logo(Png(32, 16));
  ExpectAppRejected(request, "must be square");

  crm::auth::v1::PrivateApp change;
  change.set_logo(Png(16, 32));
  ExpectAppUpdateRejected(change, {"logo"}, "must be square");
}

TEST_F(BadInputTest, LogoHugeDeclaredSizeRejected) {
  std::string bomb = Png(100000, 100000);
  ASSERT_LT(bomb.size(), 100u) << "the image should declare a huge size in a few bytes";
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest();
  request.mutable_private_app()->set_logo(bomb);
  ExpectAppRejected(request, "logo");
}

TEST_F(BadInputTest, LogoOtherFormatRejected) {
  // A GIF that claims to be a PNG: the server judges the bytes, not the
  // output-only logo_mime_type a client sets.
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest();
  request.mutable_private_app()->set_logo(Gif());
  request.mutable_private_app()->set_logo_mime_type("image/png");
  ExpectAppRejected(request, "logo");
  request.mutable_private_app()->set_logo("not an image at all.png");
  ExpectAppRejected(request, "logo");
}

// ---- Scopes ----

TEST_F(BadInputTest, ScopesUnknownRejected) {
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest();
  request.mutable_private_app()->mutable_scopes(0)->set_module(static_cast<crm::auth::v1::Module>(99));
  ExpectAppRejected(request, "scopes[0]");
  request = AppRequest();
  request.mutable_private_app()->mutable_scopes(0)->set_action(static_cast<crm::auth::v1::Action>(99));
  ExpectAppRejected(request, "scopes[0]");

  crm::auth::v1::PrivateApp change;
  *change.add_scopes() = MakeScope(static_cast<crm::auth::v1::Module>(7), ACTION_READ);
  ExpectAppUpdateRejected(change, {"scopes"}, "scopes[0]");
}

TEST_F(BadInputTest, ScopesDuplicatedRejected) {
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest();
  *request.mutable_private_app()->add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
  ExpectAppRejected(request, "scopes[1] repeats");
}

TEST_F(BadInputTest, ScopesUnspecifiedRejected) {
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest();
  request.mutable_private_app()->mutable_scopes(0)->set_module(crm::auth::v1::MODULE_UNSPECIFIED);
  ExpectAppRejected(request, "scopes[0]");
  request = AppRequest();
  request.mutable_private_app()->mutable_scopes(0)->set_action(crm::auth::v1::ACTION_UNSPECIFIED);
  ExpectAppRejected(request, "scopes[0]");
  request = AppRequest();
  request.mutable_private_app()->clear_scopes();
  ExpectAppRejected(request, "at least one scope");
}

// ---- Update masks ----

TEST_F(BadInputTest, AppUpdateMaskUnknownRejected) {
  crm::auth::v1::PrivateApp change;
  change.set_display_name("New name");
  ExpectAppUpdateRejected(change, {"display_name", "colour"}, "\"colour\" is not an updatable field");
}

TEST_F(BadInputTest, AppUpdateMaskOutputOnlyRejected) {
  crm::auth::v1::PrivateApp change;
  change.set_token_hint("crmpat_...abcd");
  for (const char* path : {"id", "organization_id", "token_hint", "logo_mime_type", "create_time"}) {
    SCOPED_TRACE(path);
    ExpectAppUpdateRejected(change, {path}, "output-only");
  }
}

TEST_F(BadInputTest, RecordUpdateMaskUnknownOrOutputOnlyRejected) {
  crm::data::v1::Lead lead = NewLead("Lovelace");
  for (const char* path : {"nickname", "id", "etag", "create_time", "converted_account_id"}) {
    SCOPED_TRACE(path);
    crm::data::v1::UpdateLeadRequest request;
    request.mutable_lead()->set_id(lead.id());
    request.mutable_lead()->set_last_name("Changed");
    request.mutable_update_mask()->add_paths("last_name");
    request.mutable_update_mask()->add_paths(path);
    crm::data::v1::UpdateLeadResponse response;
    grpc::Status status = stack_->crm().UpdateLead(WithBearer(token_).get(), request, &response);
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), path)) << status.error_message();
  }
  crm::data::v1::GetLeadRequest get;
  get.set_id(lead.id());
  crm::data::v1::GetLeadResponse after;
  ASSERT_TRUE(stack_->crm().GetLead(WithBearer(token_).get(), get, &after).ok());
  EXPECT_EQ(lead.SerializeAsString(), after.lead().SerializeAsString()) << "a rejected update changed the lead";
}

// ---- Page sizes and page tokens ----

TEST_F(BadInputTest, AppPageSizes) {
  for (int i = 0; i < 3; ++i) stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)}, absl::StrCat("App ", i));
  std::string reply;
  // page_size is field 1, an int32.
  grpc::Status negative = RawCall(stack_->generic_auth(), kListApps, admin_key_, VarintField(1, uint64_t{0} - 1));
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, negative.error_code()) << negative.error_message();
  EXPECT_TRUE(absl::StrContains(negative.error_message(), "page_size must not be negative"));

  // 2^31 does not fit an int32; protobuf keeps its low 32 bits, -2^31.
  grpc::Status too_big = RawCall(stack_->generic_auth(), kListApps, admin_key_, VarintField(1, uint64_t{1} << 31));
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, too_big.error_code()) << too_big.error_message();

  // 0 means the default page size, and 2^31 - 1 is capped at the maximum.
  for (uint64_t size : {uint64_t{0}, (uint64_t{1} << 31) - 1}) {
    SCOPED_TRACE(size);
    ASSERT_TRUE(RawCall(stack_->generic_auth(), kListApps, admin_key_, VarintField(1, size), &reply).ok());
    crm::auth::v1::ListPrivateAppsResponse response;
    ASSERT_TRUE(response.ParseFromString(reply));
    EXPECT_EQ(4, response.private_apps_size());  // Three apps and the fixture's.
  }
}

TEST_F(BadInputTest, RecordPageSizes) {
  for (int i = 0; i < 3; ++i) NewLead(absl::StrCat("Lead ", i));
  std::string reply;
  grpc::Status negative = RawCall(stack_->generic_crm(), kListLeads, token_, VarintField(1, uint64_t{0} - 1));
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, negative.error_code()) << negative.error_message();
  EXPECT_TRUE(absl::StrContains(negative.error_message(), "page_size must not be negative"));

  grpc::Status too_big = RawCall(stack_->generic_crm(), kListLeads, token_, VarintField(1, uint64_t{1} << 31));
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, too_big.error_code()) << too_big.error_message();

  for (uint64_t size : {uint64_t{0}, (uint64_t{1} << 31) - 1}) {
    SCOPED_TRACE(size);
    ASSERT_TRUE(RawCall(stack_->generic_crm(), kListLeads, token_, VarintField(1, size), &reply).ok());
    crm::data::v1::ListLeadsResponse response;
    ASSERT_TRUE(response.ParseFromString(reply));
    EXPECT_EQ(3, response.leads_size());
  }
}

TEST_F(BadInputTest, AppPageTokensRejected) {
  for (int i = 0; i < 2; ++i) stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)}, absl::StrCat("App ", i));
  crm::auth::v1::ListPrivateAppsRequest first;
  first.set_page_size(1);
  crm::auth::v1::ListPrivateAppsResponse page;
  ASSERT_TRUE(stack_->apps().ListPrivateApps(WithBearer(admin_key_).get(), first, &page).ok());
  ASSERT_FALSE(page.next_page_token().empty());

  // The same token presented by another organization's admin.
  std::string other_admin = stack_->NewOrganization("Other organization");
  stack_->NewApp(other_admin, {MakeScope(MODULE_LEAD, ACTION_READ)});
  const std::string& token = page.next_page_token();
  struct Case {
    std::string name;
    std::string admin_key;
    std::string page_token;
  };
  for (const Case& bad : {Case{"garbage", admin_key_, "not-a-page-token"},
                          Case{"truncated", admin_key_, token.substr(0, token.size() - 4)},
                          Case{"first character changed", admin_key_,
                               std::string(token[0] == 'A' ? "B" : "A") + token.substr(1)},
                          Case{"another organization", other_admin, token}}) {
    SCOPED_TRACE(bad.name);
    crm::auth::v1::ListPrivateAppsRequest request;
    request.set_page_size(1);
    request.set_page_token(bad.page_token);
    crm::auth::v1::ListPrivateAppsResponse response;
    grpc::Status status = stack_->apps().ListPrivateApps(WithBearer(bad.admin_key).get(), request, &response);
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "page_token")) << status.error_message();
    EXPECT_EQ(0, response.private_apps_size());
  }
}

TEST_F(BadInputTest, RecordPageTokensRejected) {
  for (int i = 0; i < 3; ++i) NewLead(absl::StrCat("Lead ", i));
  crm::data::v1::ListLeadsRequest first;
  first.set_page_size(1);
  crm::data::v1::ListLeadsResponse page;
  ASSERT_TRUE(stack_->crm().ListLeads(WithBearer(token_).get(), first, &page).ok());
  ASSERT_FALSE(page.next_page_token().empty());

  std::string other_admin = stack_->NewOrganization("Other organization");
  std::string other_token = stack_->NewApp(other_admin, AllScopes()).access_token();
  const std::string& token = page.next_page_token();
  struct Case {
    std::string name;
    std::string app_token;
    std::string page_token;
    std::string filter;
  };
  for (const Case& bad : {Case{"garbage", token_, "not-a-page-token", ""},
                          Case{"truncated", token_, token.substr(0, token.size() - 4), ""},
                          Case{"another organization", other_token, token, ""},
                          Case{"another filter", token_, token, "last_name = \"Lead 1\""}}) {
    SCOPED_TRACE(bad.name);
    crm::data::v1::ListLeadsRequest request;
    request.set_page_size(1);
    request.set_page_token(bad.page_token);
    request.set_filter(bad.filter);
    crm::data::v1::ListLeadsResponse response;
    grpc::Status status = stack_->crm().ListLeads(WithBearer(bad.app_token).get(), request, &response);
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "page_token")) << status.error_message();
    EXPECT_EQ(0, response.leads_size());
  }
}

// ---- Hostile and long text, stored and returned verbatim ----

TEST_F(BadInputTest, AppTextStoredVerbatim) {
  // Values of the maximum length in characters, built from kHostileText;
  // the description also has line breaks and tabs.
  std::string name = RepeatToLength(kHostileText, 100);
  std::string description = RepeatToLength(kHostileText + "\n\t\r\n", 1000);
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest(name);
  request.mutable_private_app()->set_description(description);
  crm::auth::v1::CreatePrivateAppResponse created;
  grpc::Status status = stack_->apps().CreatePrivateApp(WithBearer(admin_key_).get(), request, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();

  crm::auth::v1::GetPrivateAppRequest get;
  get.set_id(created.private_app().id());
  crm::auth::v1::GetPrivateAppResponse read;
  ASSERT_TRUE(stack_->apps().GetPrivateApp(WithBearer(admin_key_).get(), get, &read).ok());
  EXPECT_EQ(name, read.private_app().display_name());
  EXPECT_EQ(description, read.private_app().description());

  // The same through an update, with the emoji-only name of 100 characters.
  std::string emoji_name = RepeatToLength("\xF0\x9F\x98\x80", 100);
  crm::auth::v1::UpdatePrivateAppRequest update;
  update.mutable_private_app()->set_id(created.private_app().id());
  update.mutable_private_app()->set_display_name(emoji_name);
  update.mutable_update_mask()->add_paths("display_name");
  crm::auth::v1::UpdatePrivateAppResponse updated;
  ASSERT_TRUE(stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), update, &updated).ok());
  ASSERT_TRUE(stack_->apps().GetPrivateApp(WithBearer(admin_key_).get(), get, &read).ok());
  EXPECT_EQ(emoji_name, read.private_app().display_name());
  EXPECT_EQ(description, read.private_app().description());
}

// Every free-text field of every module: those without a format other than
// multi-line. Formatted fields (email, date, currency, record id) have their
// own rules and tests.
std::vector<const FieldDescriptor*> FreeTextFields(const google::protobuf::Descriptor* record) {
  std::vector<const FieldDescriptor*> fields;
  for (int i = 0; i < record->field_count(); ++i) {
    const FieldDescriptor* field = record->field(i);
    const crm::data::v1::FieldRules& rules = field->options().GetExtension(crm::data::v1::field_rules);
    if (field->type() != FieldDescriptor::TYPE_STRING || rules.output_only()) continue;
    if (rules.format() != crm::data::v1::FIELD_FORMAT_UNSPECIFIED &&
        rules.format() != crm::data::v1::FIELD_FORMAT_MULTILINE) {
      continue;
    }
    fields.push_back(field);
  }
  return fields;
}

TEST_F(BadInputTest, RecordTextStoredVerbatim) {
  const google::protobuf::ServiceDescriptor* service = crm::data::v1::CreateLeadRequest::descriptor()->file()->FindServiceByName("CrmService");

  // Records that required references point to.
  crm::data::v1::CreateAccountRequest account_request;
  account_request.mutable_account()->set_name("Referenced account");
  crm::data::v1::CreateAccountResponse account;
  ASSERT_TRUE(stack_->crm().CreateAccount(WithBearer(token_).get(), account_request, &account).ok());

  for (const std::string module : {"Lead", "Contact", "Account", "Opportunity", "Activity", "Message"}) {
    for (bool longest : {false, true}) {
      SCOPED_TRACE(absl::StrCat(module, longest ? " at each field's maximum length" : " with hostile text"));
      const google::protobuf::MethodDescriptor* create = service->FindMethodByName("Create" + module);
      const google::protobuf::MethodDescriptor* get = service->FindMethodByName("Get" + module);
      ASSERT_NE(nullptr, create);
      ASSERT_NE(nullptr, get);
      google::protobuf::MessageFactory* factory = google::protobuf::MessageFactory::generated_factory();
      std::unique_ptr<Message> request(factory->GetPrototype(create->input_type())->New());
      const FieldDescriptor* resource_field = create->input_type()->field(0);
      Message* record = request->GetReflection()->MutableMessage(request.get(), resource_field);
      const google::protobuf::Reflection* reflection = record->GetReflection();
      const google::protobuf::Descriptor* type = record->GetDescriptor();

      // Required enums get their first real value, required references the
      // account above.
      for (int i = 0; i < type->field_count(); ++i) {
        const FieldDescriptor* field = type->field(i);
        const crm::data::v1::FieldRules& rules = field->options().GetExtension(crm::data::v1::field_rules);
        if (!rules.required()) continue;
        if (field->type() == FieldDescriptor::TYPE_ENUM) reflection->SetEnumValue(record, field, 1);
        if (rules.format() == crm::data::v1::FIELD_FORMAT_RECORD_ID) {
          reflection->SetString(record, field, account.account().id());
        }
      }
      std::vector<const FieldDescriptor*> text_fields = FreeTextFields(type);
      ASSERT_FALSE(text_fields.empty());
      for (const FieldDescriptor* field : text_fields) {
        const crm::data::v1::FieldRules& rules = field->options().GetExtension(crm::data::v1::field_rules);
        bool multiline = rules.format() == crm::data::v1::FIELD_FORMAT_MULTILINE;
        std::string text = multiline ? kHostileText + "\nline two\r\n\tindented" : kHostileText;
        size_t length = longest ? rules.max_length() : std::min<size_t>(rules.max_length(), CountUtf8CodePoints(text));
        reflection->SetString(record, field, RepeatToLength(text, length));
      }

      std::string reply;
      grpc::Status status =
          RawCall(stack_->generic_crm(), absl::StrCat("/", service->full_name(), "/", create->name()), token_,
                  request->SerializeAsString(), &reply);
      ASSERT_TRUE(status.ok()) << status.error_message();
      std::unique_ptr<Message> created(factory->GetPrototype(create->output_type())->New());
      ASSERT_TRUE(created->ParseFromString(reply));
      const Message& created_record = created->GetReflection()->GetMessage(*created, create->output_type()->field(0));
      std::string id = created_record.GetReflection()->GetString(created_record, type->FindFieldByName("id"));

      std::unique_ptr<Message> get_request(factory->GetPrototype(get->input_type())->New());
      get_request->GetReflection()->SetString(get_request.get(), get->input_type()->FindFieldByName("id"), id);
      status = RawCall(stack_->generic_crm(), absl::StrCat("/", service->full_name(), "/", get->name()), token_,
                       get_request->SerializeAsString(), &reply);
      ASSERT_TRUE(status.ok()) << status.error_message();
      std::unique_ptr<Message> read(factory->GetPrototype(get->output_type())->New());
      ASSERT_TRUE(read->ParseFromString(reply));
      const Message& read_record = read->GetReflection()->GetMessage(*read, get->output_type()->field(0));
      for (const FieldDescriptor* field : text_fields) {
        EXPECT_EQ(reflection->GetString(*record, field), read_record.GetReflection()->GetString(read_record, field))
            << module << "." << field->name() << " changed on its way through the database";
      }
    }
  }
}

TEST_F(BadInputTest, FilterWithHostileTextMatchesExactly) {
  NewLead(kHostileText);
  NewLead("Plain");
  // The filter language escapes '"', '\' and a trailing '*' with '\'.
  std::string quoted;
  for (char c : kHostileText) {
    if (c == '"' || c == '\\' || c == '*') quoted.push_back('\\');
    quoted.push_back(c);
  }
  crm::data::v1::ListLeadsRequest request;
  request.set_filter(absl::StrCat("last_name = \"", quoted, "\""));
  crm::data::v1::ListLeadsResponse response;
  grpc::Status status = stack_->crm().ListLeads(WithBearer(token_).get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(1, response.leads_size());
  EXPECT_EQ(kHostileText, response.leads(0).last_name());
  EXPECT_EQ(2, LeadRows()) << "the hostile text changed the leads table";
}

// ---- Message size ----

TEST_F(BadInputTest, OversizedMessageRejectedByCrm) {
  int64_t before = LeadRows();
  // Over the CRM server's 4 MiB default maximum request size.
  crm::data::v1::CreateLeadRequest request;
  request.mutable_lead()->set_last_name("Big");
  request.mutable_lead()->set_source(std::string(5 * 1024 * 1024, 'x'));
  crm::data::v1::CreateLeadResponse response;
  grpc::Status status = stack_->crm().CreateLead(WithBearer(token_).get(), request, &response);
  EXPECT_EQ(grpc::StatusCode::RESOURCE_EXHAUSTED, status.error_code()) << status.error_message();
  EXPECT_EQ(before, LeadRows());

  // The server and the channel keep serving.
  NewLead("After the big one");
  EXPECT_EQ(before + 1, LeadRows());
}

TEST_F(BadInputTest, OversizedMessageRejectedByAuth) {
  int64_t before = AppRows();
  // Over the auth server's 1 MiB maximum request size.
  crm::auth::v1::CreatePrivateAppRequest request = AppRequest();
  request.mutable_private_app()->set_logo(std::string(2 * 1024 * 1024, 'x'));
  crm::auth::v1::CreatePrivateAppResponse response;
  grpc::Status status = stack_->apps().CreatePrivateApp(WithBearer(admin_key_).get(), request, &response);
  EXPECT_EQ(grpc::StatusCode::RESOURCE_EXHAUSTED, status.error_code()) << status.error_message();
  EXPECT_EQ(before, AppRows());

  stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ)});
  EXPECT_EQ(before + 1, AppRows());
}

// ---- Deadlines ----

TEST_F(BadInputTest, ExpiredDeadlineWritesNothing) {
  int64_t leads = LeadRows();
  int64_t apps = AppRows();
  auto expired = [] {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() - std::chrono::seconds(1));
    return context;
  };

  std::unique_ptr<grpc::ClientContext> crm_context = expired();
  crm_context->AddMetadata("authorization", "Bearer " + token_);
  crm::data::v1::CreateLeadRequest lead;
  lead.mutable_lead()->set_last_name("Too late");
  crm::data::v1::CreateLeadResponse lead_response;
  EXPECT_EQ(grpc::StatusCode::DEADLINE_EXCEEDED,
            stack_->crm().CreateLead(crm_context.get(), lead, &lead_response).error_code());

  std::unique_ptr<grpc::ClientContext> auth_context = expired();
  auth_context->AddMetadata("authorization", "Bearer " + admin_key_);
  crm::auth::v1::CreatePrivateAppResponse app_response;
  EXPECT_EQ(grpc::StatusCode::DEADLINE_EXCEEDED,
            stack_->apps().CreatePrivateApp(auth_context.get(), AppRequest("Too late"), &app_response).error_code());

  absl::SleepFor(absl::Milliseconds(200));  // Time for a write that should not happen.
  EXPECT_EQ(leads, LeadRows());
  EXPECT_EQ(apps, AppRows());
}

TEST_F(BadInputTest, DeadlineExpiringInDatabaseWritesNothing) {
  int64_t before = LeadRows();
  TableLock lock(stack_->data_database_options(), "leads");
  absl::Time start = absl::Now();
  crm::data::v1::CreateLeadRequest request;
  request.mutable_lead()->set_last_name("Blocked");
  crm::data::v1::CreateLeadResponse response;
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + token_);
  context.set_deadline(absl::ToChronoTime(start + absl::Milliseconds(500)));
  grpc::Status status = stack_->crm().CreateLead(&context, request, &response);
  EXPECT_EQ(grpc::StatusCode::DEADLINE_EXCEEDED, status.error_code()) << status.error_message();

  // The server gives the blocked insert up at the deadline, so releasing
  // the lock later must not let it commit.
  absl::SleepFor(absl::Milliseconds(300));
  lock.Release();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(before, LeadRows()) << "an insert whose caller saw DEADLINE_EXCEEDED was committed";
}

TEST_F(BadInputTest, MissingDeadlineGetsServerMaximum) {
  // A second stack whose CRM server gives calls without a deadline 1 second.
  StackOptions options;
  options.adjust_crm_options = [](crm::data::CrmServerOptions& crm) { crm.max_call_duration = absl::Seconds(1); };
  StartStack(options);

  // Without a lock, a call without a deadline is served normally.
  grpc::ClientContext free_context;
  free_context.AddMetadata("authorization", "Bearer " + token_);
  crm::data::v1::ListLeadsResponse list;
  ASSERT_TRUE(stack_->crm().ListLeads(&free_context, {}, &list).ok());

  int64_t before = LeadRows();
  TableLock lock(stack_->data_database_options(), "leads");
  grpc::ClientContext context;  // No deadline.
  context.AddMetadata("authorization", "Bearer " + token_);
  crm::data::v1::CreateLeadRequest request;
  request.mutable_lead()->set_last_name("Blocked");
  crm::data::v1::CreateLeadResponse response;
  absl::Time start = absl::Now();
  grpc::Status status = stack_->crm().CreateLead(&context, request, &response);
  absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(grpc::StatusCode::DEADLINE_EXCEEDED, status.error_code()) << status.error_message();
  EXPECT_GE(elapsed, absl::Milliseconds(900));
  EXPECT_LT(elapsed, absl::Seconds(5)) << "the call without a deadline waited for the lock";
  lock.Release();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(before, LeadRows());
}

}  // namespace
}  // namespace crm::testing
