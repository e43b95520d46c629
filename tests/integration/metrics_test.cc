// The Prometheus endpoints of real auth and CRM servers. After a known set
// of calls, a scrape over HTTP reports exactly those calls by method and
// code, with cumulative histograms that agree with the counters. The
// cache, invalidation, pool and queue gauges are present with sane values.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/test_stack.h"

namespace crm::testing {
namespace {

using crm::auth::v1::ACTION_CREATE;
using crm::auth::v1::ACTION_READ;
using crm::auth::v1::MODULE_LEAD;
using Labels = std::vector<std::pair<std::string, std::string>>;

constexpr char kCrmService[] = "crm.data.v1.CrmService";

Labels CallLabels(const std::string& service, const std::string& method, const std::string& code) {
  return {{"grpc_service", service}, {"grpc_method", method}, {"grpc_code", code}};
}

// Checks every histogram series of grpc_server_handling_seconds: buckets
// never decrease, +Inf equals _count, and _count equals the counter.
void ExpectConsistentHistograms(const Exposition& metrics) {
  int series_checked = 0;
  for (const auto& [key, count] : metrics.samples) {
    if (!absl::StartsWith(key, "grpc_server_handling_seconds_count{")) continue;
    std::string labels = key.substr(std::string("grpc_server_handling_seconds_count").size());
    std::string label_list = labels.substr(1, labels.size() - 2);
    double previous = 0;
    for (const char* bound : {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                              "1", "2.5", "5", "10", "+Inf"}) {
      std::string bucket_key =
          absl::StrCat("grpc_server_handling_seconds_bucket{", label_list, ",le=\"", bound, "\"}");
      auto it = metrics.samples.find(bucket_key);
      ASSERT_NE(it, metrics.samples.end()) << bucket_key;
      EXPECT_GE(it->second, previous) << bucket_key;
      previous = it->second;
    }
    EXPECT_EQ(count, previous) << key;
    auto handled = metrics.samples.find(absl::StrCat("grpc_server_handled_total", labels));
    ASSERT_NE(handled, metrics.samples.end()) << labels;
    EXPECT_EQ(handled->second, count) << labels;
    auto sum = metrics.samples.find(absl::StrCat("grpc_server_handling_seconds_sum", labels));
    ASSERT_NE(sum, metrics.samples.end()) << labels;
    EXPECT_GE(sum->second, 0) << labels;
    ++series_checked;
  }
  EXPECT_GT(series_checked, 0);
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StackOptions options;
    options.metrics = true;
    absl::StatusOr<std::unique_ptr<TestStack>> stack = TestStack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    ASSERT_GT(stack_->crm_server().metrics_port(), 0);
    ASSERT_GT(stack_->auth_server().metrics_port(), 0);
  }

  grpc::StatusCode CreateLead(const std::string& token) {
    crm::data::v1::CreateLeadRequest request;
    request.mutable_lead()->set_last_name("Lovelace");
    crm::data::v1::CreateLeadResponse response;
    return stack_->crm().CreateLead(WithBearer(token).get(), request, &response).error_code();
  }

  grpc::StatusCode GetLead(const std::string& token, const std::string& id) {
    crm::data::v1::GetLeadRequest request;
    request.set_id(id);
    crm::data::v1::GetLeadResponse response;
    return stack_->crm().GetLead(WithBearer(token).get(), request, &response).error_code();
  }

  grpc::StatusCode ListContacts(const std::string& token) {
    crm::data::v1::ListContactsRequest request;
    crm::data::v1::ListContactsResponse response;
    return stack_->crm().ListContacts(WithBearer(token).get(), request, &response).error_code();
  }

