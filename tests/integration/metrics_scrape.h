// Test helpers that scrape a server's Prometheus endpoint over a real
// loopback socket and parse the text exposition format.
#ifndef CRM_TESTS_INTEGRATION_METRICS_SCRAPE_H_
#define CRM_TESTS_INTEGRATION_METRICS_SCRAPE_H_

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace crm::testing {

// An HTTP/1.0 response: status code and body.
struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// Sends `GET path` to 127.0.0.1:port and reads the whole response.
absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& path);

// Samples of one exposition, keyed by the sample's name and labels exactly
// as written, such as `grpc_server_handled_total{grpc_service="a",...}`.
struct Exposition {
  std::map<std::string, double> samples;
  // Metric family name to its # TYPE.
  std::map<std::string, std::string> types;
  // Lines that are neither comments nor `name[{labels}] value`.
  std::vector<std::string> malformed_lines;

  // The sample's value, or nullopt when absent. `labels` in the order the
  // server writes them.
  std::optional<double> Get(const std::string& name,
                            const std::vector<std::pair<std::string, std::string>>& labels = {}) const;

  // Sum over every sample whose key starts with `name{` and contains each
  // `label="value"` of `labels`.
  double Sum(const std::string& name, const std::vector<std::pair<std::string, std::string>>& labels = {}) const;
};

Exposition ParseExposition(const std::string& text);

// Scrapes and parses /metrics; fails the calling test on error.
Exposition Scrape(int port);

}  // namespace crm::testing

#endif  // CRM_TESTS_INTEGRATION_METRICS_SCRAPE_H_
