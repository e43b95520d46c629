// The API call log end to end. A CRM server records the calls made with an
// app's token and reports them to the auth server, which stores them in the
// auth schema. PrivateAppService.ListApiCalls lists them with filters and
// page tokens, the purge drops old rows, and shutdown drains the buffer.
// Also crmctl export-api-calls, run as a child process against the stack.
#include <grpcpp/support/error_details.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cppconn/connection.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <google/protobuf/util/time_util.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "common/mysql_pool.h"
#include "crm/auth/v1/token_service.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "services/crm/api_call_log.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_CREATE;
using crm::auth::v1::ACTION_READ;
using crm::auth::v1::ApiCall;
using crm::auth::v1::ListApiCallsRequest;
using crm::auth::v1::ListApiCallsResponse;
using crm::auth::v1::MODULE_LEAD;
using google::protobuf::util::TimeUtil;

constexpr char kGetLead[] = "/crm.data.v1.CrmService/GetLead";
constexpr char kCreateLead[] = "/crm.data.v1.CrmService/CreateLead";
constexpr char kListContacts[] = "/crm.data.v1.CrmService/ListContacts";
constexpr char kGetTokenInfo[] = "/crm.data.v1.CrmService/GetTokenInfo";

// Returns the field of the one BadRequest violation of `status`, or "(none)".
std::string ViolationField(const grpc::Status& status) {
  google::rpc::Status details;
  if (!grpc::ExtractErrorDetails(status, &details).ok()) return "(none)";
  for (const google::protobuf::Any& detail : details.details()) {
    google::rpc::BadRequest bad_request;
    if (detail.UnpackTo(&bad_request) && bad_request.field_violations_size() == 1) {
      return bad_request.field_violations(0).field();
    }
  }
  return "(none)";
}

int64_t Micros(const google::protobuf::Timestamp& time) { return TimeUtil::TimestampToMicroseconds(time); }

