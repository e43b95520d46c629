// A background thread that runs one task every interval, early when woken,
// and never again once stopped. The CRM server's reports to the auth
// service (token uses, the API call log), its purge of old request ids and
// the auth server's API call purge run on it.
//
// The task runs on the thread only, so runs never overlap, but a caller
// that also runs the same work directly (a Flush() called by a test)
// must serialize it with the task itself.
#ifndef CRM_COMMON_PERIODIC_TASK_H_
#define CRM_COMMON_PERIODIC_TASK_H_

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm {

class PeriodicTask {
 public:
  // `task` runs once per `interval`, measured from the end of the previous
  // run, or sooner after Wake().
  PeriodicTask(absl::Duration interval, std::function<void()> task)
      : interval_(interval), task_(std::move(task)) {}
  // Stops the thread; see Stop().
  ~PeriodicTask() { Stop(); }

  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // Starts the thread. An interval of zero or less starts none, so the
  // task runs only when the owner runs it itself.
  void Start();

  // Makes the thread run the task now instead of at the end of the
  // interval. Cheap enough for a request path: one lock, no allocation.
  void Wake();

  // Lets a running task finish, then joins the thread. Safe to call more
  // than once and before Start().
  void Stop();

 private:
  void Run();
  bool Due() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return woken_ || stopping_; }

  const absl::Duration interval_;
  const std::function<void()> task_;
  mutable absl::Mutex mu_;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace crm

#endif  // CRM_COMMON_PERIODIC_TASK_H_
