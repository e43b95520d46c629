// Start-up and shutdown steps that both servers share: flags with
// environment fallback, logging, signal handling and the standard gRPC
// health and reflection services.
#ifndef CRM_COMMON_SERVER_SETUP_H_
#define CRM_COMMON_SERVER_SETUP_H_

#include <grpcpp/server.h>

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
