// SystemClock (monotonic) and WallClock (UTC) behind bastion/clock.h.
#include <chrono>

#include "bastion/clock.h"

namespace bastion {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t SystemClock::NowNs() const { return SteadyNowNs(); }

int64_t WallNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t WallClock::NowNs() const { return WallNowNs(); }

}  // namespace bastion
