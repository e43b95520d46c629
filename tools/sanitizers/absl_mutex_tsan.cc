// ThreadSanitizer annotations for Debian's prebuilt abseil Mutex and CondVar.
//
// Debian's libabsl_synchronization is not built with -fsanitize=thread, so
// ThreadSanitizer cannot see that an absl::Mutex orders the accesses it
// guards: its fast path is an atomic in uninstrumented code and its slow
// path a futex. Every field under ABSL_GUARDED_BY would be reported as a
// data race. A test binary of the tsan preset links this file (and exports
// its symbols with -rdynamic), so its definitions interpose on the
// library's: each one tells ThreadSanitizer about the lock operation
// through the annotations in <sanitizer/tsan_interface.h> and calls the
// library's own function, found with dlsym(RTLD_NEXT). gRPC's mutexes are
// absl::Mutex too and go through the same definitions.
//
// While a thread is inside Await, LockWhen or CondVar::Wait, the library
// evaluates conditions with the lock held but the annotation released, so
// those reads and writes are ignored. A race inside a condition function
// goes unreported; every other access is checked.
//
// NOTE: the symbol names are those of Debian 12's abseil 20220623 (inline
// namespace debian3); another abseil needs this file checked again.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"

extern "C" {
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
void AnnotateIgnoreWritesBegin(const char* file, int line);
void AnnotateIgnoreWritesEnd(const char* file, int line);
}

namespace {

template <typename Function>
Function Real(const char* mangled_name) {
  void* symbol = dlsym(RTLD_NEXT, mangled_name);
  if (symbol == nullptr) {
    std::fprintf(stderr, "absl_mutex_tsan: %s not found in the loaded abseil\n", mangled_name);
    std::abort();
  }
  return reinterpret_cast<Function>(symbol);
}

// Some functions call others of this file through the library's PLT, such
// as CondVar::WaitWithTimeout calling WaitWithDeadline. Only the outermost
// call on a thread is annotated.
thread_local int annotated_calls = 0;

// Runs `call` annotated by `before` and `after` unless this thread is
// already inside an annotated call.
template <typename Before, typename Call, typename After>
auto Annotated(Before before, Call call, After after) {
  if (annotated_calls > 0) return call();
  ++annotated_calls;
  before();
  auto result = call();
  after();
  --annotated_calls;
  return result;
}

void IgnoreAccessesBegin() {
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
}

void IgnoreAccessesEnd() {
  AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
}

// Runs `wait`, which releases `mu` and holds it again when it returns,
// with accesses ignored in between.
template <typename Wait>
auto AnnotatedWait(void* mu, Wait wait) {
  return Annotated(
      [mu] {
        __tsan_mutex_pre_unlock(mu, 0);
        __tsan_mutex_post_unlock(mu, 0);
        IgnoreAccessesBegin();
      },
      wait,
      [mu] {
        IgnoreAccessesEnd();
        __tsan_mutex_pre_lock(mu, 0);
        __tsan_mutex_post_lock(mu, 0, 0);
      });
}

// Runs `lock_when`, which acquires `mu` once a condition holds, with
// accesses ignored until it returns.
template <typename LockWhen>
auto AnnotatedLockWhen(void* mu, unsigned flags, LockWhen lock_when) {
  return Annotated(
      [mu, flags] {
        __tsan_mutex_pre_lock(mu, flags);
        IgnoreAccessesBegin();
      },
      lock_when,
      [mu, flags] {
        IgnoreAccessesEnd();
        __tsan_mutex_post_lock(mu, flags, 0);
      });
}

// Runs `lock`, which acquires `mu` with `flags`.
template <typename Lock>
auto AnnotatedLock(void* mu, unsigned flags, Lock lock) {
  return Annotated([mu, flags] { __tsan_mutex_pre_lock(mu, flags); }, lock,
                   [mu, flags] { __tsan_mutex_post_lock(mu, flags, 0); });
}

// Runs `unlock`, which releases `mu` held with `flags`.
template <typename Unlock>
auto AnnotatedUnlock(void* mu, unsigned flags, Unlock unlock) {
  return Annotated([mu, flags] { __tsan_mutex_pre_unlock(mu, flags); }, unlock,
                   [mu, flags] { __tsan_mutex_post_unlock(mu, flags); });
}

// Runs `try_lock`, which returns whether it acquired `mu`.
template <typename TryLock>
bool AnnotatedTryLock(void* mu, unsigned flags, TryLock try_lock) {
  if (annotated_calls > 0) return try_lock();
  ++annotated_calls;
  flags |= __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(mu, flags);
  bool locked = try_lock();
  __tsan_mutex_post_lock(mu, flags | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  --annotated_calls;
  return locked;
}

}  // namespace

namespace absl {

void Mutex::Lock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex4LockEv");
  AnnotatedLock(this, 0, [this] {
    real(this);
    return true;
  });
}

void Mutex::Unlock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex6UnlockEv");
  AnnotatedUnlock(this, 0, [this] {
    real(this);
    return true;
  });
}

bool Mutex::TryLock() {
  static auto real = Real<bool (*)(Mutex*)>("_ZN4absl7debian35Mutex7TryLockEv");
  return AnnotatedTryLock(this, 0, [this] { return real(this); });
}

void Mutex::ReaderLock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex10ReaderLockEv");
  AnnotatedLock(this, __tsan_mutex_read_lock, [this] {
    real(this);
    return true;
  });
}

void Mutex::ReaderUnlock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex12ReaderUnlockEv");
  AnnotatedUnlock(this, __tsan_mutex_read_lock, [this] {
    real(this);
    return true;
  });
}

bool Mutex::ReaderTryLock() {
  static auto real = Real<bool (*)(Mutex*)>("_ZN4absl7debian35Mutex13ReaderTryLockEv");
  return AnnotatedTryLock(this, __tsan_mutex_read_lock, [this] { return real(this); });
}

void Mutex::Await(const Condition& cond) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>("_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  AnnotatedWait(this, [&] {
    real(this, cond);
    return true;
  });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return AnnotatedWait(this, [&] { return real(this, cond, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return AnnotatedWait(this, [&] { return real(this, cond, deadline); });
}

void Mutex::LockWhen(const Condition& cond) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>("_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  AnnotatedLockWhen(this, 0, [&] {
    real(this, cond);
    return true;
  });
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return AnnotatedLockWhen(this, 0, [&] { return real(this, cond, timeout); });
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return AnnotatedLockWhen(this, 0, [&] { return real(this, cond, deadline); });
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static auto real =
      Real<void (*)(Mutex*, const Condition&)>("_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  AnnotatedLockWhen(this, __tsan_mutex_read_lock, [&] {
    real(this, cond);
    return true;
  });
}

void CondVar::Wait(Mutex* mu) {
  static auto real = Real<void (*)(CondVar*, Mutex*)>("_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  AnnotatedWait(mu, [&] {
    real(this, mu);
    return true;
  });
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Duration)>(
      "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  return AnnotatedWait(mu, [&] { return real(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Time)>(
      "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  return AnnotatedWait(mu, [&] { return real(this, mu, deadline); });
}

}  // namespace absl