// Runs `sql` on `pool` and returns the first column of its first row.
int64_t QueryInt(MysqlPool& pool, const std::string& sql) {
  int64_t value = -1;
  absl::Status status = pool.Run("test query", [&](sql::Connection& connection) {
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    std::unique_ptr<sql::ResultSet> rows(statement->executeQuery(sql));
    if (rows->next()) value = rows->getInt64(1);
    while (rows->next()) {
    }
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
  return value;
}

void Execute(MysqlPool& pool, const std::string& sql) {
  absl::Status status = pool.Run("test statement", [&](sql::Connection& connection) {
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    statement->execute(sql);
    return absl::OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;
}

// Inserts `count` calls of `app_id` received `age` ago, straight into the
// auth schema.
void InsertCalls(MysqlPool& pool, const std::string& organization_id, const std::string& app_id, int count,
                 absl::Duration age) {
  Execute(pool, absl::StrCat("INSERT INTO api_calls (organization_id, app_id, call_time, method, code,"
                             " latency_micros, peer_address) SELECT ",
                             organization_id, ", ", app_id, ", UTC_TIMESTAMP(6) - INTERVAL ",
                             absl::ToInt64Seconds(age), " SECOND, '", kGetLead, "', 0, 1000, '192.0.2.1'"
                             " FROM seq_1_to_", count));
}

class ApiCallLogTest : public ::testing::Test {
 protected:
  void SetUp() override { StartStack({}); }

  // Starts the stack with reports sent only by FlushApiCalls() and at
  // shutdown, so each test decides when calls reach the auth server.
  void StartStack(StackOptions options) {
    auto adjust_crm = options.adjust_crm_options;
    options.adjust_crm_options = [adjust_crm](crm::data::CrmServerOptions& crm_options) {
      crm_options.api_call_log_flush_interval = absl::ZeroDuration();
      if (adjust_crm) adjust_crm(crm_options);
    };
    absl::StatusOr<std::unique_ptr<TestStack>> started = TestStack::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    stack_ = *std::move(started);
    admin_key_ = stack_->NewOrganization();
    crm::auth::v1::CreatePrivateAppResponse app =
        stack_->NewApp(admin_key_, {MakeScope(MODULE_LEAD, ACTION_READ), MakeScope(MODULE_LEAD, ACTION_CREATE)});
    app_id_ = app.private_app().id();
    organization_id_ = app.private_app().organization_id();
    token_ = app.access_token();
  }

  void Flush() {
    absl::Status flushed = stack_->crm_server().FlushApiCalls();
    ASSERT_TRUE(flushed.ok()) << flushed;
  }

  grpc::Status GetLead(const std::string& id) {
    crm::data::v1::GetLeadRequest request;
    request.set_id(id);
    crm::data::v1::GetLeadResponse response;
    return stack_->crm().GetLead(WithBearer(token_).get(), request, &response);
  }

  grpc::Status GetTokenInfo(const std::string& token) {
    crm::data::v1::GetTokenInfoResponse response;
    return stack_->crm().GetTokenInfo(WithBearer(token).get(), {}, &response);
  }

  grpc::Status List(const ListApiCallsRequest& request, ListApiCallsResponse* response,
                    const std::string& admin_key = "") {
    return stack_->apps().ListApiCalls(WithBearer(admin_key.empty() ? admin_key_ : admin_key).get(), request,
                                       response);
  }

  ListApiCallsRequest ForApp() {
    ListApiCallsRequest request;
    request.set_app_id(app_id_);
    return request;
  }

  // Lists every call `request` matches, following next_page_token.
  std::vector<ApiCall> ListAll(ListApiCallsRequest request, int* pages = nullptr) {
    std::vector<ApiCall> calls;
    int page_count = 0;
    do {
      ListApiCallsResponse response;
      grpc::Status status = List(request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      calls.insert(calls.end(), response.api_calls().begin(), response.api_calls().end());
      request.set_page_token(response.next_page_token());
      ++page_count;
    } while (!request.page_token().empty() && page_count < 1000);
    if (pages != nullptr) *pages = page_count;
    return calls;
  }

  std::unique_ptr<TestStack> stack_;
  std::string admin_key_;
  std::string organization_id_;
  std::string app_id_;
  std::string token_;
};

TEST_F(ApiCallLogTest, RecordsEachOutcomeWithMethodCodeAndPeer) {
  absl::Time before = absl::Now();
  crm::data::v1::CreateLeadRequest create;
  create.mutable_lead()->set_last_name("Lovelace");
  crm::data::v1::CreateLeadResponse created;
  ASSERT_TRUE(stack_->crm().CreateLead(WithBearer(token_).get(), create, &created).ok());
  ASSERT_TRUE(GetLead(created.lead().id()).ok());
  ASSERT_EQ(grpc::StatusCode::NOT_FOUND, GetLead("999999999").error_code());
  crm::data::v1::ListContactsResponse contacts;
  ASSERT_EQ(grpc::StatusCode::PERMISSION_DENIED,
            stack_->crm().ListContacts(WithBearer(token_).get(), {}, &contacts).error_code());
  crm::data::v1::CreateLeadResponse invalid;
  ASSERT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            stack_->crm().CreateLead(WithBearer(token_).get(), {}, &invalid).error_code());
  // A token that resolves to no app is rejected before any app is known,
  // so it is not recorded anywhere.
  std::string other_key = stack_->NewOrganization("Other");
  std::string other_token = stack_->NewApp(other_key, AllScopes()).access_token();
  std::string broken_token = other_token.substr(0, other_token.size() - 1) + (other_token.back() == 'A' ? "B" : "A");
  ASSERT_EQ(grpc::StatusCode::UNAUTHENTICATED, GetTokenInfo(broken_token).error_code());
  ASSERT_EQ(grpc::StatusCode::UNAUTHENTICATED, GetTokenInfo("").error_code());
  absl::Time after = absl::Now();
  Flush();

  std::vector<ApiCall> calls = ListAll(ForApp());
  struct Expected {
    const char* method;
    const char* code;
  };
  // Newest first.
  const std::vector<Expected> expected = {{kCreateLead, "INVALID_ARGUMENT"},
                                          {kListContacts, "PERMISSION_DENIED"},
                                          {kGetLead, "NOT_FOUND"},
                                          {kGetLead, "OK"},
                                          {kCreateLead, "OK"}};
  ASSERT_EQ(expected.size(), calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("call ", i));
    EXPECT_EQ(expected[i].method, calls[i].method());
    EXPECT_EQ(expected[i].code, calls[i].code());
    EXPECT_EQ(app_id_, calls[i].app_id());
    EXPECT_EQ("127.0.0.1", calls[i].peer_address());
    EXPECT_GE(Micros(calls[i].call_time()), absl::ToUnixMicros(before));
    EXPECT_LE(Micros(calls[i].call_time()), absl::ToUnixMicros(after));
    EXPECT_GE(TimeUtil::DurationToMicroseconds(calls[i].latency()), 0);
    if (i > 0) {
      EXPECT_LE(Micros(calls[i].call_time()), Micros(calls[i - 1].call_time()));
    }
  }

  // The other organization's app made no accepted call.
  ListApiCallsRequest other_request;
  other_request.set_app_id(stack_->NewApp(other_key, AllScopes()).private_app().id());
  ListApiCallsResponse other_calls;
  ASSERT_TRUE(List(other_request, &other_calls, other_key).ok());
  EXPECT_EQ(0, other_calls.api_calls_size());
  EXPECT_EQ(5, QueryInt(stack_->auth_pool(), "SELECT COUNT(*) FROM api_calls"));
}

TEST_F(ApiCallLogTest, FiltersByMethodCodeAndTimeRange) {
  ASSERT_TRUE(GetTokenInfo(token_).ok());
  ASSERT_EQ(grpc::StatusCode::NOT_FOUND, GetLead("999999991").error_code());
  ASSERT_TRUE(GetTokenInfo(token_).ok());
  ASSERT_EQ(grpc::StatusCode::NOT_FOUND, GetLead("999999992").error_code());
  ASSERT_TRUE(GetTokenInfo(token_).ok());
  Flush();
  std::vector<ApiCall> all = ListAll(ForApp());
  ASSERT_EQ(5u, all.size());

  for (const std::string& method : {std::string("GetLead"), std::string(kGetLead)}) {
    ListApiCallsRequest request = ForApp();
    request.set_method(method);
    std::vector<ApiCall> calls = ListAll(request);
    ASSERT_EQ(2u, calls.size()) << method;
    for (const ApiCall& call : calls) EXPECT_EQ(kGetLead, call.method());
  }

  ListApiCallsRequest by_code = ForApp();
  by_code.set_code("OK");
  std::vector<ApiCall> ok_calls = ListAll(by_code);
  ASSERT_EQ(3u, ok_calls.size());
  for (const ApiCall& call : ok_calls) {
    EXPECT_EQ("OK", call.code());
    EXPECT_EQ(kGetTokenInfo, call.method());
  }

  ListApiCallsRequest both = ForApp();
  both.set_method("GetTokenInfo");
  both.set_code("NOT_FOUND");
  EXPECT_TRUE(ListAll(both).empty());

  // [start, end): all[2] is the middle call, the second GetTokenInfo.
  ListApiCallsRequest from_middle = ForApp();
  *from_middle.mutable_start_time() = all[2].call_time();
  std::vector<ApiCall> newer = ListAll(from_middle);
  ASSERT_EQ(3u, newer.size());
  EXPECT_EQ(Micros(all[2].call_time()), Micros(newer.back().call_time()));

  ListApiCallsRequest before_middle = ForApp();
  *before_middle.mutable_end_time() = all[2].call_time();
  std::vector<ApiCall> older = ListAll(before_middle);
  ASSERT_EQ(2u, older.size());
  EXPECT_EQ(Micros(all[3].call_time()), Micros(older.front().call_time()));

  ListApiCallsRequest window = ForApp();
  *window.mutable_start_time() = all[3].call_time();
  *window.mutable_end_time() = all[1].call_time();
  std::vector<ApiCall> inside = ListAll(window);
  ASSERT_EQ(2u, inside.size());
  EXPECT_EQ(Micros(all[2].call_time()), Micros(inside[0].call_time()));
  EXPECT_EQ(Micros(all[3].call_time()), Micros(inside[1].call_time()));
}

TEST_F(ApiCallLogTest, PagesCoverEveryCallOnce) {
  constexpr int kCalls = 23;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(GetTokenInfo(token_).ok());
  // Calls with equal times, stored directly, test the tie-break on id.
  Execute(stack_->auth_pool(),
          absl::StrCat("INSERT INTO api_calls (organization_id, app_id, call_time, method, code, latency_micros,"
                       " peer_address) SELECT ", organization_id_, ", ", app_id_,
                       ", UTC_TIMESTAMP(6) - INTERVAL 1 HOUR, '", kGetLead, "', seq, 5, '' FROM seq_1_to_9"));
  Flush();

  ListApiCallsRequest one_page = ForApp();
  one_page.set_page_size(1000);
  std::vector<ApiCall> expected = ListAll(one_page);
  ASSERT_EQ(static_cast<size_t>(kCalls + 9), expected.size());

  ListApiCallsRequest paged = ForApp();
  paged.set_page_size(4);
  int pages = 0;
  std::vector<ApiCall> actual = ListAll(paged, &pages);
  EXPECT_EQ((kCalls + 9 + 3) / 4, pages);
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(expected[i].SerializeAsString(), actual[i].SerializeAsString()) << "position " << i;
  }
  // The nine stored calls of equal time keep their codes 9 down to 1,
  // newest (highest id) first.
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(StatusCodeName(static_cast<grpc::StatusCode>(9 - i)), actual[kCalls + i].code()) << i;
  }

  ListApiCallsRequest default_size = ForApp();
  ListApiCallsResponse first;
  ASSERT_TRUE(List(default_size, &first).ok());
  EXPECT_EQ(kCalls + 9, first.api_calls_size()) << "fewer calls than the default page size of 100";
  EXPECT_TRUE(first.next_page_token().empty());
}

TEST_F(ApiCallLogTest, PageTokenIsBoundToOrganizationAndFilters) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(GetTokenInfo(token_).ok());
  Flush();
  ListApiCallsRequest request = ForApp();
  request.set_page_size(1);
  ListApiCallsResponse first;
  ASSERT_TRUE(List(request, &first).ok());
  ASSERT_FALSE(first.next_page_token().empty());

  ListApiCallsRequest other_filter = ForApp();
  other_filter.set_page_size(1);
  other_filter.set_code("OK");
  other_filter.set_page_token(first.next_page_token());
  ListApiCallsResponse response;
  grpc::Status status = List(other_filter, &response);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code());
  EXPECT_EQ("page_token", ViolationField(status));

  // Another organization cannot continue the listing with its own app.
  std::string other_key = stack_->NewOrganization("Other");
  ListApiCallsRequest other_organization;
  other_organization.set_app_id(stack_->NewApp(other_key, AllScopes()).private_app().id());
  other_organization.set_page_size(1);
  other_organization.set_page_token(first.next_page_token());
  status = List(other_organization, &response, other_key);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code());
  EXPECT_EQ("page_token", ViolationField(status));

  ListApiCallsRequest tampered = request;
  std::string token = first.next_page_token();
  token[token.size() / 2] = token[token.size() / 2] == 'A' ? 'B' : 'A';
  tampered.set_page_token(token);
  status = List(tampered, &response);
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code());
  EXPECT_EQ("page_token", ViolationField(status));
}

