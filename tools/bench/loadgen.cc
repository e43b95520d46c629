// loadgen: a closed-loop gRPC load generator for the CRM and auth servers.
// It keeps --concurrency calls in flight through the generated stubs on the
// callback API, discards a warm-up, then measures for --seconds. It prints
// one JSON object with successful calls per second, latency percentiles of
// the successful calls, calls by status code, and the CPU time and memory
// of the server processes named by --watch. tools/bench.sh runs it, and
// docs/benchmarks.md describes the scenarios.
//
// Exit status: 0 when every call succeeded, 3 when any call ended with
// another status code (the report still prints), 1 on a usage or set-up
// error.
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"
#include "tools/bench/loadgen_scenario.h"

ABSL_FLAG(std::string, scenario, "",
          "What to send: get_lead, create_lead, update_lead, list_leads, mixed, warm_tokens, random_tokens, "
          "unknown_tokens (CrmService); "
          "check_token, create_delete_app, rotate_token, seed_apps (auth server)");
ABSL_FLAG(std::string, target, "", "host:port of the server under load, such as 127.0.0.1:50052");
ABSL_FLAG(int, concurrency, 64, "Calls kept in flight");
ABSL_FLAG(int, channels, 4, "gRPC channels (TCP connections) the calls are spread over");
ABSL_FLAG(double, warmup_seconds, 2, "Seconds of load before the measurement window; not counted");
ABSL_FLAG(double, seconds, 10,
          "Length of the measurement window in seconds; for warm_tokens and seed_apps, the time limit");
ABSL_FLAG(int, deadline_ms, 10000, "Deadline of each call in milliseconds");
ABSL_FLAG(int64_t, calls, 0,
          "Make exactly this many calls and stop, with --seconds as the time limit; 0 keeps the scenario's own "
          "rule (timed, or one call per input for warm_tokens and seed_apps)");
ABSL_FLAG(std::string, tokens_file, "", "File of \"ORGANIZATION_ID APP_ID TOKEN\" lines");
ABSL_FLAG(std::string, leads_file, "", "File of \"ORGANIZATION_ID FIRST_LEAD_ID COUNT\" lines");
ABSL_FLAG(std::string, admin_keys_file, "", "File of \"ORGANIZATION_ID ADMIN_KEY\" lines");
ABSL_FLAG(int, page_size, 50, "Page size of ListLeads calls");
ABSL_FLAG(int, apps_per_organization, 20, "seed_apps: apps to create in each organization");
ABSL_FLAG(std::string, tokens_out, "", "seed_apps: tokens file to write");
ABSL_FLAG(std::string, watch, "",
          "Server processes to sample as name=pid,name=pid: CPU seconds in the window, VmRSS and VmHWM after");
ABSL_FLAG(std::string, label, "", "Free text copied into the report");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the per-slot random generators");
ABSL_FLAG(bool, server_status, false,
          "After the run, read crm.data.v1.CrmStatusService/GetServerStatus from the target (a crm_server) and "
          "add its token cache figures to the report");

