// ThreadSanitizer and Debian's prebuilt Abseil: libabsl_synchronization is not built with
// -fsanitize=thread, so TSan sees neither side of an absl::Mutex and reports every access it
// guards as a race. This file, linked into every executable of a -DDSV3_TSAN=ON build, defines
// the Mutex entry points itself (the executable's definitions take precedence over the shared
// library's, for our code and for libgrpc alike), calls the library's through dlsym(RTLD_NEXT)
// and tells TSan what they do: a release before unlocking, an acquire after locking.
// Await* and CondVar::Wait* unlock and relock inside: release before, acquire after; the
// conditions of Await* and LockWhen* acquire before they read.
// (Checked: a counter incremented under an absl::Mutex by two threads is reported as a race
// without this file, and not with it; the same counter without the lock still is.)

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"

extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);

namespace {

template <typename Fn>
Fn Next(const char* mangled) {
  void* f = dlsym(RTLD_NEXT, mangled);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_mutex: %s not found in the shared Abseil\n", mangled);
    std::abort();
  }
  return reinterpret_cast<Fn>(f);
}

// Member functions called through pointers of these types (the `this` argument first).
using Void = void (*)(absl::Mutex*);
using Bool = bool (*)(absl::Mutex*);
using WithCond = void (*)(absl::Mutex*, const absl::Condition&);
using WithCondDuration = bool (*)(absl::Mutex*, const absl::Condition&, absl::Duration);
using WithCondTime = bool (*)(absl::Mutex*, const absl::Condition&, absl::Time);
using CvWait = void (*)(absl::CondVar*, absl::Mutex*);
using CvWaitDuration = bool (*)(absl::CondVar*, absl::Mutex*, absl::Duration);
using CvWaitTime = bool (*)(absl::CondVar*, absl::Mutex*, absl::Time);

// A Condition is evaluated inside the library, with the mutex held but no annotated Lock on
// the evaluating thread: evaluate it through a wrapper that acquires first.
struct AnnotatedCondition {
  const absl::Condition* cond;
  absl::Mutex* mu;
  static bool Eval(void* arg) {
    auto* self = static_cast<AnnotatedCondition*>(arg);
    // A critical section of its own: the library may unlock right after (to wait) without
    // passing through Unlock, so what the condition read is published here.
    __tsan_acquire(self->mu);
    const bool met = self->cond->Eval();
    __tsan_release(self->mu);
    return met;
  }
};

}  // namespace

// Debian's Abseil 20220623 names its inline namespace "debian3".
#define DSV3_MANGLED(name) "_ZN4absl7debian35Mutex" name
#define DSV3_MANGLED_CV(name) "_ZN4absl7debian37CondVar" name

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const auto real = Next<Void>(DSV3_MANGLED("4LockEv"));
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderLock() {
  static const auto real = Next<Void>(DSV3_MANGLED("10ReaderLockEv"));
  real(this);
  __tsan_acquire(this);
}

bool Mutex::TryLock() {
  static const auto real = Next<Bool>(DSV3_MANGLED("7TryLockEv"));
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static const auto real = Next<Bool>(DSV3_MANGLED("13ReaderTryLockEv"));
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Unlock() {
  static const auto real = Next<Void>(DSV3_MANGLED("6UnlockEv"));
  __tsan_release(this);
  real(this);
}

void Mutex::ReaderUnlock() {
  static const auto real = Next<Void>(DSV3_MANGLED("12ReaderUnlockEv"));
  __tsan_release(this);
  real(this);
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto real = Next<WithCond>(DSV3_MANGLED("8LockWhenERKNS0_9ConditionE"));
  AnnotatedCondition a{&cond, this};
  __tsan_release(this);  // publishes `a` to the unlocker that evaluates it
  real(this, absl::Condition(&AnnotatedCondition::Eval, &a));
  __tsan_acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real = Next<WithCond>(DSV3_MANGLED("14ReaderLockWhenERKNS0_9ConditionE"));
  AnnotatedCondition a{&cond, this};
  __tsan_release(this);  // publishes `a` to the unlocker that evaluates it
  real(this, absl::Condition(&AnnotatedCondition::Eval, &a));
  __tsan_acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real =
      Next<WithCondDuration>(DSV3_MANGLED("19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  AnnotatedCondition a{&cond, this};
  __tsan_release(this);  // publishes `a` to the unlocker that evaluates it
  const bool met = real(this, absl::Condition(&AnnotatedCondition::Eval, &a), timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real =
      Next<WithCondTime>(DSV3_MANGLED("20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  AnnotatedCondition a{&cond, this};
  __tsan_release(this);  // publishes `a` to the unlocker that evaluates it
  const bool met = real(this, absl::Condition(&AnnotatedCondition::Eval, &a), deadline);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Next<WithCondDuration>(
      DSV3_MANGLED("25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  AnnotatedCondition a{&cond, this};
  __tsan_release(this);  // publishes `a` to the unlocker that evaluates it
  const bool met = real(this, absl::Condition(&AnnotatedCondition::Eval, &a), timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real =
      Next<WithCondTime>(DSV3_MANGLED("26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  AnnotatedCondition a{&cond, this};
  __tsan_release(this);  // publishes `a` to the unlocker that evaluates it
  const bool met = real(this, absl::Condition(&AnnotatedCondition::Eval, &a), deadline);
  __tsan_acquire(this);
  return met;
}

void Mutex::Await(const Condition& cond) {
  static const auto real = Next<WithCond>(DSV3_MANGLED("5AwaitERKNS0_9ConditionE"));
  AnnotatedCondition a{&cond, this};  // before the release: the unlocker reads it
  __tsan_release(this);
  real(this, absl::Condition(&AnnotatedCondition::Eval, &a));
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real =
      Next<WithCondDuration>(DSV3_MANGLED("16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  AnnotatedCondition a{&cond, this};  // before the release: the unlocker reads it
  __tsan_release(this);
  const bool met = real(this, absl::Condition(&AnnotatedCondition::Eval, &a), timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static const auto real =
      Next<WithCondTime>(DSV3_MANGLED("17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  AnnotatedCondition a{&cond, this};  // before the release: the unlocker reads it
  __tsan_release(this);
  const bool met = real(this, absl::Condition(&AnnotatedCondition::Eval, &a), deadline);
  __tsan_acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  static const auto real = Next<CvWait>(DSV3_MANGLED_CV("4WaitEPNS0_5MutexE"));
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static const auto real =
      Next<CvWaitDuration>(DSV3_MANGLED_CV("15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE"));
  __tsan_release(mu);
  const bool timed_out = real(this, mu, timeout);
  __tsan_acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static const auto real =
      Next<CvWaitTime>(DSV3_MANGLED_CV("16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE"));
  __tsan_release(mu);
  const bool timed_out = real(this, mu, deadline);
  __tsan_acquire(mu);
  return timed_out;
}

ABSL_NAMESPACE_END
}  // namespace absl