TEST_F(ApiCallLogTest, OtherOrganizationGetsNotFound) {
  ASSERT_TRUE(GetTokenInfo(token_).ok());
  Flush();
  std::string other_key = stack_->NewOrganization("Other");
  ListApiCallsResponse response;
  grpc::Status status = List(ForApp(), &response, other_key);
  EXPECT_EQ(grpc::StatusCode::NOT_FOUND, status.error_code());
  EXPECT_EQ(0, response.api_calls_size());

  ListApiCallsRequest unknown;
  unknown.set_app_id("999999999");
  EXPECT_EQ(grpc::StatusCode::NOT_FOUND, List(unknown, &response).error_code());

  crm::auth::v1::DeletePrivateAppRequest remove;
  remove.set_id(app_id_);
  crm::auth::v1::DeletePrivateAppResponse removed;
  ASSERT_TRUE(stack_->apps().DeletePrivateApp(WithBearer(admin_key_).get(), remove, &removed).ok());
  EXPECT_EQ(grpc::StatusCode::NOT_FOUND, List(ForApp(), &response).error_code());
}

TEST_F(ApiCallLogTest, InvalidFiltersNameTheField) {
  struct Case {
    const char* name;
    std::function<void(ListApiCallsRequest&)> change;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"missing app", [](ListApiCallsRequest& r) { r.clear_app_id(); }, "app_id"},
      {"bad app id", [](ListApiCallsRequest& r) { r.set_app_id("12x"); }, "app_id"},
      {"unknown method", [](ListApiCallsRequest& r) { r.set_method("GetLeads"); }, "method"},
      {"other service", [](ListApiCallsRequest& r) { r.set_method("/crm.auth.v1.PrivateAppService/GetPrivateApp"); },
       "method"},
      {"unknown code", [](ListApiCallsRequest& r) { r.set_code("NOPE"); }, "code"},
      {"lower-case code", [](ListApiCallsRequest& r) { r.set_code("ok"); }, "code"},
      {"end before start",
       [](ListApiCallsRequest& r) {
         *r.mutable_start_time() = TimeUtil::SecondsToTimestamp(2000);
         *r.mutable_end_time() = TimeUtil::SecondsToTimestamp(1000);
       },
       "end_time"},
      {"empty range",
       [](ListApiCallsRequest& r) {
         *r.mutable_start_time() = TimeUtil::SecondsToTimestamp(1000);
         *r.mutable_end_time() = TimeUtil::SecondsToTimestamp(1000);
       },
       "end_time"},
      {"invalid start", [](ListApiCallsRequest& r) { r.mutable_start_time()->set_nanos(-1); }, "start_time"},
      {"negative page size", [](ListApiCallsRequest& r) { r.set_page_size(-1); }, "page_size"},
      {"page size above 1000", [](ListApiCallsRequest& r) { r.set_page_size(1001); }, "page_size"},
      {"garbage page token", [](ListApiCallsRequest& r) { r.set_page_token("not a token"); }, "page_token"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    ListApiCallsRequest request = ForApp();
    test_case.change(request);
    ListApiCallsResponse response;
    grpc::Status status = List(request, &response);
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT, status.error_code()) << status.error_message();
    EXPECT_EQ(test_case.field, ViolationField(status));
  }
  ListApiCallsRequest largest = ForApp();
  largest.set_page_size(1000);
  ListApiCallsResponse response;
  EXPECT_TRUE(List(largest, &response).ok());
}

