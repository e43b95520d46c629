// Per-app IP allowlists end to end: stored and validated by the auth
// server, carried in CheckToken, cached and enforced by CRM servers over
// real loopback sockets, with the trusted proxy header and IPv6 loopback.
#include <arpa/inet.h>
#include <grpcpp/support/error_details.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_CONTACT;
using crm::auth::v1::MODULE_LEAD;

// The fields a client reads from a failed call's binary error details.
struct ErrorDetails {
  std::string reason;
  std::string domain;
  std::map<std::string, std::string> metadata;
  std::vector<std::string> violated_fields;
};

ErrorDetails ReadDetails(const grpc::Status& status) {
  ErrorDetails details;
  google::rpc::Status rpc_status;
  EXPECT_TRUE(grpc::ExtractErrorDetails(status, &rpc_status).ok()) << status.error_message();
  for (const google::protobuf::Any& detail : rpc_status.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::BadRequest bad_request;
    if (detail.UnpackTo(&info)) {
      details.reason = info.reason();
      details.domain = info.domain();
      details.metadata.insert(info.metadata().begin(), info.metadata().end());
    } else if (detail.UnpackTo(&bad_request)) {
      for (const auto& violation : bad_request.field_violations()) details.violated_fields.push_back(violation.field());
    }
  }
  return details;
}

std::vector<std::string> Strings(const google::protobuf::RepeatedPtrField<std::string>& values) {
  return {values.begin(), values.end()};
}

// Returns whether this host can listen on the IPv6 loopback address.
bool Ipv6LoopbackAvailable() {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 address = {};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  bool bound = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return bound;
}

class IpAllowlistTest : public ::testing::Test {
 protected:
  void StartStack(StackOptions options = {}) {
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    admin_key_ = stack_->NewOrganization();
  }

  // Starts a stack whose CRM server takes the client address from
  // X-Forwarded-For when the peer is in `trusted_proxy_cidrs`.
  void StartBehindProxy(const std::vector<std::string>& trusted_proxy_cidrs) {
    StackOptions options;
    options.adjust_crm_options = [trusted_proxy_cidrs](crm::data::CrmServerOptions& crm_options) {
      crm_options.client_ip_header = "x-forwarded-for";
      crm_options.trusted_proxy_cidrs = trusted_proxy_cidrs;
    };
    StartStack(options);
  }

  grpc::Status CreateApp(const std::vector<std::string>& ip_allowlist, crm::auth::v1::CreatePrivateAppResponse* created) {
    crm::auth::v1::CreatePrivateAppRequest request;
    request.mutable_private_app()->set_display_name("Allowlisted app");
    *request.mutable_private_app()->add_scopes() = MakeScope(MODULE_LEAD, ACTION_READ);
    for (const std::string& range : ip_allowlist) request.mutable_private_app()->add_ip_allowlist(range);
    return stack_->apps().CreatePrivateApp(WithBearer(admin_key_).get(), request, created);
  }

