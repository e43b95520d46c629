#include "tests/integration/metrics_scrape.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace crm::testing {
namespace {

std::string SampleKey(const std::string& name, const std::vector<std::pair<std::string, std::string>>& labels) {
  if (labels.empty()) return name;
  std::string key = name + "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    absl::StrAppend(&key, i == 0 ? "" : ",", labels[i].first, "=\"", labels[i].second, "\"");
  }
  return key + "}";
}

}  // namespace

absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    std::string error = std::strerror(errno);
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect to port ", port, ": ", error));
  }
  std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::InternalError("short write");
  }
  std::string response;
  char buffer[65536];
  ssize_t read_bytes = 0;
  while ((read_bytes = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, read_bytes);
  close(fd);
  if (read_bytes < 0) return absl::DeadlineExceededError("reading the response timed out");

  size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) return absl::InternalError("response without a header end");
  HttpResponse parsed;
  std::vector<std::string> header_lines = absl::StrSplit(response.substr(0, header_end), "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(header_lines[0], ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &parsed.status)) {
    return absl::InternalError(absl::StrCat("bad status line: ", header_lines[0]));
  }
  for (const std::string& line : header_lines) {
    if (absl::StartsWithIgnoreCase(line, "content-type:")) {
      parsed.content_type = std::string(absl::StripAsciiWhitespace(line.substr(13)));
    }
  }
  parsed.body = response.substr(header_end + 4);
  return parsed;
}

std::optional<double> Exposition::Get(const std::string& name,
                                      const std::vector<std::pair<std::string, std::string>>& labels) const {
  auto it = samples.find(SampleKey(name, labels));
  if (it == samples.end()) return std::nullopt;
  return it->second;
}

double Exposition::Sum(const std::string& name,
                       const std::vector<std::pair<std::string, std::string>>& labels) const {
  double sum = 0;
  for (const auto& [key, value] : samples) {
    if (key != name && !absl::StartsWith(key, name + "{")) continue;
    bool all = true;
    for (const auto& [label, label_value] : labels) {
      all &= absl::StrContains(key, absl::StrCat(label, "=\"", label_value, "\""));
    }
    if (all) sum += value;
  }
  return sum;
}

Exposition ParseExposition(const std::string& text) {
  Exposition exposition;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      if (parts.size() == 4) exposition.types[parts[2]] = parts[3];
      continue;
    }
    if (absl::StartsWith(line, "#")) continue;
    size_t space = line.rfind(' ');
    double value = 0;
    absl::string_view key = space == absl::string_view::npos ? line : line.substr(0, space);
    absl::string_view value_text = space == absl::string_view::npos ? "" : line.substr(space + 1);
    bool labels_closed = key.find('{') == absl::string_view::npos || absl::EndsWith(key, "}");
    if (space == absl::string_view::npos || !labels_closed ||
        !(absl::SimpleAtod(value_text, &value) || value_text == "+Inf" || value_text == "NaN")) {
      exposition.malformed_lines.emplace_back(line);
      continue;
    }
    exposition.samples[std::string(key)] = value;
  }
  return exposition;
}

Exposition Scrape(int port) {
  absl::StatusOr<HttpResponse> response = HttpGet(port, "/metrics");
  EXPECT_TRUE(response.ok()) << response.status();
  if (!response.ok()) return {};
  EXPECT_EQ(200, response->status);
  EXPECT_TRUE(absl::StartsWith(response->content_type, "text/plain; version=0.0.4")) << response->content_type;
  return ParseExposition(response->body);
}

}  // namespace crm::testing
