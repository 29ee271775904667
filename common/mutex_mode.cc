#include "common/mutex_mode.h"

#include "absl/synchronization/mutex.h"

namespace dsv3 {

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace dsv3