  std::unique_ptr<TestStack> stack_;
};

TEST_F(MetricsTest, CrmCountsMatchCalls) {
  std::string admin_key = stack_->NewOrganization();
  std::string token =
      stack_->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ), MakeScope(MODULE_LEAD, ACTION_CREATE)})
          .access_token();

  for (int i = 0; i < 3; ++i) ASSERT_EQ(grpc::StatusCode::OK, CreateLead(token));
  for (int i = 0; i < 2; ++i) ASSERT_EQ(grpc::StatusCode::NOT_FOUND, GetLead(token, "999999999"));
  ASSERT_EQ(grpc::StatusCode::PERMISSION_DENIED, ListContacts(token));
  ASSERT_EQ(grpc::StatusCode::UNAUTHENTICATED, CreateLead("crmpat_not_a_valid_token"));

  Exposition metrics = Scrape(stack_->crm_server().metrics_port());
  EXPECT_TRUE(metrics.malformed_lines.empty()) << metrics.malformed_lines.front();
  EXPECT_EQ(3, metrics.Get("grpc_server_handled_total", CallLabels(kCrmService, "CreateLead", "OK")));
  EXPECT_EQ(1, metrics.Get("grpc_server_handled_total", CallLabels(kCrmService, "CreateLead", "UNAUTHENTICATED")));
  EXPECT_EQ(2, metrics.Get("grpc_server_handled_total", CallLabels(kCrmService, "GetLead", "NOT_FOUND")));
  EXPECT_EQ(1,
            metrics.Get("grpc_server_handled_total", CallLabels(kCrmService, "ListContacts", "PERMISSION_DENIED")));
  EXPECT_EQ(7, metrics.Sum("grpc_server_handled_total", {{"grpc_service", kCrmService}}));
  EXPECT_EQ("counter", metrics.types["grpc_server_handled_total"]);
  EXPECT_EQ("histogram", metrics.types["grpc_server_handling_seconds"]);
  ExpectConsistentHistograms(metrics);

  // Six calls carried the valid token; each was a cache hit or a miss.
  std::optional<double> hits = metrics.Get("crm_token_cache_hits_total");
  std::optional<double> misses = metrics.Get("crm_token_cache_misses_total");
  std::optional<double> ratio = metrics.Get("crm_token_cache_hit_ratio");
  ASSERT_TRUE(hits.has_value());
  ASSERT_TRUE(misses.has_value());
  ASSERT_TRUE(ratio.has_value());
  EXPECT_GE(*hits + *misses, 6);
  EXPECT_GE(*misses, 1);
  // The endpoint prints nine significant digits.
  EXPECT_NEAR(*hits / (*hits + *misses), *ratio, 1e-8);

  EXPECT_EQ(0, metrics.Get("crm_invalidation_lag_sequences"));
  EXPECT_EQ(1, metrics.Get("crm_invalidation_stream_current"));
  std::optional<double> stream_age = metrics.Get("crm_invalidation_stream_age_seconds");
  ASSERT_TRUE(stream_age.has_value());
  EXPECT_GE(*stream_age, 0);
  EXPECT_LT(*stream_age, 3);

  EXPECT_EQ(stack_->data_pool().options().pool_size, metrics.Get("crm_db_pool_connections_max"));
  std::optional<double> in_use = metrics.Get("crm_db_pool_connections_in_use");
  std::optional<double> open = metrics.Get("crm_db_pool_connections_open");
  ASSERT_TRUE(in_use.has_value());
  ASSERT_TRUE(open.has_value());
  EXPECT_GE(*in_use, 0);
  EXPECT_LE(*in_use, *open);
  EXPECT_GE(*open, 1);
  EXPECT_EQ(0, metrics.Get("crm_worker_queue_depth"));
  EXPECT_EQ(1024, metrics.Get("crm_worker_queue_capacity"));
  EXPECT_EQ(8, metrics.Get("crm_worker_threads"));
}

TEST_F(MetricsTest, AuthCountsMatchCalls) {
  std::string admin_key = stack_->NewOrganization();
  stack_->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ)});
  stack_->NewApp(admin_key, {MakeScope(MODULE_LEAD, ACTION_READ)});
  crm::auth::v1::GetPrivateAppRequest missing;
  missing.set_id("999999999");
  crm::auth::v1::GetPrivateAppResponse response;
  ASSERT_EQ(grpc::StatusCode::NOT_FOUND,
            stack_->apps().GetPrivateApp(WithBearer(admin_key).get(), missing, &response).error_code());
  ASSERT_EQ(grpc::StatusCode::UNAUTHENTICATED,
            stack_->apps().GetPrivateApp(WithBearer("crmadm_wrong").get(), missing, &response).error_code());

  Exposition metrics = Scrape(stack_->auth_server().metrics_port());
  EXPECT_TRUE(metrics.malformed_lines.empty()) << metrics.malformed_lines.front();
  const std::string service = "crm.auth.v1.PrivateAppService";
  EXPECT_EQ(2, metrics.Get("grpc_server_handled_total", CallLabels(service, "CreatePrivateApp", "OK")));
  EXPECT_EQ(1, metrics.Get("grpc_server_handled_total", CallLabels(service, "GetPrivateApp", "NOT_FOUND")));
  EXPECT_EQ(1, metrics.Get("grpc_server_handled_total", CallLabels(service, "GetPrivateApp", "UNAUTHENTICATED")));
  ExpectConsistentHistograms(metrics);
  // The CRM server's invalidation stream is open and counted when it ends.
  EXPECT_EQ(1, metrics.Get("crm_invalidation_streams"));
  EXPECT_EQ(32, metrics.Get("crm_db_pool_connections_max"));
}

TEST_F(MetricsTest, OtherPathsAreNotFound) {
  absl::StatusOr<HttpResponse> response = HttpGet(stack_->crm_server().metrics_port(), "/");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(404, response->status);
}

TEST_F(MetricsTest, StoppedServerClosesEndpoint) {
  int port = stack_->crm_server().metrics_port();
  stack_->StopCrmServer(0);
  absl::StatusOr<HttpResponse> response = HttpGet(port, "/metrics");
  EXPECT_FALSE(response.ok());
}

}  // namespace
}  // namespace crm::testing
