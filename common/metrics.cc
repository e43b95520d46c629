#include "common/metrics.h"

#include <microhttpd.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/mysql_pool.h"

namespace crm {
namespace {

// Maximum time the HTTP server keeps an idle connection open.
constexpr unsigned int kHttpConnectionTimeoutSeconds = 10;
// Concurrent scrapes beyond this are refused; Prometheus scrapes one at a
// time per target.
constexpr unsigned int kHttpConnectionLimit = 16;

constexpr char kExpositionContentType[] = "text/plain; version=0.0.4; charset=utf-8";

std::string EscapeLabelValue(absl::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '"') {
      escaped += "\\\"";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return absl::StrFormat("%.0f", value);
  return absl::StrFormat("%.9g", value);
}

// Records one call when its status is sent. A call that ends without a
// status (the client cancelled) is recorded as CANCELLED when the
// interceptor is destroyed with the call.
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(GrpcServerMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(absl::Now()) {}

  ~MetricsInterceptor() override {
    if (!recorded_) metrics_->Record(method_, grpc::StatusCode::CANCELLED, absl::Now() - start_);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->Record(method_, methods->GetSendStatus().error_code(), absl::Now() - start_);
      recorded_ = true;
    }
    methods->Proceed();
  }

 private:
  GrpcServerMetrics* const metrics_;
  const std::string method_;
  const absl::Time start_;
  bool recorded_ = false;
};

class MetricsInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(GrpcServerMetrics* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    const char* method = info->method();
    return new MetricsInterceptor(metrics_, method == nullptr ? "" : method);
  }

 private:
  GrpcServerMetrics* const metrics_;
};

}  // namespace

void PrometheusText::Family(absl::string_view name, absl::string_view type, absl::string_view help) {
  absl::StrAppend(&text_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void PrometheusText::Sample(absl::string_view name, const Labels& labels, double value) {
  absl::StrAppend(&text_, name);
  if (!labels.empty()) {
    text_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      absl::StrAppend(&text_, i == 0 ? "" : ",", labels[i].first, "=\"", EscapeLabelValue(labels[i].second), "\"");
    }
    text_ += '}';
  }
  absl::StrAppend(&text_, " ", FormatValue(value), "\n");
}

void MetricsRegistry::Add(Collector collector) { collectors_.push_back(std::move(collector)); }

std::string MetricsRegistry::Render() const {
  PrometheusText out;
  for (const Collector& collector : collectors_) collector(out);
  return out.text();
}

std::pair<std::string, std::string> SplitMethodName(absl::string_view full_method) {
  size_t slash = full_method.rfind('/');
  if (full_method.size() < 4 || full_method.front() != '/' || slash == 0 || slash + 1 == full_method.size()) {
    return {"unknown", "unknown"};
  }
  return {std::string(full_method.substr(1, slash - 1)), std::string(full_method.substr(slash + 1))};
}

void GrpcServerMetrics::Record(absl::string_view method, grpc::StatusCode code, absl::Duration latency) {
  double seconds = absl::ToDoubleSeconds(latency);
  size_t bucket = 0;
  while (bucket < kLatencyBucketSeconds.size() && seconds > kLatencyBucketSeconds[bucket]) ++bucket;
  absl::MutexLock lock(&mu_);
  Series& series = series_[{std::string(method), static_cast<int>(code)}];
  ++series.count;
  series.sum_seconds += seconds;
  ++series.buckets[bucket];
}

void GrpcServerMetrics::Collect(PrometheusText& out) const {
  // Copied first, so that formatting does not hold up calls.
  std::vector<std::pair<std::pair<std::string, int>, Series>> snapshot;
  {
    absl::MutexLock lock(&mu_);
    snapshot.assign(series_.begin(), series_.end());
  }
  std::sort(snapshot.begin(), snapshot.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });

  auto labels_of = [](const std::pair<std::string, int>& key) {
    auto [service, method] = SplitMethodName(key.first);
    return PrometheusText::Labels{{"grpc_service", service},
                                  {"grpc_method", method},
                                  {"grpc_code", StatusCodeName(static_cast<grpc::StatusCode>(key.second))}};
  };

  out.Family("grpc_server_handled_total", "counter", "Calls completed by the server, by method and status code.");
  for (const auto& [key, series] : snapshot) {
    out.Sample("grpc_server_handled_total", labels_of(key), static_cast<double>(series.count));
  }

  out.Family("grpc_server_handling_seconds", "histogram",
             "Time from the start of a call to its status, in seconds, by method and status code.");
  for (const auto& [key, series] : snapshot) {
    PrometheusText::Labels labels = labels_of(key);
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= kLatencyBucketSeconds.size(); ++i) {
      cumulative += series.buckets[i];
      PrometheusText::Labels bucket_labels = labels;
      bucket_labels.emplace_back("le", i < kLatencyBucketSeconds.size() ? FormatValue(kLatencyBucketSeconds[i])
                                                                        : std::string("+Inf"));
      out.Sample("grpc_server_handling_seconds_bucket", bucket_labels, static_cast<double>(cumulative));
    }
    out.Sample("grpc_server_handling_seconds_sum", labels, series.sum_seconds);
    out.Sample("grpc_server_handling_seconds_count", labels, static_cast<double>(series.count));
  }
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> GrpcServerMetrics::NewInterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(this);
}

