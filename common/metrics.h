// Prometheus metrics for both servers: a registry of collectors that render
// the text exposition format (version 0.0.4), per-method gRPC counters and
// latency histograms filled by a server interceptor, and a small HTTP
// server (libmicrohttpd) that serves GET /metrics.
//
// Each server owns one registry, so several servers in one process (as in
// the integration tests) report separately. Gauges are read when scraped,
// through collector callbacks, so the code they describe stays unaware of
// metrics.
#ifndef CRM_COMMON_METRICS_H_
#define CRM_COMMON_METRICS_H_

#include <grpcpp/support/server_interceptor.h>
#include <grpcpp/support/status.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct MHD_Daemon;

namespace crm {

// Builds one exposition in the Prometheus text format.
class PrometheusText {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // Starts a metric family: its # HELP and # TYPE lines. `type` is
  // "counter", "gauge" or "histogram".
  void Family(absl::string_view name, absl::string_view type, absl::string_view help);

  // Adds one sample line. Label values are escaped as the format requires.
  void Sample(absl::string_view name, const Labels& labels, double value);

  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// Collectors that together render one server's metrics.
class MetricsRegistry {
 public:
  using Collector = std::function<void(PrometheusText&)>;

  // Adds a collector; call before the HTTP server starts.
  void Add(Collector collector);

  // Runs every collector in the order added.
  std::string Render() const;

 private:
  std::vector<Collector> collectors_;
};

// Upper bounds in seconds of the gRPC latency histogram buckets; +Inf
// follows.
inline constexpr std::array<double, 14> kLatencyBucketSeconds = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

// Call counts and latency histograms by full method name and status code.
// Streaming calls count once, when they end, with their whole duration.
class GrpcServerMetrics {
 public:
  // Records one finished call. `method` is "/package.Service/Method".
  void Record(absl::string_view method, grpc::StatusCode code, absl::Duration latency);

  // Renders grpc_server_handled_total and grpc_server_handling_seconds.
  void Collect(PrometheusText& out) const;

  // Returns an interceptor factory for grpc::ServerBuilder that calls
  // Record for every call. This object must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewInterceptorFactory();

 private:
  struct Series {
    uint64_t count = 0;
    double sum_seconds = 0;
    // Non-cumulative counts per bucket; the last is +Inf.
    std::array<uint64_t, kLatencyBucketSeconds.size() + 1> buckets = {};
  };

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::pair<std::string, int>, Series> series_ ABSL_GUARDED_BY(mu_);
};

// Serves GET /metrics with a registry's text; other paths are 404.
class MetricsHttpServer {
 public:
  // Listens on `host`:`port` (port 0 picks a free one). `registry` must
  // outlive the server. UNAVAILABLE when the address cannot be bound,
  // INVALID_ARGUMENT when `host` is not an address or resolvable name.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                                  const MetricsRegistry* registry);

  // Stops listening and waits for the request being served, if any.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  explicit MetricsHttpServer(const MetricsRegistry* registry) : registry_(registry) {}

  const MetricsRegistry* const registry_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;

  friend struct MetricsHttpHandler;
};

class MysqlPool;

// Adds gauges of `pool`'s connections (in use, open, maximum) under
// crm_db_pool_*. `pool` must outlive the registry's use.
void AddDatabasePoolMetrics(MetricsRegistry& registry, MysqlPool* pool);

// Returns "grpc.Service" and "Method" from "/grpc.Service/Method"; both
// "unknown" for another shape.
std::pair<std::string, std::string> SplitMethodName(absl::string_view full_method);

}  // namespace crm

#endif  // CRM_COMMON_METRICS_H_
