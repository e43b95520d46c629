// Keeps a server's grpc.health.v1 status in step with its database: the
// server reports NOT_SERVING while a periodic database probe fails, so load
// balancers and Kubernetes readiness probes move traffic elsewhere.
#ifndef CRM_COMMON_HEALTH_MONITOR_H_
#define CRM_COMMON_HEALTH_MONITOR_H_

#include <grpcpp/health_check_service_interface.h>

#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm {

class HealthMonitor {
 public:
  // Probes with `probe` every `interval` and sets every service of
  // `health` to SERVING or NOT_SERVING accordingly. `name` labels the logs.
  HealthMonitor(std::string name, grpc::HealthCheckServiceInterface* health, std::function<bool()> probe,
                absl::Duration interval = absl::Seconds(1));
  // Stops probing; the health status stays as last set.
  ~HealthMonitor();

  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

 private:
  void Run();

  const std::string name_;
  grpc::HealthCheckServiceInterface* const health_;
  const std::function<bool()> probe_;
  const absl::Duration interval_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace crm

#endif  // CRM_COMMON_HEALTH_MONITOR_H_
