#include "common/health_monitor.h"

#include "common/logging.h"

namespace crm {

HealthMonitor::HealthMonitor(std::string name, grpc::HealthCheckServiceInterface* health,
                             std::function<bool()> probe, absl::Duration interval)
    : name_(std::move(name)), health_(health), probe_(std::move(probe)), interval_(interval) {
  thread_ = std::thread([this] { Run(); });
}

HealthMonitor::~HealthMonitor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void HealthMonitor::Run() {
  bool serving = true;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_)) return;
    }
    bool reachable = probe_();
    if (reachable == serving) continue;
    serving = reachable;
    health_->SetServingStatus(serving);
    if (serving) {
      spdlog::info("{}: database reachable again; health is SERVING", name_);
    } else {
      spdlog::warn("{}: database unreachable; health is NOT_SERVING until a probe succeeds", name_);
    }
  }
}

}  // namespace crm