// libmicrohttpd's request callback, a friend of MetricsHttpServer.
struct MetricsHttpHandler {
  static MHD_Result Handle(void* context, MHD_Connection* connection, const char* url, const char* method,
                           const char* /*version*/, const char* /*upload_data*/, size_t* upload_data_size,
                           void** /*request_state*/) {
    auto* server = static_cast<MetricsHttpServer*>(context);
    unsigned int status = MHD_HTTP_OK;
    std::string body;
    const char* content_type = kExpositionContentType;
    if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0) {
      status = MHD_HTTP_METHOD_NOT_ALLOWED;
      body = "only GET is supported\n";
      content_type = "text/plain; charset=utf-8";
    } else if (std::strcmp(url, "/metrics") != 0) {
      status = MHD_HTTP_NOT_FOUND;
      body = "not found; metrics are at /metrics\n";
      content_type = "text/plain; charset=utf-8";
    } else {
      body = server->registry_->Render();
    }
    // A request body, which GET does not have, is read and ignored.
    *upload_data_size = 0;

    MHD_Response* response =
        MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
    if (response == nullptr) return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET");
    MHD_Result queued = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return queued;
  }
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& host, int port,
                                                                            const MetricsRegistry* registry) {
  if (port < 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat("invalid metrics port ", port));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* addresses = nullptr;
  std::string service = absl::StrCat(port);
  if (int error = getaddrinfo(host.c_str(), service.c_str(), &hints, &addresses); error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid metrics listen host \"", host, "\": ", gai_strerror(error)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(addresses, freeaddrinfo);

  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(registry));
  unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (addresses->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  server->daemon_ = MHD_start_daemon(flags, static_cast<uint16_t>(port), nullptr, nullptr,
                                     &MetricsHttpHandler::Handle, server.get(), MHD_OPTION_SOCK_ADDR,
                                     addresses->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT,
                                     kHttpConnectionTimeoutSeconds, MHD_OPTION_CONNECTION_LIMIT,
                                     kHttpConnectionLimit, MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen for metrics on ", host, " port ", port));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(server->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  server->port_ = info == nullptr ? port : info->port;
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

void AddDatabasePoolMetrics(MetricsRegistry& registry, MysqlPool* pool) {
  registry.Add([pool](PrometheusText& out) {
    MysqlPool::Usage usage = pool->GetUsage();
    out.Family("crm_db_pool_connections_in_use", "gauge", "Database connections leased to a call now.");
    out.Sample("crm_db_pool_connections_in_use", {}, usage.in_use);
    out.Family("crm_db_pool_connections_open", "gauge", "Database connections open now, in use or idle.");
    out.Sample("crm_db_pool_connections_open", {}, usage.open);
    out.Family("crm_db_pool_connections_max", "gauge", "Maximum database connections of this process (--db_pool_size).");
    out.Sample("crm_db_pool_connections_max", {}, usage.max);
  });
}

}  // namespace crm
