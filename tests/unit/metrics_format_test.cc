// The Prometheus text rendering of common/metrics.h, without a server.
#include <string>

#include "absl/strings/match.h"
#include "common/metrics.h"
#include "gtest/gtest.h"

namespace crm {
namespace {

TEST(PrometheusText, EscapesLabelValues) {
  PrometheusText out;
  out.Family("x_total", "counter", "Help text.");
  out.Sample("x_total", {{"path", "a\"b\\c\nd"}}, 3);
  EXPECT_EQ("# HELP x_total Help text.\n# TYPE x_total counter\nx_total{path=\"a\\\"b\\\\c\\nd\"} 3\n", out.text());
}

TEST(PrometheusText, FormatsFractions) {
  PrometheusText out;
  out.Sample("ratio", {}, 0.25);
  EXPECT_EQ("ratio 0.25\n", out.text());
}

TEST(SplitMethodName, SplitsServiceAndMethod) {
  EXPECT_EQ(std::make_pair(std::string("crm.data.v1.CrmService"), std::string("GetLead")),
            SplitMethodName("/crm.data.v1.CrmService/GetLead"));
  EXPECT_EQ(std::make_pair(std::string("unknown"), std::string("unknown")), SplitMethodName("GetLead"));
  EXPECT_EQ(std::make_pair(std::string("unknown"), std::string("unknown")), SplitMethodName("/a/"));
}

TEST(GrpcServerMetrics, HistogramIsCumulative) {
  GrpcServerMetrics metrics;
  metrics.Record("/s.S/M", grpc::StatusCode::OK, absl::Microseconds(300));
  metrics.Record("/s.S/M", grpc::StatusCode::OK, absl::Milliseconds(3));
  metrics.Record("/s.S/M", grpc::StatusCode::OK, absl::Seconds(30));
  metrics.Record("/s.S/M", grpc::StatusCode::NOT_FOUND, absl::Milliseconds(1));
  PrometheusText out;
  metrics.Collect(out);
  const std::string& text = out.text();
  const std::string ok = "grpc_service=\"s.S\",grpc_method=\"M\",grpc_code=\"OK\"";
  EXPECT_TRUE(absl::StrContains(text, "grpc_server_handled_total{" + ok + "} 3\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc_server_handling_seconds_bucket{" + ok + ",le=\"0.0005\"} 1\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc_server_handling_seconds_bucket{" + ok + ",le=\"0.0025\"} 1\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc_server_handling_seconds_bucket{" + ok + ",le=\"0.005\"} 2\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc_server_handling_seconds_bucket{" + ok + ",le=\"10\"} 2\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc_server_handling_seconds_bucket{" + ok + ",le=\"+Inf\"} 3\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc_server_handling_seconds_count{" + ok + "} 3\n")) << text;
  EXPECT_TRUE(absl::StrContains(
      text, "grpc_server_handled_total{grpc_service=\"s.S\",grpc_method=\"M\",grpc_code=\"NOT_FOUND\"} 1\n"))
      << text;
}

}  // namespace
}  // namespace crm
