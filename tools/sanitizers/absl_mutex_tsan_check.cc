// Checks absl_mutex_tsan.cc under ThreadSanitizer: two threads update a
// counter under an absl::Mutex, and with the argument "racy" the main
// thread reads it without the lock. The tsan preset requires a clean run
// without the argument (the annotations make the locking visible) and a
// data race report with it (the annotations hide no real race).
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace {

absl::Mutex mu;
int counter ABSL_GUARDED_BY(mu) = 0;
bool writer_done ABSL_GUARDED_BY(mu) = false;
// Set once the writer has incremented. Relaxed atomics order nothing for
// TSan, so waiting on it makes the racy reads overlap the writes without
// hiding the race. Without the wait, the reads sometimes all ran before the
// writer started, and TSan missed the race in 9 of 600 runs.
std::atomic<bool> writer_started{false};

}  // namespace

int main(int argc, char** argv) {
  bool racy = argc > 1 && std::strcmp(argv[1], "racy") == 0;
  std::thread writer([] {
    for (int i = 0; i < 20000; ++i) {
      absl::MutexLock lock(&mu);
      ++counter;
      writer_started.store(true, std::memory_order_relaxed);
    }
    absl::MutexLock lock(&mu);
    writer_done = true;
  });

  int seen = 0;
  if (racy) {
    while (!writer_started.load(std::memory_order_relaxed)) std::this_thread::yield();
  }
  for (int i = 0; i < 20000; ++i) {
    if (racy) {
      seen = *const_cast<volatile int*>(&counter);
    } else {
      absl::MutexLock lock(&mu);
      seen = counter;
    }
  }
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&writer_done));
    seen = counter;
  }
  writer.join();
  std::printf("counter %d\n", seen);
  return seen == 20000 ? 0 : 1;
}