TEST_F(ApiCallLogTest, ReportRejectsInvalidCalls) {
  auto token_service = crm::auth::v1::TokenService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", stack_->auth_internal_port()), grpc::InsecureChannelCredentials()));
  auto valid = [&] {
    crm::auth::v1::ApiCallRecord call;
    call.set_organization_id(organization_id_);
    call.set_app_id(app_id_);
    call.set_method(kGetLead);
    call.set_code(5);
    *call.mutable_call_time() = TimeUtil::GetCurrentTime();
    *call.mutable_latency() = TimeUtil::MicrosecondsToDuration(1500);
    call.set_peer_address("198.51.100.7");
    return call;
  };
  struct Case {
    const char* name;
    std::function<void(crm::auth::v1::ApiCallRecord&)> change;
  };
  const std::vector<Case> cases = {
      {"bad app id", [](auto& c) { c.set_app_id("x"); }},
      {"bad organization id", [](auto& c) { c.set_organization_id("0"); }},
      {"empty method", [](auto& c) { c.clear_method(); }},
      {"long method", [](auto& c) { c.set_method(std::string(129, 'm')); }},
      {"code above 16", [](auto& c) { c.set_code(17); }},
      {"negative code", [](auto& c) { c.set_code(-1); }},
      {"no time", [](auto& c) { c.clear_call_time(); }},
      {"no latency", [](auto& c) { c.clear_latency(); }},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    crm::auth::v1::ReportApiCallsRequest request;
    *request.add_calls() = valid();
    test_case.change(*request.add_calls());
    grpc::ClientContext context;
    crm::auth::v1::ReportApiCallsResponse response;
    EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
              token_service->ReportApiCalls(&context, request, &response).error_code());
  }
  // Nothing of a rejected batch is stored, not even its valid call.
  EXPECT_EQ(0, QueryInt(stack_->auth_pool(), "SELECT COUNT(*) FROM api_calls"));

  crm::auth::v1::ReportApiCallsRequest too_many;
  for (int i = 0; i < 1001; ++i) *too_many.add_calls() = valid();
  grpc::ClientContext context;
  crm::auth::v1::ReportApiCallsResponse response;
  EXPECT_EQ(grpc::StatusCode::INVALID_ARGUMENT,
            token_service->ReportApiCalls(&context, too_many, &response).error_code());

  // A full batch of 1,000 is stored whole, through every statement size.
  too_many.mutable_calls()->RemoveLast();
  grpc::ClientContext full_context;
  ASSERT_TRUE(token_service->ReportApiCalls(&full_context, too_many, &response).ok());
  EXPECT_EQ(1000, QueryInt(stack_->auth_pool(), "SELECT COUNT(*) FROM api_calls"));
  ListApiCallsRequest request = ForApp();
  request.set_page_size(1);
  ListApiCallsResponse listed;
  ASSERT_TRUE(List(request, &listed).ok());
  ASSERT_EQ(1, listed.api_calls_size());
  EXPECT_EQ("NOT_FOUND", listed.api_calls(0).code());
  EXPECT_EQ("198.51.100.7", listed.api_calls(0).peer_address());
  EXPECT_EQ(1500, TimeUtil::DurationToMicroseconds(listed.api_calls(0).latency()));
}