  // Creates an app with Lead Read and `ip_allowlist`, failing the test on
  // error.
  crm::auth::v1::CreatePrivateAppResponse NewApp(const std::vector<std::string>& ip_allowlist) {
    crm::auth::v1::CreatePrivateAppResponse created;
    grpc::Status status = CreateApp(ip_allowlist, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return created;
  }

  grpc::Status UpdateAllowlist(const std::string& app_id, const std::vector<std::string>& ip_allowlist,
                               crm::auth::v1::UpdatePrivateAppResponse* updated) {
    crm::auth::v1::UpdatePrivateAppRequest request;
    request.mutable_private_app()->set_id(app_id);
    for (const std::string& range : ip_allowlist) request.mutable_private_app()->add_ip_allowlist(range);
    request.mutable_update_mask()->add_paths("ip_allowlist");
    return stack_->apps().UpdatePrivateApp(WithBearer(admin_key_).get(), request, updated);
  }

  // Calls ListLeads on CRM server `server` with `token` and extra metadata.
  grpc::Status ListLeads(const std::string& token, size_t server = 0,
                         const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
    std::unique_ptr<grpc::ClientContext> context = WithBearer(token);
    for (const auto& [key, value] : metadata) context->AddMetadata(key, value);
    crm::data::v1::ListLeadsRequest request;
    crm::data::v1::ListLeadsResponse response;
    return stack_->crm(server).ListLeads(context.get(), request, &response);
  }

  grpc::Status GetTokenInfo(const std::string& token) {
    crm::data::v1::GetTokenInfoRequest request;
    crm::data::v1::GetTokenInfoResponse response;
    return stack_->crm().GetTokenInfo(WithBearer(token).get(), request, &response);
  }

  // Asserts that `status` is the IP allowlist rejection for `client_address`.
  void ExpectIpNotAllowed(const grpc::Status& status, const std::string& client_address) {
    ASSERT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
    ErrorDetails details = ReadDetails(status);
    EXPECT_EQ(details.reason, "IP_NOT_ALLOWED");
    EXPECT_EQ(details.domain, "data.crm.example");
    EXPECT_EQ(details.metadata["client_address"], client_address);
    EXPECT_NE(status.error_message().find(client_address), std::string::npos) << status.error_message();
  }

  crm::auth::v1::PrivateApp GetApp(const std::string& app_id) {
    crm::auth::v1::GetPrivateAppRequest request;
    request.set_id(app_id);
    crm::auth::v1::GetPrivateAppResponse response;
    grpc::Status status = stack_->apps().GetPrivateApp(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.private_app();
  }

  std::vector<crm::auth::v1::AuditEvent> AuditEvents(const std::string& app_id) {
    crm::auth::v1::ListAuditEventsRequest request;
    request.set_app_id(app_id);
    crm::auth::v1::ListAuditEventsResponse response;
    grpc::Status status = stack_->apps().ListAuditEvents(WithBearer(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.audit_events().begin(), response.audit_events().end()};
  }

  // Returns the reason stored with invalidation log entry `sequence`, or -1
  // when the entry does not exist.
  int InvalidationReason(int64_t sequence) {
    int reason = -1;
    absl::Status status = stack_->auth_pool().Run("reading the invalidation log", [&](sql::Connection& connection) {
      sql::PreparedStatement& select =
          PrepareCached(connection, "SELECT reason FROM invalidation_log WHERE sequence = ?");
      select.setInt64(1, sequence);
      std::unique_ptr<sql::ResultSet> rows(select.executeQuery());
      while (rows->next()) reason = rows->getInt(1);
      return absl::OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
    return reason;
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
};

TEST_F(IpAllowlistTest, LoopbackRangeAllowsCalls) {
  StartStack();
  crm::auth::v1::CreatePrivateAppResponse app = NewApp({"127.0.0.0/8"});
  EXPECT_EQ(Strings(app.private_app().ip_allowlist()), std::vector<std::string>{"127.0.0.0/8"});
  EXPECT_EQ(Strings(GetApp(app.private_app().id()).ip_allowlist()), std::vector<std::string>{"127.0.0.0/8"});

  grpc::Status listed = ListLeads(app.access_token());
  EXPECT_TRUE(listed.ok()) << listed.error_message();
  grpc::Status info = GetTokenInfo(app.access_token());
  EXPECT_TRUE(info.ok()) << info.error_message();
}

TEST_F(IpAllowlistTest, OutsideRangeDenied) {
  StartStack();
  crm::auth::v1::CreatePrivateAppResponse app = NewApp({"10.0.0.0/8", "2001:db8::/32"});
  ExpectIpNotAllowed(ListLeads(app.access_token()), "127.0.0.1");
  // GetTokenInfo is subject to the allowlist too.
  ExpectIpNotAllowed(GetTokenInfo(app.access_token()), "127.0.0.1");

  // The address check comes before the scope check: the app lacks Contact
  // Read, but the caller learns only that its address is not allowed.
  crm::data::v1::ListContactsRequest request;
  crm::data::v1::ListContactsResponse response;
  ExpectIpNotAllowed(stack_->crm().ListContacts(WithBearer(app.access_token()).get(), request, &response),
                     "127.0.0.1");

  // An app of the same organization without an allowlist is unaffected.
  crm::auth::v1::CreatePrivateAppResponse open_app = NewApp({});
  EXPECT_TRUE(open_app.private_app().ip_allowlist().empty());
  grpc::Status listed = ListLeads(open_app.access_token());
  EXPECT_TRUE(listed.ok()) << listed.error_message();
}

TEST_F(IpAllowlistTest, UpdateEnforcedOnEveryInstance) {
  StackOptions options;
  options.auth_servers = 2;
  options.crm_servers = 2;
  StartStack(options);
  ASSERT_TRUE(stack_->AwaitCurrent());
  crm::auth::v1::CreatePrivateAppResponse app = NewApp({"127.0.0.0/8"});
  const std::string& app_id = app.private_app().id();

  // Warm both caches and check that they serve hits, so the change below
  // must drop cached results rather than only affect new checks.
  for (size_t server = 0; server < 2; ++server) {
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(ListLeads(app.access_token(), server).ok()) << "server " << server;
    EXPECT_GT(stack_->ServerStatus(server).cache_hits(), 0) << "server " << server;
  }

  crm::auth::v1::UpdatePrivateAppResponse narrowed;
  grpc::Status status = UpdateAllowlist(app_id, {"10.0.0.0/8"}, &narrowed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_GT(narrowed.invalidation_sequence(), 0);
  EXPECT_EQ(InvalidationReason(narrowed.invalidation_sequence()),
            crm::auth::v1::INVALIDATION_REASON_IP_ALLOWLIST_CHANGED);
  EXPECT_EQ(Strings(narrowed.private_app().ip_allowlist()), std::vector<std::string>{"10.0.0.0/8"});
  stack_->AwaitApplied(narrowed.invalidation_sequence());
  for (size_t server = 0; server < 2; ++server) {
    for (int i = 0; i < 3; ++i) ExpectIpNotAllowed(ListLeads(app.access_token(), server), "127.0.0.1");
  }

  // An empty list allows every address again, on both instances.
  crm::auth::v1::UpdatePrivateAppResponse cleared;
  status = UpdateAllowlist(app_id, {}, &cleared);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_GT(cleared.invalidation_sequence(), narrowed.invalidation_sequence());
  stack_->AwaitApplied(cleared.invalidation_sequence());
  for (size_t server = 0; server < 2; ++server) {
    grpc::Status listed = ListLeads(app.access_token(), server);
    EXPECT_TRUE(listed.ok()) << "server " << server << ": " << listed.error_message();
  }

  // The same list again changes nothing and appends no entry.
  crm::auth::v1::UpdatePrivateAppResponse unchanged;
  ASSERT_TRUE(UpdateAllowlist(app_id, {}, &unchanged).ok());
  EXPECT_EQ(unchanged.invalidation_sequence(), 0);

  // The audit log contains both changes with their lists, newest first.
  std::vector<crm::auth::v1::AuditEvent> changes;
  for (const crm::auth::v1::AuditEvent& event : AuditEvents(app_id)) {
    if (event.action() == crm::auth::v1::AUDIT_ACTION_IP_ALLOWLIST_CHANGED) changes.push_back(event);
  }
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(Strings(changes[0].ip_allowlist_before()), std::vector<std::string>{"10.0.0.0/8"});
  EXPECT_TRUE(changes[0].ip_allowlist_after().empty());
  EXPECT_EQ(Strings(changes[1].ip_allowlist_before()), std::vector<std::string>{"127.0.0.0/8"});
  EXPECT_EQ(Strings(changes[1].ip_allowlist_after()), std::vector<std::string>{"10.0.0.0/8"});
  EXPECT_EQ(Strings(changes[1].changed_fields()), std::vector<std::string>{"ip_allowlist"});
}

TEST_F(IpAllowlistTest, AuditRecordsCreateAndDelete) {
  StartStack();
  crm::auth::v1::CreatePrivateAppResponse app = NewApp({"192.0.2.7", "2001:DB8::/32"});
  const std::string& app_id = app.private_app().id();
  // Bare addresses gain their prefix and IPv6 is lower case.
  std::vector<std::string> canonical = {"192.0.2.7/32", "2001:db8::/32"};
  EXPECT_EQ(Strings(app.private_app().ip_allowlist()), canonical);

  crm::auth::v1::DeletePrivateAppRequest remove;
  remove.set_id(app_id);
  crm::auth::v1::DeletePrivateAppResponse removed;
  ASSERT_TRUE(stack_->apps().DeletePrivateApp(WithBearer(admin_key_).get(), remove, &removed).ok());

  std::vector<crm::auth::v1::AuditEvent> events = AuditEvents(app_id);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].action(), crm::auth::v1::AUDIT_ACTION_APP_DELETED);
  EXPECT_EQ(Strings(events[0].ip_allowlist_before()), canonical);
  EXPECT_EQ(events[1].action(), crm::auth::v1::AUDIT_ACTION_APP_CREATED);
  EXPECT_EQ(Strings(events[1].ip_allowlist_after()), canonical);
  EXPECT_TRUE(events[1].ip_allowlist_before().empty());
}

TEST_F(IpAllowlistTest, InvalidRangesRejectedWithNothingStored) {
  StartStack();
  struct Case {
    std::vector<std::string> ip_allowlist;
    std::string field;
  };
  std::vector<std::string> too_many;
  for (int i = 0; i < 51; ++i) too_many.push_back(absl::StrCat("10.0.", i, ".0/24"));
  const Case cases[] = {
      {{"10.0.0.0/8", "10.1.2.3/8"}, "private_app.ip_allowlist[1]"},  // host bits set
      {{"300.0.0.0/8"}, "private_app.ip_allowlist[0]"},
      {{"10.0.0.0/33"}, "private_app.ip_allowlist[0]"},
      {{"2001:db8::/129"}, "private_app.ip_allowlist[0]"},
      {{"10.0.0.0/8", "192.0.2.0/24", ""}, "private_app.ip_allowlist[2]"},
      {{"example.com"}, "private_app.ip_allowlist[0]"},
      {{"::ffff:10.0.0.0/104"}, "private_app.ip_allowlist[0]"},
      {{"10.0.0.0/8", "10.0.0.0/8"}, "private_app.ip_allowlist[1]"},     // duplicate
      {{"2001:db8::/32", "2001:DB8::/32"}, "private_app.ip_allowlist[1]"},  // duplicate after canonical form
      {too_many, "private_app.ip_allowlist"},
  };
  for (const Case& test_case : cases) {
    crm::auth::v1::CreatePrivateAppResponse created;
    grpc::Status status = CreateApp(test_case.ip_allowlist, &created);
    ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << test_case.field;
    ErrorDetails details = ReadDetails(status);
    EXPECT_EQ(details.reason, "VALIDATION_FAILED") << status.error_message();
    EXPECT_EQ(details.violated_fields, std::vector<std::string>{test_case.field}) << status.error_message();
  }

  // Nothing was stored: no app and no audit event.
  crm::auth::v1::ListPrivateAppsRequest list;
  crm::auth::v1::ListPrivateAppsResponse listed;
  ASSERT_TRUE(stack_->apps().ListPrivateApps(WithBearer(admin_key_).get(), list, &listed).ok());
  EXPECT_EQ(listed.private_apps_size(), 0);
  EXPECT_TRUE(AuditEvents("").empty());

  // The limit itself is accepted.
  too_many.pop_back();
  crm::auth::v1::CreatePrivateAppResponse app = NewApp(too_many);
  EXPECT_EQ(app.private_app().ip_allowlist_size(), 50);

  // An invalid update leaves the stored list, and the log, as they were.
  crm::auth::v1::UpdatePrivateAppResponse updated;
  grpc::Status status = UpdateAllowlist(app.private_app().id(), {"10.0.0.1/8"}, &updated);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("\"10.0.0.0/8\""), std::string::npos) << status.error_message();
  EXPECT_EQ(ReadDetails(status).violated_fields, std::vector<std::string>{"private_app.ip_allowlist[0]"});
  EXPECT_EQ(Strings(GetApp(app.private_app().id()).ip_allowlist()), too_many);
  EXPECT_EQ(AuditEvents(app.private_app().id()).size(), 1u);
}

TEST_F(IpAllowlistTest, Ipv6Loopback) {
  if (!Ipv6LoopbackAvailable()) GTEST_SKIP() << "this host cannot listen on ::1, so there is no IPv6 peer to test";
  StackOptions options;
  options.crm_listen_host = "[::1]";
  StartStack(options);

  crm::auth::v1::CreatePrivateAppResponse ipv6_app = NewApp({"::1"});
  grpc::Status listed = ListLeads(ipv6_app.access_token());
  EXPECT_TRUE(listed.ok()) << listed.error_message();

  // An IPv4 range never matches an IPv6 peer, nor another IPv6 range.
  ExpectIpNotAllowed(ListLeads(NewApp({"127.0.0.0/8"}).access_token()), "::1");
  ExpectIpNotAllowed(ListLeads(NewApp({"2001:db8::/32"}).access_token()), "::1");
}

TEST_F(IpAllowlistTest, ProxyHeaderHonouredFromTrustedPeer) {
  StartBehindProxy({"127.0.0.0/8"});
  crm::auth::v1::CreatePrivateAppResponse app = NewApp({"10.0.0.0/8"});

  grpc::Status forwarded = ListLeads(app.access_token(), 0, {{"x-forwarded-for", "10.1.2.3"}});
  EXPECT_TRUE(forwarded.ok()) << forwarded.error_message();

  // The right-most untrusted address counts: a forged address to its left
  // does not.
  forwarded = ListLeads(app.access_token(), 0, {{"x-forwarded-for", "192.0.2.1, 10.1.2.3"}});
  EXPECT_TRUE(forwarded.ok()) << forwarded.error_message();
  ExpectIpNotAllowed(ListLeads(app.access_token(), 0, {{"x-forwarded-for", "10.1.2.3, 192.0.2.1"}}), "192.0.2.1");

  // Without the header the trusted proxy itself is the client.
  ExpectIpNotAllowed(ListLeads(app.access_token()), "127.0.0.1");

  // A header the server cannot read fails closed.
  grpc::Status garbage = ListLeads(app.access_token(), 0, {{"x-forwarded-for", "not-an-address"}});
  EXPECT_EQ(garbage.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ReadDetails(garbage).reason, "IP_NOT_ALLOWED");
}

TEST_F(IpAllowlistTest, ProxyClientShownAsLastUsedPeer) {
  StartBehindProxy({"127.0.0.0/8"});
  crm::auth::v1::CreatePrivateAppResponse app = NewApp({});
  grpc::Status forwarded = ListLeads(app.access_token(), 0, {{"x-forwarded-for", "203.0.113.7"}});
  ASSERT_TRUE(forwarded.ok()) << forwarded.error_message();
  ASSERT_TRUE(stack_->crm_server().FlushTokenUsage().ok());
  EXPECT_EQ(GetApp(app.private_app().id()).last_used_peer(), "203.0.113.7");

  // A header that does not parse leaves the proxy's own address on record.
  grpc::Status garbage = ListLeads(app.access_token(), 0, {{"x-forwarded-for", "not-an-address"}});
  ASSERT_TRUE(garbage.ok()) << garbage.error_message();
  ASSERT_TRUE(stack_->crm_server().FlushTokenUsage().ok());
  EXPECT_EQ(GetApp(app.private_app().id()).last_used_peer(), "127.0.0.1");

  // The API call log records the same addresses, also for a call that the
  // allowlist rejects.
  crm::auth::v1::CreatePrivateAppResponse listed_app = NewApp({"10.0.0.0/8"});
  ExpectIpNotAllowed(ListLeads(listed_app.access_token(), 0, {{"x-forwarded-for", "198.51.100.4"}}),
                     "198.51.100.4");
  ASSERT_TRUE(stack_->crm_server().FlushApiCalls().ok());
  std::vector<std::string> peers;
  for (const std::string& app_id : {app.private_app().id(), listed_app.private_app().id()}) {
    crm::auth::v1::ListApiCallsRequest request;
    request.set_app_id(app_id);
    crm::auth::v1::ListApiCallsResponse response;
    grpc::Status status = stack_->apps().ListApiCalls(WithBearer(admin_key_).get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const crm::auth::v1::ApiCall& call : response.api_calls()) peers.push_back(call.peer_address());
  }
  // Newest first within each app.
  EXPECT_EQ(peers, (std::vector<std::string>{"127.0.0.1", "203.0.113.7", "198.51.100.4"}));
}

TEST_F(IpAllowlistTest, ProxyHeaderIgnoredFromUntrustedPeer) {
  StartBehindProxy({"192.0.2.0/24"});
  crm::auth::v1::CreatePrivateAppResponse app = NewApp({"10.0.0.0/8"});
  ExpectIpNotAllowed(ListLeads(app.access_token(), 0, {{"x-forwarded-for", "10.1.2.3"}}), "127.0.0.1");

  crm::auth::v1::CreatePrivateAppResponse loopback_app = NewApp({"127.0.0.1"});
  grpc::Status listed = ListLeads(loopback_app.access_token(), 0, {{"x-forwarded-for", "192.0.2.9"}});
  EXPECT_TRUE(listed.ok()) << listed.error_message();
}

TEST(CrmServerStart, InvalidProxySettingsRejected) {
  absl::StatusOr<std::unique_ptr<TestStack>> started = TestStack::Start([] {
    StackOptions options;
    options.crm_servers = 0;
    return options;
  }());
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<TestStack> stack = *std::move(started);

  struct Case {
    std::string header;
    std::vector<std::string> trusted;
  };
  const Case cases[] = {
      {"x-forwarded-for", {}},
      {"", {"10.0.0.0/8"}},
      {"x-forwarded-for", {"10.0.0.1/8"}},
      {"X-Forwarded-For", {"10.0.0.0/8"}},
      {"x-forwarded-for-bin", {"10.0.0.0/8"}},
  };
  for (const Case& test_case : cases) {
    crm::data::CrmServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.page_token_key = stack->secrets().page_token_key;
    options.client_ip_header = test_case.header;
    options.trusted_proxy_cidrs = test_case.trusted;
    absl::StatusOr<std::unique_ptr<crm::data::CrmServer>> server =
        crm::data::CrmServer::Start(options, &stack->data_pool());
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << "header \"" << test_case.header << "\"";
  }
}

}  // namespace
}  // namespace crm::testing
