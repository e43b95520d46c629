#include "common/server_setup.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/flags/parse.h"
#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/types/optional.h"
#include "absl/time/clock.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "common/logging.h"

namespace crm {
namespace {

// Flags that ParseFlagsWithEnvironment set from the environment, by name,
// with the variable's name. Written once before any thread starts.
std::map<std::string, std::string>& FlagsFromEnvironment() {
  static auto* flags = new std::map<std::string, std::string>();
  return *flags;
}

// Whether the flag is defined in this repository rather than in Abseil or
// gRPC: their flags (--flagfile, --help...) are not configuration.
bool IsProjectFlag(const absl::CommandLineFlag& flag) {
  std::string file = flag.Filename();
  return absl::StrContains(file, "services/") || absl::StrContains(file, "common/") ||
         absl::StrContains(file, "tools/");
}

// Names of the flags given on the command line; filled before parsing.
std::set<std::string>& FlagsFromCommandLine() {
  static auto* flags = new std::set<std::string>();
  return *flags;
}

// Records the flag names in argv: "--name=value", "--name value",
// "-name" and "--noname" for a boolean. "--" ends the flags.
void RecordCommandLineFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view argument = argv[i];
    if (argument == "--") break;
    if (!absl::ConsumePrefix(&argument, "-")) continue;
    absl::ConsumePrefix(&argument, "-");
    std::string name(argument.substr(0, argument.find('=')));
    FlagsFromCommandLine().insert(name);
    if (absl::StartsWith(name, "no")) FlagsFromCommandLine().insert(name.substr(2));
  }
}

std::string FlagSource(const absl::CommandLineFlag& flag) {
  if (FlagsFromCommandLine().contains(std::string(flag.Name()))) return "command line";
  auto it = FlagsFromEnvironment().find(std::string(flag.Name()));
  if (it != FlagsFromEnvironment().end()) return it->second;
  return "default";
}

[[noreturn]] void InvalidFlag(absl::string_view program, const absl::CommandLineFlag& flag,
                              absl::string_view problem) {
  std::string value = IsSecretFlag(flag.Name()) ? "<redacted>" : flag.CurrentValue();
  std::cerr << program << ": invalid --" << flag.Name() << "=" << value << " (from " << FlagSource(flag)
            << "): " << problem << "\n";
  std::exit(2);
}

sigset_t ShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

}  // namespace

std::vector<char*> ParseFlagsWithEnvironment(int argc, char** argv, absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    std::string variable = absl::StrCat("CRM_", absl::AsciiStrToUpper(name));
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::cerr << "invalid value in environment variable " << variable << ": " << error << "\n";
      std::exit(2);
    }
    FlagsFromEnvironment()[std::string(name)] = absl::StrCat("environment variable ", variable);
  }
  RecordCommandLineFlags(argc, argv);
  return absl::ParseCommandLine(argc, argv);
}

void ExitWithInvalidFlag(absl::string_view program, absl::string_view flag_name, absl::string_view problem) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(flag_name);
  if (flag == nullptr) {
    std::cerr << program << ": invalid --" << flag_name << ": " << problem << "\n";
    std::exit(2);
  }
  InvalidFlag(program, *flag, problem);
}

bool IsSecretFlag(absl::string_view name) {
  return absl::StrContains(name, "password") || absl::StrContains(name, "secret") || absl::EndsWith(name, "_key");
}

void ValidateFlagsOrExit(absl::string_view program, std::initializer_list<IntFlagRange> ranges,
                         std::initializer_list<const char*> required) {
  // The flags of common/database_flags.h, which every program defines.
  const IntFlagRange shared[] = {{"db_port", 1, 65535}, {"db_pool_size", 1, 1000}};
  auto check_range = [program](const IntFlagRange& range) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(range.flag);
    if (flag == nullptr) return;
    absl::optional<int> value = flag->TryGet<int>();
    if (!value.has_value()) return;
    if (*value < range.min || *value > range.max) {
      InvalidFlag(program, *flag, absl::StrCat("must be from ", range.min, " to ", range.max));
    }
  };
  for (const IntFlagRange& range : shared) check_range(range);
  for (const IntFlagRange& range : ranges) check_range(range);

  for (const char* name : required) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag != nullptr && flag->CurrentValue().empty()) InvalidFlag(program, *flag, "must not be empty");
  }
  if (const absl::CommandLineFlag* flag = absl::FindCommandLineFlag("log_level"); flag != nullptr) {
    std::string level = flag->CurrentValue();
    if (spdlog::level::from_str(level) == spdlog::level::off && level != "off") {
      InvalidFlag(program, *flag, "use trace, debug, info, warn, error or off");
    }
  }
}

void LogEffectiveConfiguration(absl::string_view program) {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsProjectFlag(*flag)) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) { return a->Name() < b->Name(); });
  spdlog::info("{} effective configuration ({} flags):", program, flags.size());
  for (const absl::CommandLineFlag* flag : flags) {
    std::string value = flag->CurrentValue();
    if (IsSecretFlag(flag->Name()) && !value.empty()) value = "<redacted>";
    spdlog::info("config --{}={} ({})", flag->Name(), value, FlagSource(*flag));
  }
}

bool ConfigureLogging(const std::string& level) {
  spdlog::level::level_enum parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_logger_mt("crm");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  spdlog::debug("logging at level {}", level);
  return true;
}

void BlockShutdownSignals() {
  sigset_t signals = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

void WaitForShutdownSignal() {
  sigset_t signals = ShutdownSignals();
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("received {}; stopping", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
}

void ExitAfter(absl::Duration limit) {
  std::thread([limit] {
    absl::SleepFor(limit);
    spdlog::error("shutdown did not finish within {}; exiting now", absl::FormatDuration(limit));
    spdlog::default_logger()->flush();
    std::_Exit(1);
  }).detach();
}

void EnableHealthAndReflection() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
}

}  // namespace crm
