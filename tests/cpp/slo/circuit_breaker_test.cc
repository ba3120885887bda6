// Tests for CircuitBreaker in bastion/slo.h: every transition, with ManualClock.
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/slo.h"

namespace bastion {
namespace {

using State = CircuitBreaker::State;
constexpr int64_t kFast = kNsPerSecond / 100;  // 10 ms
constexpr int64_t kSlow = 10 * kNsPerSecond;

CircuitBreakerOptions SmallOptions() {
  CircuitBreakerOptions o;
  o.failure_rate_threshold_pct = 50;
  o.slow_call_duration_ns = kNsPerSecond;
  o.slow_call_rate_threshold_pct = 80;
  o.minimum_calls = 4;
  o.window_size = 10;
  o.open_duration_ns = 30 * kNsPerSecond;
  o.half_open_probes = 3;
  return o;
}

std::unique_ptr<CircuitBreaker> Make(const CircuitBreakerOptions& o = SmallOptions()) {
  auto b = CircuitBreaker::Create(o);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return std::move(*b);
}

// Opens `b` with failures at the clock's time.
void Trip(CircuitBreaker& b, const ManualClock& clock) {
  for (int i = 0; i < 4; ++i) b.Record(false, kFast, clock.NowNs());
  ASSERT_EQ(b.state(clock.NowNs()), State::kOpen);
}

TEST(CircuitBreaker, StaysClosedBelowMinimumCallsEvenIfAllFail) {
  ManualClock clock;
  auto b = Make();
  for (int i = 0; i < 3; ++i) b->Record(false, kFast, clock.NowNs());
  EXPECT_EQ(b->state(clock.NowNs()), State::kClosed);
  EXPECT_TRUE(b->Allow(clock.NowNs()));
  b->Record(false, kFast, clock.NowNs());  // 4th call: minimum reached, 100% failed
  EXPECT_EQ(b->state(clock.NowNs()), State::kOpen);
  EXPECT_FALSE(b->Allow(clock.NowNs()));
}

TEST(CircuitBreaker, ClosedToOpenAtTheFailureRateThreshold) {
  ManualClock clock;
  auto b = Make();
  for (int i = 0; i < 6; ++i) b->Record(true, kFast, clock.NowNs());
  for (int i = 0; i < 4; ++i) b->Record(false, kFast, clock.NowNs());  // 40%
  EXPECT_EQ(b->state(clock.NowNs()), State::kClosed);
  b->Record(false, kFast, clock.NowNs());  // window of 10 now has 5 failures: 50%
  EXPECT_EQ(b->state(clock.NowNs()), State::kOpen);
}

TEST(CircuitBreaker, SlidingWindowForgetsOldFailures) {
  ManualClock clock;
  auto b = Make();
  for (int i = 0; i < 4; ++i) b->Record(true, kFast, clock.NowNs());
  for (int i = 0; i < 3; ++i) b->Record(false, kFast, clock.NowNs());  // 3/7
  for (int i = 0; i < 20; ++i) b->Record(true, kFast, clock.NowNs());  // pushes them out
  for (int i = 0; i < 4; ++i) b->Record(false, kFast, clock.NowNs());  // 4/10
  EXPECT_EQ(b->state(clock.NowNs()), State::kClosed);
}

TEST(CircuitBreaker, ClosedToOpenAtTheSlowCallRateThreshold) {
  ManualClock clock;
  auto b = Make();
  for (int i = 0; i < 2; ++i) b->Record(true, kFast, clock.NowNs());
  for (int i = 0; i < 7; ++i) b->Record(true, kSlow, clock.NowNs());  // 7/9 = 78%
  EXPECT_EQ(b->state(clock.NowNs()), State::kClosed);
  b->Record(true, kNsPerSecond, clock.NowNs());  // exactly the slow duration: 8/10
  EXPECT_EQ(b->state(clock.NowNs()), State::kOpen);
}

TEST(CircuitBreaker, OpenToHalfOpenAfterTheOpenDuration) {
  ManualClock clock;
  auto b = Make();
  Trip(*b, clock);
  clock.Advance(30 * kNsPerSecond - 1);
  EXPECT_FALSE(b->Allow(clock.NowNs()));
  EXPECT_EQ(b->state(clock.NowNs()), State::kOpen);
  b->Record(false, kFast, clock.NowNs());  // a straggler while open: ignored
  clock.Advance(1);
  EXPECT_EQ(b->state(clock.NowNs()), State::kHalfOpen);
}

TEST(CircuitBreaker, HalfOpenAllowsOnlyTheProbes) {
  ManualClock clock;
  auto b = Make();
  Trip(*b, clock);
  clock.Advance(30 * kNsPerSecond);
  EXPECT_TRUE(b->Allow(clock.NowNs()));
  EXPECT_TRUE(b->Allow(clock.NowNs()));
  EXPECT_TRUE(b->Allow(clock.NowNs()));
  EXPECT_FALSE(b->Allow(clock.NowNs()));
  EXPECT_EQ(b->state(clock.NowNs()), State::kHalfOpen);
}

TEST(CircuitBreaker, HalfOpenToClosedWhenAllProbesSucceed) {
  ManualClock clock;
  auto b = Make();
  Trip(*b, clock);
  clock.Advance(30 * kNsPerSecond);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(b->Allow(clock.NowNs()));
  b->Record(true, kFast, clock.NowNs());
  b->Record(true, kSlow, clock.NowNs());  // 1/3 slow: under 80%
  EXPECT_EQ(b->state(clock.NowNs()), State::kHalfOpen);
  b->Record(true, kFast, clock.NowNs());
  EXPECT_EQ(b->state(clock.NowNs()), State::kClosed);
  EXPECT_TRUE(b->Allow(clock.NowNs()));
  // The window restarted empty: three failures are below minimum_calls.
  for (int i = 0; i < 3; ++i) b->Record(false, kFast, clock.NowNs());
  EXPECT_EQ(b->state(clock.NowNs()), State::kClosed);
}

TEST(CircuitBreaker, HalfOpenToOpenOnAFailedProbe) {
  ManualClock clock;
  auto b = Make();
  Trip(*b, clock);
  clock.Advance(30 * kNsPerSecond);
  ASSERT_TRUE(b->Allow(clock.NowNs()));
  b->Record(true, kFast, clock.NowNs());
  b->Record(false, kFast, clock.NowNs());
  EXPECT_EQ(b->state(clock.NowNs()), State::kOpen);
  EXPECT_FALSE(b->Allow(clock.NowNs()));
  clock.Advance(30 * kNsPerSecond - 1);  // the open period restarts at the failure
  EXPECT_EQ(b->state(clock.NowNs()), State::kOpen);
  clock.Advance(1);
  EXPECT_EQ(b->state(clock.NowNs()), State::kHalfOpen);
}

TEST(CircuitBreaker, HalfOpenToOpenWhenProbesAreTooSlow) {
  ManualClock clock;
  auto b = Make();
  Trip(*b, clock);
  clock.Advance(30 * kNsPerSecond);
  for (int i = 0; i < 3; ++i) b->Record(true, kSlow, clock.NowNs());  // 100% slow
  EXPECT_EQ(b->state(clock.NowNs()), State::kOpen);
}

TEST(CircuitBreaker, ConcurrentUseIsSafe) {
  ManualClock clock;
  auto b = Make();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10'000; ++i) {
        if (b->Allow(clock.NowNs())) b->Record((i + t) % 3 != 0, kFast, clock.NowNs());
        if (i % 100 == 0) clock.Advance(kNsPerSecond);
      }
    });
  }
  for (auto& th : threads) th.join();
  const State s = b->state(clock.NowNs());
  EXPECT_TRUE(s == State::kClosed || s == State::kOpen || s == State::kHalfOpen);
}