namespace crm::bench {
namespace {

constexpr int kExitUsage = 1;
constexpr int kExitUnexpectedStatus = 3;

// Escapes `text` for a JSON string, because flags may contain any character.
std::string JsonEscape(absl::string_view text) {
  std::string escaped;
  for (char c : text) {
    if (c == '"' || c == '\\') {
      escaped.push_back('\\');
      escaped.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppendFormat(&escaped, "\\u%04x", static_cast<unsigned char>(c));
    } else {
      escaped.push_back(c);
    }
  }
  return escaped;
}

std::string CodesJson(const CodeCounts& codes) {
  std::vector<std::string> members;
  for (int code = 0; code < kStatusCodeCount; ++code) {
    if (codes[code] == 0) continue;
    members.push_back(absl::StrFormat("\"%s\": %d", StatusCodeName(static_cast<grpc::StatusCode>(code)), codes[code]));
  }
  return absl::StrCat("{", absl::StrJoin(members, ", "), "}");
}

std::string LatencyJson(const LatencySummary& latency) {
  return absl::StrFormat("{\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f}", latency.p50_ms,
                         latency.p90_ms, latency.p99_ms, latency.max_ms);
}

double PerSecond(int64_t count, double seconds) { return seconds > 0 ? static_cast<double>(count) / seconds : 0; }

// Formats the report as JSON. `server_status` is "" or a JSON object.
std::string ReportJson(const RunReport& report, int concurrency, int channels, const std::string& server_status) {
  std::vector<std::string> methods;
  for (int method = 0; method < kMethodCount; ++method) {
    const MethodReport& entry = report.methods[method];
    int64_t calls = 0;
    for (int64_t count : entry.codes) calls += count;
    if (calls == 0) continue;
    methods.push_back(absl::StrFormat("\"%s\": {\"calls\": %d, \"calls_per_second\": %.1f, \"latency_ms\": %s, "
                                      "\"codes\": %s}",
                                      MethodName(static_cast<Method>(method)), calls,
                                      PerSecond(entry.ok_latency.count, report.window_seconds),
                                      LatencyJson(entry.ok_latency), CodesJson(entry.codes)));
  }
  std::vector<std::string> processes;
  for (const ProcessUsage& usage : report.processes) {
    processes.push_back(absl::StrFormat("\"%s\": {\"cpu_seconds\": %.3f, \"vm_rss_kib\": %d, \"vm_hwm_kib\": %d}",
                                        usage.name, usage.cpu_seconds, usage.vm_rss_kib, usage.vm_hwm_kib));
  }
  return absl::StrFormat(
      "{\"scenario\": \"%s\", \"label\": \"%s\", \"target\": \"%s\", \"concurrency\": %d, \"channels\": %d, "
      "\"window_seconds\": %.3f, \"calls\": %d, \"ok_calls\": %d, \"calls_per_second\": %.1f, "
      "\"latency_ms\": %s, \"codes\": %s, \"failed_outside_window\": %d, \"abandoned_calls\": %d, "
      "\"completed\": %s, \"methods\": {%s}, \"processes\": {%s}, \"client_cpu_seconds\": %.3f%s%s}",
      JsonEscape(absl::GetFlag(FLAGS_scenario)), JsonEscape(absl::GetFlag(FLAGS_label)),
      JsonEscape(absl::GetFlag(FLAGS_target)), concurrency, channels,
      report.window_seconds, report.calls, report.ok_calls, PerSecond(report.ok_calls, report.window_seconds),
      LatencyJson(report.ok_latency), CodesJson(report.codes), report.failed_outside_window, report.abandoned_calls,
      report.completed ? "true" : "false", absl::StrJoin(methods, ", "), absl::StrJoin(processes, ", "),
      report.client_cpu_seconds, server_status.empty() ? "" : ", \"server_status\": ", server_status);
}

// Reads the target's token cache state as a JSON object.
absl::StatusOr<std::string> ServerStatusJson(Channels& channels, absl::Duration deadline) {
  grpc::ClientContext context;
  SetTimeout(context, deadline);
  crm::data::v1::GetServerStatusResponse status;
  grpc::Status result = channels.status().GetServerStatus(&context, {}, &status);
  if (!result.ok()) {
    return absl::UnavailableError(absl::StrCat("GetServerStatus failed: ", result.error_message()));
  }
  return absl::StrFormat(
      "{\"watch_state\": \"%s\", \"cached_tokens\": %d, \"cache_bytes\": %d, \"cache_hits\": %d, "
      "\"cache_misses\": %d}",
      crm::data::v1::WatchState_Name(status.watch_state()), status.cached_tokens(), status.cache_bytes(),
      status.cache_hits(), status.cache_misses());
}

int Fail(absl::string_view message) {
  std::cerr << "loadgen: " << message << "\n";
  return kExitUsage;
}

// Reads the seed files that the flags name into `config`.
absl::Status ReadInputs(ScenarioConfig& config) {
  if (!absl::GetFlag(FLAGS_tokens_file).empty()) {
    absl::StatusOr<std::vector<AppToken>> tokens = ReadTokens(absl::GetFlag(FLAGS_tokens_file));
    if (!tokens.ok()) return tokens.status();
    config.tokens = *std::move(tokens);
  }
  if (!absl::GetFlag(FLAGS_leads_file).empty()) {
    absl::StatusOr<std::unordered_map<uint64_t, LeadRange>> leads = ReadLeadRanges(absl::GetFlag(FLAGS_leads_file));
    if (!leads.ok()) return leads.status();
    config.leads = *std::move(leads);
  }
  if (!absl::GetFlag(FLAGS_admin_keys_file).empty()) {
    absl::StatusOr<std::vector<AdminKey>> keys = ReadAdminKeys(absl::GetFlag(FLAGS_admin_keys_file));
    if (!keys.ok()) return keys.status();
    config.admin_keys = *std::move(keys);
  }
  return absl::OkStatus();
}

int Run() {
  const std::string scenario_name = absl::GetFlag(FLAGS_scenario);
  const std::string target = absl::GetFlag(FLAGS_target);
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const int channel_count = absl::GetFlag(FLAGS_channels);
  if (scenario_name.empty() || target.empty()) return Fail("--scenario and --target are required; see --help");
  if (concurrency < 1 || channel_count < 1 || absl::GetFlag(FLAGS_deadline_ms) < 1 ||
      absl::GetFlag(FLAGS_page_size) < 1) {
    return Fail("--concurrency, --channels, --deadline_ms and --page_size must be at least 1");
  }
  if (absl::GetFlag(FLAGS_seconds) <= 0 || absl::GetFlag(FLAGS_warmup_seconds) < 0) {
    return Fail("--seconds must be above 0 and --warmup_seconds at least 0");
  }

  RunOptions options;
  options.concurrency = concurrency;
  options.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup_seconds));
  options.duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  options.drain_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms)) + absl::Seconds(5);
  options.random_seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<std::vector<WatchedProcess>> watched = ParseWatchedProcesses(absl::GetFlag(FLAGS_watch));
  if (!watched.ok()) return Fail(watched.status().message());
  options.watched = *std::move(watched);

  Channels channels(target, channel_count);
  ScenarioConfig config;
  config.channels = &channels;
  config.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  config.page_size = absl::GetFlag(FLAGS_page_size);
  config.apps_per_organization = absl::GetFlag(FLAGS_apps_per_organization);
  config.tokens_out = absl::GetFlag(FLAGS_tokens_out);
  if (absl::Status read = ReadInputs(config); !read.ok()) return Fail(read.message());

  absl::StatusOr<std::unique_ptr<Scenario>> scenario = MakeCrmScenario(scenario_name, config);
  if (scenario.ok() && *scenario == nullptr) scenario = MakeAuthScenario(scenario_name, std::move(config));
  if (!scenario.ok()) return Fail(scenario.status().message());
  if (*scenario == nullptr) return Fail(absl::StrCat("unknown --scenario ", scenario_name, "; see --help"));
  options.call_limit = absl::GetFlag(FLAGS_calls) > 0 ? absl::GetFlag(FLAGS_calls) : (*scenario)->CallLimit();

  if (absl::Status connected = channels.WaitForConnected(absl::Seconds(10)); !connected.ok()) {
    return Fail(connected.message());
  }
  if (absl::Status set_up = (*scenario)->SetUp(concurrency); !set_up.ok()) {
    return Fail(absl::StrCat("set-up of ", scenario_name, " failed: ", set_up.message()));
  }
  RunReport report = RunClosedLoop(**scenario, options);
  absl::Status torn_down = (*scenario)->TearDown();
  std::string server_status;
  if (absl::GetFlag(FLAGS_server_status)) {
    absl::StatusOr<std::string> status = ServerStatusJson(channels, absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms)));
    if (!status.ok()) return Fail(status.status().message());
    server_status = *std::move(status);
  }

  std::cout << ReportJson(report, concurrency, channel_count, server_status) << std::endl;
  std::cerr << absl::StrFormat("loadgen: %s %s: %d OK calls in %.2f s (%.1f/s), p50 %.3f ms, p99 %.3f ms, codes %s\n",
                               scenario_name, absl::GetFlag(FLAGS_label), report.ok_calls, report.window_seconds,
                               PerSecond(report.ok_calls, report.window_seconds), report.ok_latency.p50_ms,
                               report.ok_latency.p99_ms, CodesJson(report.codes));
  if (!torn_down.ok()) {
    std::cerr << "loadgen: clean-up of " << scenario_name << " failed: " << torn_down.message() << "\n";
    return kExitUsage;
  }
  bool all_ok = report.ok_calls == report.calls && report.failed_outside_window == 0 &&
                report.abandoned_calls == 0 && report.completed;
  if (!all_ok) {
    std::cerr << "loadgen: " << scenario_name << " had calls that did not succeed (or did not finish); see the "
              << "report's codes, failed_outside_window, abandoned_calls and completed\n";
    return kExitUnexpectedStatus;
  }
  return 0;
}

}  // namespace
}  // namespace crm::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Closed-loop gRPC load generator for the CRM and auth servers; prints one JSON report.\n"
      "Example: loadgen --scenario=get_lead --target=127.0.0.1:50052 --tokens_file=t.txt --leads_file=l.txt");
  absl::ParseCommandLine(argc, argv);
  return crm::bench::Run();
}
