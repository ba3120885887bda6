// SystemClock: the monotonic clock behind bastion/slo.h.
#include <chrono>

#include "bastion/slo.h"

namespace bastion {

int64_t SystemClock::NowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace bastion
