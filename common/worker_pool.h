// A fixed set of threads with a bounded queue, for blocking database work
// that must never run on gRPC's own threads. When the queue is full,
// TrySubmit fails at once so the caller can return RESOURCE_EXHAUSTED
// instead of queueing without limit.
#ifndef CRM_COMMON_WORKER_POOL_H_
#define CRM_COMMON_WORKER_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace crm {

class WorkerPool {
 public:
  WorkerPool(int threads, size_t max_queued);
  // Runs the tasks already queued, then joins the threads.
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; returns false without queueing when the queue is full or
  // the pool is stopping.
  bool TrySubmit(std::function<void()> task);

  size_t QueueDepth();

 private:
  void Loop();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
  }

  const size_t max_queued_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace crm

#endif  // CRM_COMMON_WORKER_POOL_H_