TEST_F(ApiCallLogTest, PurgeRemovesOnlyExpiredCalls) {
  ASSERT_TRUE(GetTokenInfo(token_).ok());
  Flush();
  // 2,500 calls beyond the 30-day retention, so the purge needs three
  // batches, and some inside it.
  InsertCalls(stack_->auth_pool(), organization_id_, app_id_, 2500, absl::Hours(24 * 31));
  InsertCalls(stack_->auth_pool(), organization_id_, app_id_, 7, absl::Hours(24 * 29));

  absl::StatusOr<int> purged = stack_->auth_server().PurgeApiCalls();
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(2500, *purged);
  EXPECT_EQ(8u, ListAll(ForApp()).size());

  absl::StatusOr<int> again = stack_->auth_server().PurgeApiCalls();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(0, *again);
}

TEST(ApiCallLogPurgeTest, BackgroundPurgeUsesRetentionOption) {
  StackOptions options;
  options.adjust_auth_options = [](crm::auth::AuthServerOptions& auth) {
    auth.api_call_retention = absl::Hours(2);
    auth.api_call_purge_interval = absl::Milliseconds(20);
  };
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  std::string admin_key = (*stack)->NewOrganization();
  crm::auth::v1::PrivateApp app = (*stack)->NewApp(admin_key, AllScopes()).private_app();
  InsertCalls((*stack)->auth_pool(), app.organization_id(), app.id(), 30, absl::Hours(3));
  InsertCalls((*stack)->auth_pool(), app.organization_id(), app.id(), 4, absl::Hours(1));

  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (QueryInt((*stack)->auth_pool(), "SELECT COUNT(*) FROM api_calls") != 4 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(4, QueryInt((*stack)->auth_pool(), "SELECT COUNT(*) FROM api_calls"));
  EXPECT_EQ(0, QueryInt((*stack)->auth_pool(),
                        "SELECT COUNT(*) FROM api_calls WHERE call_time < UTC_TIMESTAMP(6) - INTERVAL 2 HOUR"));
}

TEST_F(ApiCallLogTest, ShutdownReportsBufferedCalls) {
  constexpr int kCalls = 40;
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(GetTokenInfo(token_).ok());
  // Nothing was reported yet: reports go only on flush and at shutdown.
  EXPECT_EQ(0, QueryInt(stack_->auth_pool(), "SELECT COUNT(*) FROM api_calls"));

  stack_->StopCrmServer(0, absl::Seconds(1));
  std::vector<ApiCall> calls = ListAll(ForApp());
  EXPECT_EQ(static_cast<size_t>(kCalls), calls.size());
}

TEST(ApiCallLogOffTest, RecordsNothingWhenDisabled) {
  StackOptions options;
  options.adjust_crm_options = [](crm::data::CrmServerOptions& crm) { crm.api_call_log_enabled = false; };
  absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  std::string admin_key = (*stack)->NewOrganization();
  crm::auth::v1::CreatePrivateAppResponse app = (*stack)->NewApp(admin_key, AllScopes());
  crm::data::v1::GetTokenInfoResponse info;
  ASSERT_TRUE((*stack)->crm().GetTokenInfo(WithBearer(app.access_token()).get(), {}, &info).ok());
  ASSERT_TRUE((*stack)->crm_server().FlushApiCalls().ok());
  (*stack)->StopCrmServer(0, absl::Seconds(1));
  EXPECT_EQ(0, QueryInt((*stack)->auth_pool(), "SELECT COUNT(*) FROM api_calls"));
}

// The buffer bound, without an auth server: nothing can be reported.
TEST(ApiCallRecorderTest, FullBufferDropsAndCounts) {
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  crm::data::ApiCallRecorder recorder(channel, absl::ZeroDuration());
  constexpr size_t kExtra = 5;
  for (size_t i = 0; i < crm::data::ApiCallRecorder::kMaxBufferedCalls + kExtra; ++i) {
    recorder.Record({.organization_id = 1,
                     .app_id = 2,
                     .method = kGetLead,
                     .code = 0,
                     .call_time = absl::Now(),
                     .latency = absl::Microseconds(10),
                     .peer_address = "127.0.0.1"});
  }
  EXPECT_EQ(static_cast<int64_t>(kExtra), recorder.dropped());
  EXPECT_EQ(crm::data::ApiCallRecorder::kMaxBufferedCalls, recorder.buffered());

  // A failed report keeps the calls for the next one and drops none.
  absl::Status flushed = recorder.Flush(absl::Milliseconds(200));
  EXPECT_EQ(absl::StatusCode::kUnavailable, flushed.code()) << flushed;
  EXPECT_EQ(crm::data::ApiCallRecorder::kMaxBufferedCalls, recorder.buffered());
  EXPECT_EQ(static_cast<int64_t>(kExtra), recorder.dropped());
  EXPECT_EQ(0, recorder.reported());
}

// Splits RFC 4180 text into records of fields: CRLF between records,
// quoted fields with doubled quotes inside. Sets `error` on malformed text.
std::vector<std::vector<std::string>> ParseCsv(const std::string& text, std::string* error) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '"') {
      ++i;
      while (true) {
        if (i >= text.size()) {
          *error = "unterminated quoted field";
          return records;
        }
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field.push_back(text[i++]);
      }
    }
    while (i < text.size() && text[i] != ',' && text[i] != '\r' && text[i] != '\n') field.push_back(text[i++]);
    if (i >= text.size()) {
      *error = "the last record does not end with CRLF";
      return records;
    }
    record.push_back(std::move(field));
    field.clear();
    if (text[i] == ',') {
      ++i;
      continue;
    }
    if (text.compare(i, 2, "\r\n") != 0) {
      *error = absl::StrCat("a record ends without CRLF at byte ", i);
      return records;
    }
    i += 2;
    records.push_back(std::move(record));
    record.clear();
  }
  return records;
}