TEST(CircuitBreaker, OptionsValidateNamingTheField) {
  struct Case {
    const char* field;
    void (*mutate)(CircuitBreakerOptions&);
  };
  const Case cases[] = {
      {"failure_rate_threshold_pct", [](CircuitBreakerOptions& o) { o.failure_rate_threshold_pct = 0; }},
      {"failure_rate_threshold_pct", [](CircuitBreakerOptions& o) { o.failure_rate_threshold_pct = 101; }},
      {"slow_call_duration_ns", [](CircuitBreakerOptions& o) { o.slow_call_duration_ns = 0; }},
      {"slow_call_rate_threshold_pct", [](CircuitBreakerOptions& o) { o.slow_call_rate_threshold_pct = -1; }},
      {"window_size", [](CircuitBreakerOptions& o) { o.window_size = 0; }},
      {"minimum_calls", [](CircuitBreakerOptions& o) { o.minimum_calls = 11; }},
      {"open_duration_ns", [](CircuitBreakerOptions& o) { o.open_duration_ns = 0; }},
      {"half_open_probes", [](CircuitBreakerOptions& o) { o.half_open_probes = 0; }},
  };
  EXPECT_TRUE(SmallOptions().Validate().ok());
  EXPECT_TRUE(CircuitBreakerOptions{}.Validate().ok());
  for (const Case& c : cases) {
    CircuitBreakerOptions o = SmallOptions();
    c.mutate(o);
    auto b = CircuitBreaker::Create(o);
    ASSERT_FALSE(b.ok()) << c.field;
    EXPECT_TRUE(b.status().IsInvalidArgument()) << c.field;
    EXPECT_NE(b.status().message().find(c.field), std::string::npos)
        << c.field << ": " << b.status().ToString();
  }
}

}  // namespace
}  // namespace bastion
