// Time, injectable: every part of Bastion that reads "now" (budgets, SLOs,
// the policy engine's rate limits and counters, the guard's records and
// latencies) takes it from a Clock, so one clock drives them all and tests
// move time by hand.
//
//   auto clock = std::make_shared<bastion::ManualClock>(noon_ns);
//   bastion::GuardOptions options;
//   options.clock = clock;          // budgets, SLOs, policies, records
//   ...
//   clock->Advance(30 * bastion::kNsPerSecond);
//
// Timestamps are int64 nanoseconds. WallClock counts from the Unix epoch
// (UTC) and may jump with NTP; SystemClock is monotonic from an arbitrary
// epoch. An object that compares times must use one clock for all of them.
//
// Thread safety: every Clock may be read from any number of threads at once.
#ifndef BASTION_CLOCK_H_
#define BASTION_CLOCK_H_

#include <atomic>
#include <cstdint>

namespace bastion {

constexpr int64_t kNsPerSecond = 1'000'000'000;
constexpr int64_t kNsPerMinute = 60 * kNsPerSecond;
constexpr int64_t kNsPerHour = 60 * kNsPerMinute;
constexpr int64_t kNsPerDay = 24 * kNsPerHour;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowNs() const = 0;
};

// std::chrono::steady_clock: monotonic, never jumps with NTP or DST.
class SystemClock final : public Clock {
 public:
  int64_t NowNs() const override;
};
// The same, as a function.
int64_t SteadyNowNs();

// std::chrono::system_clock: UTC wall time in ns since the Unix epoch, for
// calendar windows (budgets, per-day cost) and records. It can jump (NTP).
class WallClock final : public Clock {
 public:
  int64_t NowNs() const override;
};
// The same, as a function.
int64_t WallNowNs();

// A clock that moves only when told to. Thread-safe (atomic).
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ns = 0) : now_ns_(start_ns) {}
  int64_t NowNs() const override { return now_ns_.load(std::memory_order_relaxed); }
  void Advance(int64_t ns) { now_ns_.fetch_add(ns, std::memory_order_relaxed); }
  void Set(int64_t now_ns) { now_ns_.store(now_ns, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> now_ns_;
};

}  // namespace bastion

#endif  // BASTION_CLOCK_H_
