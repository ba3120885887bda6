// Tests for ErrorBudget and BurnRateAlerter in bastion/slo.h. Traffic is
// simulated minute by minute with explicit timestamps: days of traffic run in
// milliseconds, and firing times are asserted to the bucket.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/slo.h"

namespace bastion {
namespace {

std::unique_ptr<ErrorBudget> MakeBudget(SloOptions o = {}) {
  auto b = ErrorBudget::Create(o);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return std::move(*b);
}

TEST(ErrorBudget, CountsEventsErrorsAndExcludedClasses) {
  SloOptions o;
  o.excluded_error_classes = {"client_cancelled"};
  auto b = MakeBudget(o);
  ManualClock clock(10 * kNsPerDay);
  for (int i = 0; i < 997; ++i) b->Record(true, "", clock.NowNs());
  b->Record(false, "timeout", clock.NowNs());
  b->Record(false, "", clock.NowNs());
  b->Record(false, "client_cancelled", clock.NowNs());  // not part of the SLI
  b->Record(true, "client_cancelled", clock.NowNs());   // a success is a success
  Totals t = b->Window(kNsPerHour, clock.NowNs());
  EXPECT_EQ(t.events, 1000u);
  EXPECT_EQ(t.errors, 2u);
  EXPECT_EQ(t.excluded, 1u);
  EXPECT_DOUBLE_EQ(t.ErrorRate(), 0.002);
  EXPECT_NEAR(b->BurnRate(kNsPerHour, clock.NowNs()), 2.0, 1e-9);
  EXPECT_NEAR(b->BudgetRemaining(clock.NowNs()), -1.0, 1e-9);  // twice overspent
}

TEST(ErrorBudget, BudgetRemainingIsOneWhenUntouched) {
  auto b = MakeBudget();
  EXPECT_EQ(b->BudgetRemaining(0), 1.0);
  b->RecordMany(10'000, 0, "", 0);
  EXPECT_EQ(b->BudgetRemaining(0), 1.0);
  b->RecordMany(0, 5, "boom", kNsPerMinute);
  EXPECT_NEAR(b->BudgetRemaining(kNsPerMinute), 1.0 - 5 / (0.001 * 10'005), 1e-9);
  EXPECT_EQ(b->BurnRate(kNsPerHour, 0), 0.0);  // the errors are later than `now`
}

TEST(ErrorBudget, TrailingWindowsAreWholeBucketsIncludingTheCurrentOne) {
  auto b = MakeBudget();  // 1-minute buckets
  const int64_t t0 = 5 * kNsPerDay;
  for (int m = 0; m < 10; ++m) b->RecordMany(99, 1, "e", t0 + m * kNsPerMinute + kNsPerSecond);
  const int64_t now = t0 + 9 * kNsPerMinute + 59 * kNsPerSecond;  // end of minute 9
  EXPECT_EQ(b->Window(kNsPerMinute, now).events, 100u);
  EXPECT_EQ(b->Window(5 * kNsPerMinute, now).errors, 5u);
  EXPECT_EQ(b->Window(5 * kNsPerMinute - 1, now).errors, 5u);  // rounds up to whole buckets
  EXPECT_EQ(b->Window(kNsPerHour, now).errors, 10u);
  EXPECT_EQ(b->Window(0, now).errors, 1u);  // clamped to one bucket
  // An hour later the minute-9 bucket is 60 buckets back: out of a 1h window.
  EXPECT_EQ(b->Window(kNsPerHour, now + kNsPerHour).errors, 0u);
  EXPECT_EQ(b->Window(kNsPerHour + kNsPerMinute, now + kNsPerHour).errors, 1u);
}

TEST(ErrorBudget, RingForgetsEventsOlderThanTheWindowAndDropsVeryLateOnes) {
  SloOptions o;
  o.window_ns = kNsPerHour;
  o.bucket_ns = 5 * kNsPerMinute;  // 12 slots
  auto b = MakeBudget(o);
  b->RecordMany(0, 3, "e", 0);
  EXPECT_EQ(b->Window(kNsPerHour, 0).errors, 3u);
  EXPECT_EQ(b->Window(kNsPerHour, kNsPerHour - 1).errors, 3u);
  EXPECT_EQ(b->Window(kNsPerHour, kNsPerHour).errors, 0u);  // slot reused by no one, but stale
  b->RecordMany(0, 1, "e", kNsPerHour);                      // reuses slot 0
  b->RecordMany(0, 7, "e", 0);                               // too late: dropped
  b->RecordMany(0, 2, "e", kNsPerHour - kNsPerMinute);       // late but in range: counted
  EXPECT_EQ(b->Window(kNsPerHour, kNsPerHour).errors, 3u);
}

TEST(ErrorBudget, OptionsValidateNamingTheField) {
  struct Case {
    const char* field;
    SloOptions options;
  };
  SloOptions target, bucket, window, multiple, classes;
  target.target = 1.0;
  bucket.bucket_ns = 0;
  window.window_ns = 0;
  multiple.window_ns = kNsPerHour + 1;
  classes.excluded_error_classes = {"ok", ""};
  const Case cases[] = {{"target", target},
                        {"bucket_ns", bucket},
                        {"window_ns", window},
                        {"window_ns", multiple},
                        {"excluded_error_classes[1]", classes}};
  for (const Case& c : cases) {
    auto b = ErrorBudget::Create(c.options);
    ASSERT_FALSE(b.ok()) << c.field;
    EXPECT_TRUE(b.status().IsInvalidArgument()) << c.field;
    EXPECT_NE(b.status().message().find(c.field), std::string::npos)
        << c.field << ": " << b.status().ToString();
  }
}

// --- burn-rate alerts ---

TEST(BurnRateAlerter, RulesValidateAgainstTheSlo) {
  auto b = MakeBudget();
  EXPECT_TRUE(BurnRateAlerter::Create(b.get(), DefaultBurnRateRules()).ok());
  EXPECT_FALSE(BurnRateAlerter::Create(nullptr, DefaultBurnRateRules()).ok());
  auto rules = DefaultBurnRateRules();
  rules[2].short_window_ns = rules[2].long_window_ns;
  auto a = BurnRateAlerter::Create(b.get(), rules);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("rules[2]: short_window_ns"), std::string::npos)
      << a.status().ToString();
  rules = DefaultBurnRateRules();
  rules[0].long_window_ns = 31 * kNsPerDay;
  a = BurnRateAlerter::Create(b.get(), rules);
  EXPECT_NE(a.status().message().find("rules[0]: long_window_ns"), std::string::npos);
  rules = DefaultBurnRateRules();
  rules[3].burn_rate = 0;
  a = BurnRateAlerter::Create(b.get(), rules);
  EXPECT_NE(a.status().message().find("rules[3]: burn_rate"), std::string::npos);
  rules[3] = BurnRateRule{};
  a = BurnRateAlerter::Create(b.get(), rules);
  EXPECT_NE(a.status().message().find("rules[3]: name"), std::string::npos);
}

// A 99.9% / 30-day SLO with the default rules, fed 2000 events a minute.
// Minute m is recorded and evaluated at m:30, so every window is whole minutes.
class BurnSim {
 public:
  static constexpr uint64_t kPerMinute = 2000;

  BurnSim() : budget_(MakeBudget()) {
    auto a = BurnRateAlerter::Create(budget_.get(), DefaultBurnRateRules());
    EXPECT_TRUE(a.ok());
    alerter_ = std::make_unique<BurnRateAlerter>(std::move(*a));
  }

  // `minutes` minutes with `errors` failures out of kPerMinute each.
  void Run(int minutes, uint64_t errors) {
    for (int i = 0; i < minutes; ++i, ++minute_) {
      const int64_t now = minute_ * kNsPerMinute + 30 * kNsPerSecond;
      budget_->RecordMany(kPerMinute - errors, errors, "server", now);
      std::vector<std::string> names;
      for (const FiringAlert& a : alerter_->Evaluate(now)) names.push_back(a.name);
      firing_.push_back(names);
    }
  }

  int minute() const { return static_cast<int>(minute_); }

  // The minutes at which `rule` fired, as [first, last] runs.
  std::vector<std::pair<int, int>> Firing(const std::string& rule) const {
    std::vector<std::pair<int, int>> runs;
    for (int m = 0; m < static_cast<int>(firing_.size()); ++m) {
      bool on = false;
      for (const auto& n : firing_[m]) on = on || n == rule;
      if (!on) continue;
      if (!runs.empty() && runs.back().second == m - 1) {
        runs.back().second = m;
      } else {
        runs.push_back({m, m});
      }
    }
    return runs;
  }

  bool AnyFired() const {
    for (const auto& f : firing_) {
      if (!f.empty()) return true;
    }
    return false;
  }

 private:
  std::unique_ptr<ErrorBudget> budget_;
  std::unique_ptr<BurnRateAlerter> alerter_;
  int64_t minute_ = 0;
  std::vector<std::vector<std::string>> firing_;
};

using Runs = std::vector<std::pair<int, int>>;
constexpr int kDay = 1440;  // minutes

TEST(BurnRateAlerter, SteadyHalfBudgetBurnFiresNothing) {
  BurnSim sim;
  sim.Run(4 * kDay, 1);  // 0.05% errors: burn rate 0.5
  EXPECT_FALSE(sim.AnyFired());
}

TEST(BurnRateAlerter, TenMinuteTwoPercentBurstIsTooSmallToPage) {
  // 2% for 10 minutes spends 0.3% of a 30-day budget: the 1h burn peaks at
  // (50 + 10 x 40) / 120 = 3.75, far below 14.4. The long window exists so that
  // a blip like this does not page anyone.
  BurnSim sim;
  sim.Run(3 * kDay, 1);
  sim.Run(10, 40);
  sim.Run(2 * 60, 1);
  EXPECT_FALSE(sim.AnyFired());
}

TEST(BurnRateAlerter, TenMinuteTenPercentBurstPagesAndClearsFiveMinutesAfter) {
  BurnSim sim;
  sim.Run(3 * kDay, 1);
  const int start = sim.minute();
  sim.Run(10, 200);  // 10%: burn rate 100
  sim.Run(3 * 60, 1);
  // 1h burn after t burst minutes: (60 - t + 200 t) / 120 > 14.4 from t = 9.
  // The 5m window is above 14.4 while any burst minute is in it: the burst's
  // last minute (start + 9) leaves it at start + 14.
  EXPECT_EQ(sim.Firing("page-1h"), (Runs{{start + 8, start + 13}}));
  EXPECT_EQ(sim.Firing("page-6h"), Runs{});    // 6h burn peaks at 3.3
  EXPECT_EQ(sim.Firing("ticket-1d"), Runs{});
  EXPECT_EQ(sim.Firing("ticket-3d"), Runs{});
}

TEST(BurnRateAlerter, HourLongTwoPercentBurstPagesOnceTheLongWindowCrosses) {
  BurnSim sim;
  sim.Run(3 * kDay, 1);
  const int start = sim.minute();
  sim.Run(60, 40);  // 2%: burn rate 20
  sim.Run(3 * 60, 1);
  // 1h burn after t burst minutes: (60 + 39 t) / 120 > 14.4 from t = 43.
  // After the burst, the 5m burn with j baseline minutes is (200 - 39 j) / 10:
  // 16.1 at j = 1, 12.2 at j = 2.
  EXPECT_EQ(sim.Firing("page-1h"), (Runs{{start + 42, start + 60}}));
  EXPECT_EQ(sim.Firing("page-6h"), Runs{});
  EXPECT_EQ(sim.Firing("ticket-1d"), Runs{});
  EXPECT_EQ(sim.Firing("ticket-3d"), Runs{});
}

TEST(BurnRateAlerter, SlowBurnRaisesTicketsOnly) {
  BurnSim sim;
  const int baseline = kDay + 10;  // 1450 minutes
  sim.Run(baseline, 1);
  sim.Run(2 * kDay, 8);  // 0.4%: burn rate 4, for two days
  // 3d window (holding all data): (1450 + 8 t) / (2 (1450 + t)) > 1 from t = 242;
  // its 6h window is above 1 from t = 52.
  const Runs ticket3d = sim.Firing("ticket-3d");
  ASSERT_EQ(ticket3d.size(), 1u);
  EXPECT_EQ(ticket3d[0], (std::pair<int, int>{baseline + 241, sim.minute() - 1}));
  // 1d window: (1440 + 7 t) / 2880 > 3 from t = 1029; its 2h window is at 4.
  const Runs ticket1d = sim.Firing("ticket-1d");
  ASSERT_EQ(ticket1d.size(), 1u);
  EXPECT_EQ(ticket1d[0], (std::pair<int, int>{baseline + 1028, sim.minute() - 1}));
  EXPECT_EQ(sim.Firing("page-1h"), Runs{});
  EXPECT_EQ(sim.Firing("page-6h"), Runs{});
}

}  // namespace
}  // namespace bastion
