// Start-up and shutdown steps that both servers share: flags with
// environment fallback, logging, signal handling and the standard gRPC
// health and reflection services.
#ifndef CRM_COMMON_SERVER_SETUP_H_
#define CRM_COMMON_SERVER_SETUP_H_

#include <grpcpp/server.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/time/time.h"

namespace crm {

// Sets each flag that is not on the command line from the environment
// variable CRM_<FLAG NAME IN UPPER CASE>, then parses the command line, which
// wins. Exits with a message naming the variable when its value is invalid.
// Returns the positional arguments, the program name first.
std::vector<char*> ParseFlagsWithEnvironment(int argc, char** argv, absl::string_view usage);

// Allowed values of one integer flag, for ValidateFlagsOrExit.
struct IntFlagRange {
  const char* flag;
  int64_t min;
  int64_t max;
};

// Checks every named integer flag against its range, every flag in
// `required` for a non-empty value, and --log_level and the database flags
// that every program shares. On the first invalid value, prints one line
// naming the flag, the value and where it came from (command line or
// environment variable), and exits with status 2.
void ValidateFlagsOrExit(absl::string_view program, std::initializer_list<IntFlagRange> ranges,
                         std::initializer_list<const char*> required = {});

// Prints the line ValidateFlagsOrExit prints for the flag named `flag_name`
// and `problem`, and exits with status 2. For checks that involve more than
// one flag.
[[noreturn]] void ExitWithInvalidFlag(absl::string_view program, absl::string_view flag_name,
                                      absl::string_view problem);

// Returns whether a flag's value is a secret that must not be printed: its
// name contains "password" or "secret", or ends in "_key". Key files are
// named by path only, and their keys are never flags.
bool IsSecretFlag(absl::string_view name);

// Logs the value of every flag defined in this project's sources, one line
// per flag, in the form `config --name=value (source)`, where source is
// "default", "command line" or the environment variable's name. Values of
// secret flags (IsSecretFlag) are shown as "<redacted>" when set.
void LogEffectiveConfiguration(absl::string_view program);

// Configures the default spdlog logger: one line per event on stderr,
// ISO 8601 UTC time, the given level ("trace" ... "error", "off"). Returns
// false for an unknown level.
bool ConfigureLogging(const std::string& level);

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts
// later, so that WaitForShutdownSignal can receive them. Call first in main.
void BlockShutdownSignals();

// Blocks until SIGTERM or SIGINT arrives and logs it. The caller then stops
// its server through the server's own Shutdown, which knows what must stop
// first (health probes, open streams).
void WaitForShutdownSignal();

// Time after the shutdown grace period at which ExitAfter ends a process
// whose calls in flight are still running.
inline constexpr absl::Duration kShutdownHardStopMargin = absl::Seconds(5);

// Starts a thread that logs an error and ends the process with exit code 1
// if it is still running `limit` from now. A shutdown calls it so that the
// process exits in bounded time even when a call in flight is stuck, for
// example on a database lock. Committed writes are not affected.
void ExitAfter(absl::Duration limit);

// Enables the grpc.health.v1 and server reflection services; call before
// building any server.
void EnableHealthAndReflection();

}  // namespace crm

#endif  // CRM_COMMON_SERVER_SETUP_H_