// Runs crmctl with `arguments` and the admin key in CRM_ADMIN_KEY. Returns
// its stdout and sets `exit_status`.
std::string RunCrmctl(const std::string& admin_key, const std::string& arguments, int* exit_status) {
  setenv("CRM_ADMIN_KEY", admin_key.c_str(), 1);
  std::string command = absl::StrCat(CRMCTL_BINARY, " ", arguments, " --log_level=warn");
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot run " << command;
    *exit_status = -1;
    return output;
  }
  char buffer[4096];
  size_t read = 0;
  while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, read);
  int status = pclose(pipe);
  unsetenv("CRM_ADMIN_KEY");
  *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

TEST_F(ApiCallLogTest, CrmctlExportsCsv) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(GetTokenInfo(token_).ok());
    ASSERT_EQ(grpc::StatusCode::NOT_FOUND, GetLead(absl::StrCat(999999990 + i)).error_code());
  }
  // More calls than one page of the export, so it follows page tokens.
  InsertCalls(stack_->auth_pool(), organization_id_, app_id_, 1200, absl::Hours(1));
  Flush();
  std::vector<ApiCall> expected = ListAll(ForApp());
  ASSERT_EQ(1206u, expected.size());

  std::string target = absl::StrCat("--auth_target=127.0.0.1:", stack_->auth_port());
  int exit_status = -1;
  std::string csv = RunCrmctl(admin_key_, absl::StrCat("export-api-calls --app_id=", app_id_, " ", target),
                              &exit_status);
  ASSERT_EQ(0, exit_status);
  std::string error;
  std::vector<std::vector<std::string>> records = ParseCsv(csv, &error);
  ASSERT_EQ("", error);
  ASSERT_EQ(expected.size() + 1, records.size());
  EXPECT_EQ((std::vector<std::string>{"call_time", "app_id", "method", "code", "latency_ms", "peer_address"}),
            records[0]);
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("row ", i + 1));
    const std::vector<std::string>& row = records[i + 1];
    ASSERT_EQ(6u, row.size());
    absl::Time call_time;
    std::string parse_error;
    ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, row[0], &call_time, &parse_error)) << parse_error;
    EXPECT_EQ(Micros(expected[i].call_time()), absl::ToUnixMicros(call_time));
    EXPECT_EQ(app_id_, row[1]);
    EXPECT_EQ(expected[i].method(), row[2]);
    EXPECT_EQ(expected[i].code(), row[3]);
    int64_t latency_micros = TimeUtil::DurationToMicroseconds(expected[i].latency());
    EXPECT_EQ(absl::StrFormat("%d.%03d", latency_micros / 1000, latency_micros % 1000), row[4]);
    EXPECT_EQ(expected[i].peer_address(), row[5]);
  }

  // Filters: the three NOT_FOUND GetLead calls, and a time window.
  csv = RunCrmctl(admin_key_,
                  absl::StrCat("export-api-calls --app_id=", app_id_, " --method=GetLead --code=NOT_FOUND ", target),
                  &exit_status);
  ASSERT_EQ(0, exit_status);
  records = ParseCsv(csv, &error);
  ASSERT_EQ("", error);
  ASSERT_EQ(4u, records.size());
  for (size_t i = 1; i < records.size(); ++i) {
    EXPECT_EQ(kGetLead, records[i][2]);
    EXPECT_EQ("NOT_FOUND", records[i][3]);
  }
  std::string start = absl::FormatTime(absl::RFC3339_full, absl::FromUnixMicros(Micros(expected[4].call_time())),
                                       absl::UTCTimeZone());
  std::string end = absl::FormatTime(absl::RFC3339_full, absl::FromUnixMicros(Micros(expected[1].call_time())),
                                     absl::UTCTimeZone());
  csv = RunCrmctl(admin_key_,
                  absl::StrCat("export-api-calls --app_id=", app_id_, " --start=", start, " --end=", end, " ", target),
                  &exit_status);
  ASSERT_EQ(0, exit_status);
  records = ParseCsv(csv, &error);
  ASSERT_EQ("", error);
  EXPECT_EQ(4u, records.size()) << csv;

  // Another organization's key finds no such app, and a bad time is a
  // usage error.
  std::string other_key = stack_->NewOrganization("Other");
  RunCrmctl(other_key, absl::StrCat("export-api-calls --app_id=", app_id_, " ", target), &exit_status);
  EXPECT_EQ(1, exit_status);
  csv = RunCrmctl(admin_key_, absl::StrCat("export-api-calls --app_id=", app_id_, " --start=yesterday ", target),
                  &exit_status);
  EXPECT_EQ(2, exit_status);
  EXPECT_EQ("", csv);

  // The admin key goes in plaintext only to loopback, so crmctl stops before
  // connecting (192.0.2.1 is a documentation address).
  csv = RunCrmctl(admin_key_, absl::StrCat("export-api-calls --app_id=", app_id_, " --auth_target=192.0.2.1:50051"),
                  &exit_status);
  EXPECT_EQ(1, exit_status);
  EXPECT_EQ("", csv);
}

}  // namespace
}  // namespace crm::testing
