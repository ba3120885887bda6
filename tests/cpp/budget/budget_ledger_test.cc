// Tests for budget.h: windows, spec validation, reserve/settle/release,
// alerts, and the concurrency guarantee.
#include "bastion/budget.h"

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "budget/civil.h"

namespace bastion {
namespace {

constexpr int64_t kSecond = kNanosPerSecond;

// UTC nanoseconds of a UTC civil time.
int64_t Utc(int64_t y, int m, int d, int hh = 0, int mm = 0, int ss = 0) {
  return DaysFromCivil(y, m, d) * kNanosPerDay + ((hh * 60 + mm) * 60 + ss) * kSecond;
}

// A ledger on a clock the test moves by hand.
struct Fixture {
  std::atomic<int64_t> now{Utc(2026, 11, 21, 12)};
  BudgetLedger ledger{[this] { return now.load(); }};
};

BudgetSpec Spec(std::string id, int64_t limit, Window window = Window::PerRun()) {
  BudgetSpec s;
  s.id = std::move(id);
  s.scope = {Scope::Kind::kUser, ""};
  s.limit_nanousd = limit;
  s.window = std::move(window);
  return s;
}

// --- windows ---

TEST(BudgetWindow, CalendarBoundsAtExactBoundaries) {
  auto tokyo = FixedOffset::Hours(9);
  auto ny = FixedOffset::Hours(-5);
  struct Case {
    const char* name;
    Window window;
    int64_t now;
    int64_t start;
    int64_t end;
  } cases[] = {
      // 2026-11-21 00:00 +09:00 is 2026-11-20 15:00Z.
      {"daily +09 last ns of day", Window::Daily(tokyo), Utc(2026, 11, 21, 15) - 1,
       Utc(2026, 11, 20, 15), Utc(2026, 11, 21, 15)},
      {"daily +09 first ns of next day", Window::Daily(tokyo), Utc(2026, 11, 21, 15),
       Utc(2026, 11, 21, 15), Utc(2026, 11, 22, 15)},
      {"daily UTC midnight", Window::Daily(), Utc(2026, 11, 21), Utc(2026, 11, 21),
       Utc(2026, 11, 22)},
      {"daily -05 before local midnight", Window::Daily(ny), Utc(2026, 11, 21, 4, 59, 59),
       Utc(2026, 11, 20, 5), Utc(2026, 11, 21, 5)},
      // Monday 2026-11-23 00:00 +09:00 is Sunday 2026-11-22 15:00Z.
      {"weekly +09 last ns of Sunday", Window::Weekly(tokyo), Utc(2026, 11, 22, 15) - 1,
       Utc(2026, 11, 15, 15), Utc(2026, 11, 22, 15)},
      {"weekly +09 Monday start", Window::Weekly(tokyo), Utc(2026, 11, 22, 15),
       Utc(2026, 11, 22, 15), Utc(2026, 11, 29, 15)},
      {"weekly UTC mid-week", Window::Weekly(), Utc(2026, 11, 26, 8), Utc(2026, 11, 23),
       Utc(2026, 11, 30)},
      {"weekly across year end", Window::Weekly(), Utc(2027, 1, 1), Utc(2026, 12, 28),
       Utc(2027, 1, 4)},
      // 2026-12-01 00:00 +09:00 is 2026-11-30 15:00Z.
      {"monthly +09 last ns of November", Window::Monthly(tokyo), Utc(2026, 11, 30, 15) - 1,
       Utc(2026, 10, 31, 15), Utc(2026, 11, 30, 15)},
      {"monthly +09 December start", Window::Monthly(tokyo), Utc(2026, 11, 30, 15),
       Utc(2026, 11, 30, 15), Utc(2026, 12, 31, 15)},
      {"monthly leap February", Window::Monthly(), Utc(2024, 2, 29, 23, 59, 59),
       Utc(2024, 2, 1), Utc(2024, 3, 1)},
      {"monthly December to January", Window::Monthly(), Utc(2026, 12, 31, 23),
       Utc(2026, 12, 1), Utc(2027, 1, 1)},
      {"daily before 1970", Window::Daily(), Utc(1969, 12, 31, 12), Utc(1969, 12, 31),
       Utc(1970, 1, 1)},
  };
  for (const Case& c : cases) {
    WindowBounds b = c.window.BoundsAt(c.now);
    EXPECT_EQ(b.start_ns, c.start) << c.name;
    EXPECT_EQ(b.end_ns, c.end) << c.name;
  }
}

TEST(BudgetWindow, NamesKindAndZone) {
  EXPECT_EQ(Window::Daily(FixedOffset::Hours(9)).ToString(), "daily +09:00");
  EXPECT_EQ(Window::Weekly().ToString(), "weekly UTC");
  EXPECT_EQ(Window::Monthly(FixedOffset::Hours(-5)).ToString(), "monthly -05:00");
  EXPECT_EQ(Window::Rolling(3600 * kSecond).ToString(), "rolling 3600s");
  EXPECT_EQ(Window::PerRun().ToString(), "per-run");
  auto india = FixedOffset::Create(5 * 3600 + 1800);
  ASSERT_TRUE(india.ok());
  EXPECT_EQ((*india)->Name(), "+05:30");
  EXPECT_TRUE(FixedOffset::Create(19 * 3600).status().IsInvalidArgument());
}

// --- spec validation ---

TEST(BudgetSpecValidation, ErrorsNameTheField) {
  struct Case {
    const char* field;
    void (*mutate)(BudgetSpec&);
  } cases[] = {
      {"id", [](BudgetSpec& s) { s.id = ""; }},
      {"scope.key", [](BudgetSpec& s) { s.scope = {Scope::Kind::kGlobal, "x"}; }},
      {"limit_nanousd", [](BudgetSpec& s) { s.limit_nanousd = 0; }},
      {"limit_nanousd", [](BudgetSpec& s) { s.limit_nanousd = -5; }},
      {"reserve_percent", [](BudgetSpec& s) { s.reserve_percent = 101; }},
      {"reserve_percent", [](BudgetSpec& s) { s.reserve_percent = -1; }},
      {"window.duration_ns", [](BudgetSpec& s) { s.window = Window::Rolling(0); }},
      {"window.duration_ns", [](BudgetSpec& s) { s.window.duration_ns = 5; }},
      {"thresholds[1].percent",
       [](BudgetSpec& s) { s.thresholds = {{50}, {0}}; }},
      {"thresholds[0].cooldown_ns",
       [](BudgetSpec& s) { s.thresholds = {{50, AlertLevel::kInfo, AlertAction::kLog, -1}}; }},
      {"thresholds[0].cooldown_ns",
       [](BudgetSpec& s) {
         s.window = Window::Rolling(kSecond);
         s.thresholds = {{50}};
       }},
  };
  ASSERT_TRUE(ValidateBudgetSpec(Spec("ok", 100)).ok());
  for (const Case& c : cases) {
    BudgetSpec s = Spec("b1", 100);
    c.mutate(s);
    Status st = ValidateBudgetSpec(s);
    EXPECT_TRUE(st.IsInvalidArgument()) << c.field << ": " << st.ToString();
    EXPECT_NE(st.message().find(c.field), std::string::npos) << c.field << ": " << st.ToString();
  }
}

TEST(BudgetLedger, RejectsDuplicateIdAndUnknownBudget) {
  Fixture f;
  ASSERT_TRUE(f.ledger.AddBudget(Spec("b", 100)).ok());
  EXPECT_TRUE(f.ledger.AddBudget(Spec("b", 100)).IsInvalidArgument());
  EXPECT_TRUE(f.ledger.Reserve("nope", "u", 1).status().IsNotFound());
  EXPECT_TRUE(f.ledger.Remaining("nope", "u").status().IsNotFound());
  EXPECT_TRUE(f.ledger.Reserve("b", "u", -1).status().IsInvalidArgument());
}

// --- reserve / settle / release ---

TEST(BudgetLedger, ReservePercentKeepsHeadroomAndRefusalNamesTheNumbers) {
  Fixture f;
  BudgetSpec s = Spec("team", 1000, Window::Daily(FixedOffset::Hours(9)));
  s.reserve_percent = 20;
  ASSERT_TRUE(f.ledger.AddBudget(s).ok());
  EXPECT_EQ(*f.ledger.Remaining("team", "alice"), 800);
  auto a = f.ledger.Reserve("team", "alice", 500);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(f.ledger.Settle(*a, 450).ok());
  ASSERT_TRUE(f.ledger.Reserve("team", "alice", 300).ok());
  EXPECT_EQ(*f.ledger.Remaining("team", "alice"), 50);
  auto refused = f.ledger.Reserve("team", "alice", 51);
  ASSERT_TRUE(refused.status().IsFailedPrecondition());
  const std::string& msg = refused.status().message();
  for (const char* part : {"'team'", "'alice'", "daily +09:00", "2026-11-21T00:00:00+09:00",
                           "spent $0.00000045", "reserved $0.0000003", "estimate $0.000000051",
                           "admissible $0.0000008", "limit $0.000001"}) {
    EXPECT_NE(msg.find(part), std::string::npos) << part << " not in: " << msg;
  }
  EXPECT_TRUE(f.ledger.Reserve("team", "alice", 50).ok());  // exactly to the limit
  EXPECT_EQ(*f.ledger.Remaining("team", "alice"), 0);
  EXPECT_EQ(*f.ledger.Remaining("team", "bob"), 800);  // per-user counters
  EXPECT_EQ(f.ledger.Stats("team")->refused, 1);
}

TEST(BudgetLedger, SettleReportsOvershoot) {
  Fixture f;
  ASSERT_TRUE(f.ledger.AddBudget(Spec("b", 1000)).ok());
  auto r1 = f.ledger.Reserve("b", "u", 100);
  auto r2 = f.ledger.Reserve("b", "u", 100);
  auto r3 = f.ledger.Reserve("b", "u", 100);
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
  auto s1 = f.ledger.Settle(*r1, 130);
  auto s2 = f.ledger.Settle(*r2, 60);
  auto s3 = f.ledger.Settle(*r3, 150);
  ASSERT_TRUE(s1.ok() && s2.ok() && s3.ok());
  EXPECT_EQ(s1->overshoot_nanousd, 30);
  EXPECT_EQ(s1->estimate_nanousd, 100);
  EXPECT_EQ(s1->actual_nanousd, 130);
  EXPECT_EQ(s2->overshoot_nanousd, 0);
  EXPECT_EQ(s3->overshoot_nanousd, 50);
  BudgetStats st = *f.ledger.Stats("b");
  EXPECT_EQ(st.overshoot_count, 2);
  EXPECT_EQ(st.overshoot_nanousd, 80);
  EXPECT_EQ(st.max_overshoot_nanousd, 50);
  EXPECT_EQ(st.spent_nanousd, 340);
  EXPECT_EQ(st.reserved_nanousd, 0);
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 660);
}

TEST(BudgetLedger, ReleaseReturnsTheMoney) {
  Fixture f;
  ASSERT_TRUE(f.ledger.AddBudget(Spec("b", 100)).ok());
  auto r = f.ledger.Reserve("b", "u", 100);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(f.ledger.Reserve("b", "u", 1).status().IsFailedPrecondition());
  ASSERT_TRUE(f.ledger.Release(*r).ok());
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 100);
  EXPECT_TRUE(f.ledger.Reserve("b", "u", 100).ok());
  BudgetStats st = *f.ledger.Stats("b");
  EXPECT_EQ(st.released, 1);
  EXPECT_EQ(st.spent_nanousd, 0);
  EXPECT_EQ(st.outstanding, 1);
}

TEST(BudgetLedger, SecondSettleOrReleaseIsRejectedAndNeverCounted) {
  Fixture f;
  ASSERT_TRUE(f.ledger.AddBudget(Spec("b", 1000)).ok());
  auto r = f.ledger.Reserve("b", "u", 100);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(f.ledger.Settle(*r, 100).ok());
  Reservation copy = *r;
  EXPECT_TRUE(f.ledger.Settle(copy, 100).status().IsFailedPrecondition());
  EXPECT_TRUE(f.ledger.Release(copy).IsFailedPrecondition());
  auto r2 = f.ledger.Reserve("b", "u", 100);
  ASSERT_TRUE(r2.ok());
  ASSERT_TRUE(f.ledger.Release(*r2).ok());
  EXPECT_TRUE(f.ledger.Release(*r2).IsFailedPrecondition());
  EXPECT_TRUE(f.ledger.Settle(*r2, 100).status().IsFailedPrecondition());
  BudgetStats st = *f.ledger.Stats("b");
  EXPECT_EQ(st.spent_nanousd, 100);
  EXPECT_EQ(st.settled, 1);
  EXPECT_EQ(st.released, 1);
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 900);
}

TEST(BudgetLedger, PinnedScopeKeyRejectsOtherKeys) {
  Fixture f;
  BudgetSpec s = Spec("acme", 100);
  s.scope = {Scope::Kind::kTenant, "acme"};
  ASSERT_TRUE(f.ledger.AddBudget(s).ok());
  EXPECT_TRUE(f.ledger.Reserve("acme", "other", 1).status().IsInvalidArgument());
  auto r = f.ledger.Reserve("acme", "", 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->key, "acme");
  EXPECT_EQ(*f.ledger.Remaining("acme", "acme"), 90);
}

// --- windows in the ledger ---

TEST(BudgetLedger, CalendarWindowsResetAtExactBoundary) {
  auto tokyo = FixedOffset::Hours(9);
  struct Case {
    const char* name;
    Window window;
    int64_t next_start;  // first ns of the next window
  } cases[] = {
      {"daily", Window::Daily(tokyo), Utc(2026, 11, 21, 15)},
      {"weekly", Window::Weekly(tokyo), Utc(2026, 11, 22, 15)},
      {"monthly", Window::Monthly(tokyo), Utc(2026, 11, 30, 15)},
  };
  for (const Case& c : cases) {
    Fixture f;
    ASSERT_TRUE(f.ledger.AddBudget(Spec("b", 100, c.window)).ok()) << c.name;
    f.now = c.next_start - 1;
    auto r = f.ledger.Reserve("b", "u", 100);
    ASSERT_TRUE(r.ok()) << c.name;
    ASSERT_TRUE(f.ledger.Settle(*r, 100).ok()) << c.name;
    EXPECT_TRUE(f.ledger.Reserve("b", "u", 1).status().IsFailedPrecondition()) << c.name;
    f.now = c.next_start;
    EXPECT_EQ(*f.ledger.Remaining("b", "u"), 100) << c.name;
    EXPECT_TRUE(f.ledger.Reserve("b", "u", 100).ok()) << c.name;
  }
}

TEST(BudgetLedger, ReservationSettlesIntoTheWindowItWasMadeIn) {
  Fixture f;
  ASSERT_TRUE(f.ledger.AddBudget(Spec("b", 100, Window::Daily())).ok());
  f.now = Utc(2026, 11, 21, 23, 59, 59);
  auto old = f.ledger.Reserve("b", "u", 60);
  ASSERT_TRUE(old.ok());
  f.now = Utc(2026, 11, 22, 0, 0, 1);
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 100);  // the old reservation is not ours
  auto fresh = f.ledger.Reserve("b", "u", 100);
  ASSERT_TRUE(fresh.ok());
  auto s = f.ledger.Settle(*old, 90);  // overshoot lands in yesterday
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->overshoot_nanousd, 30);
  ASSERT_TRUE(f.ledger.Release(*fresh).ok());
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 100);
  EXPECT_EQ(f.ledger.Stats("b")->spent_nanousd, 90);
}

TEST(BudgetLedger, RollingWindowForgetsSpendAfterDuration) {
  Fixture f;
  const int64_t t0 = f.now;
  ASSERT_TRUE(f.ledger.AddBudget(Spec("b", 100, Window::Rolling(60 * kSecond))).ok());
  auto r = f.ledger.Reserve("b", "u", 70);
  ASSERT_TRUE(r.ok());
  f.now = t0 + 30 * kSecond;
  ASSERT_TRUE(f.ledger.Settle(*r, 70).ok());  // dated t0, when it was reserved
  auto r2 = f.ledger.Reserve("b", "u", 30);
  ASSERT_TRUE(r2.ok());
  ASSERT_TRUE(f.ledger.Settle(*r2, 30).ok());  // dated t0 + 30s
  f.now = t0 + 60 * kSecond - 1;
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 0);
  EXPECT_TRUE(f.ledger.Reserve("b", "u", 1).status().IsFailedPrecondition());
  f.now = t0 + 60 * kSecond;  // the t0 spend leaves the window
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 70);
  f.now = t0 + 90 * kSecond;
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 100);
}

// --- alerts ---

TEST(BudgetAlerts, FireOncePerWindowAtTheRightThresholds) {
  Fixture f;
  BudgetSpec s = Spec("b", 1000, Window::Daily());
  s.thresholds = {{50, AlertLevel::kInfo, AlertAction::kLog, 0},
                  {80, AlertLevel::kWarning, AlertAction::kNotify, 0},
                  {100, AlertLevel::kCritical, AlertAction::kHalt, 0}};
  ASSERT_TRUE(f.ledger.AddBudget(s).ok());

  auto r1 = f.ledger.Reserve("b", "u", 499);
  ASSERT_TRUE(r1.ok());
  EXPECT_TRUE(r1->alerts.empty());  // 49.9%
  auto r2 = f.ledger.Reserve("b", "u", 1);
  ASSERT_TRUE(r2.ok());
  ASSERT_EQ(r2->alerts.size(), 1u);  // exactly 50%
  EXPECT_EQ(r2->alerts[0].percent, 50);
  EXPECT_EQ(r2->alerts[0].action, AlertAction::kLog);
  EXPECT_EQ(r2->alerts[0].committed_nanousd, 500);

  auto s1 = f.ledger.Settle(*r1, 850);  // overshoot: committed 851
  ASSERT_TRUE(s1.ok());
  ASSERT_EQ(s1->alerts.size(), 1u);
  EXPECT_EQ(s1->alerts[0].percent, 80);
  EXPECT_EQ(s1->alerts[0].level, AlertLevel::kWarning);

  auto s2 = f.ledger.Settle(*r2, 1);
  ASSERT_TRUE(s2.ok());
  EXPECT_TRUE(s2->alerts.empty());  // 50 and 80 already fired this window

  auto r3 = f.ledger.Reserve("b", "u", 149);  // 1000: exactly the limit
  ASSERT_TRUE(r3.ok());
  ASSERT_EQ(r3->alerts.size(), 1u);
  EXPECT_EQ(r3->alerts[0].action, AlertAction::kHalt);

  f.now = Utc(2026, 11, 22, 1);  // next day: re-armed
  auto r4 = f.ledger.Reserve("b", "u", 900);
  ASSERT_TRUE(r4.ok());
  ASSERT_EQ(r4->alerts.size(), 2u);
  EXPECT_EQ(r4->alerts[0].percent, 50);
  EXPECT_EQ(r4->alerts[1].percent, 80);
  EXPECT_EQ(r4->alerts[0].window.start_ns, Utc(2026, 11, 22));
  EXPECT_EQ(f.ledger.Stats("b")->alerts_fired, 5);
}

TEST(BudgetAlerts, CooldownLimitsRepeats) {
  Fixture f;
  BudgetSpec s = Spec("b", 1000);
  s.thresholds = {{50, AlertLevel::kWarning, AlertAction::kThrottle, 10 * kSecond}};
  ASSERT_TRUE(f.ledger.AddBudget(s).ok());
  const int64_t t0 = f.now;
  EXPECT_EQ(f.ledger.Reserve("b", "u", 600)->alerts.size(), 1u);
  f.now = t0 + 10 * kSecond - 1;
  EXPECT_EQ(f.ledger.Reserve("b", "u", 1)->alerts.size(), 0u);
  f.now = t0 + 10 * kSecond;
  EXPECT_EQ(f.ledger.Reserve("b", "u", 1)->alerts.size(), 1u);
  EXPECT_EQ(f.ledger.Reserve("b", "u", 1)->alerts.size(), 0u);
  // Another key has its own alert state.
  EXPECT_EQ(f.ledger.Reserve("b", "v", 500)->alerts.size(), 1u);
}

TEST(BudgetAlerts, SoftLimitAdmitsPastTheLimitAndAlerts) {
  Fixture f;
  BudgetSpec s = Spec("b", 100);
  s.enforcement = BudgetSpec::Enforcement::kSoft;
  s.thresholds = {{100, AlertLevel::kWarning, AlertAction::kNotify, 0},
                  {150, AlertLevel::kCritical, AlertAction::kDowngrade, 0}};
  ASSERT_TRUE(f.ledger.AddBudget(s).ok());
  auto r = f.ledger.Reserve("b", "u", 160);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->alerts.size(), 2u);
  EXPECT_EQ(r->alerts[1].action, AlertAction::kDowngrade);
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 0);
  EXPECT_TRUE(f.ledger.Reserve("b", "u", 1000).ok());
}

// --- concurrency ---

// The core promise: with 16 threads racing, admitted reservations never add up
// to more than the admissible limit, and the ledger's own books agree exactly.
TEST(BudgetLedgerConcurrency, RacingReservationsNeverExceedAdmissibleLimit) {
  for (int reserve_percent : {0, 10}) {
    BudgetLedger ledger;
    BudgetSpec s = Spec("b", 10'007, Window::Daily());
    s.scope = {Scope::Kind::kGlobal, ""};
    s.reserve_percent = reserve_percent;
    ASSERT_TRUE(ledger.AddBudget(s).ok());
    const int64_t admissible = s.AdmissibleNanousd();

    constexpr int kThreads = 16;
    std::atomic<int64_t> admitted_sum{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 rng(t);
        std::uniform_int_distribution<int64_t> est(1, 9);
        while (!go.load()) std::this_thread::yield();
        for (int i = 0; i < 2000; ++i) {
          auto r = ledger.Reserve("b", "", est(rng));
          if (r.ok()) admitted_sum += r->estimate_nanousd;
        }
      });
    }
    go = true;
    for (auto& th : threads) th.join();

    EXPECT_LE(admitted_sum.load(), admissible) << "reserve " << reserve_percent;
    // 32,000 attempts of 1..9 nUSD fill the budget to within one estimate.
    EXPECT_GT(admitted_sum.load(), admissible - 9);
    EXPECT_EQ(*ledger.Remaining("b", ""), admissible - admitted_sum.load());
    BudgetStats st = *ledger.Stats("b");
    EXPECT_EQ(st.reserved_nanousd, admitted_sum.load());
    EXPECT_EQ(st.admitted + st.refused, kThreads * 2000);
  }
}

// Reserve, settle (at or under the estimate) and release race; spend can
// never pass the limit and the books balance at the end.
TEST(BudgetLedgerConcurrency, RacingReserveSettleReleaseKeepsBooksExact) {
  BudgetLedger ledger;
  BudgetSpec s = Spec("b", 5'000);
  s.scope = {Scope::Kind::kGlobal, ""};
  ASSERT_TRUE(ledger.AddBudget(s).ok());
  std::atomic<int64_t> spent{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      for (int i = 0; i < 1000; ++i) {
        auto r = ledger.Reserve("b", "", 1 + rng() % 8);
        if (!r.ok()) continue;
        if (rng() % 3 == 0) {
          ASSERT_TRUE(ledger.Release(*r).ok());
        } else {
          int64_t actual = rng() % (r->estimate_nanousd + 1);
          ASSERT_TRUE(ledger.Settle(*r, actual).ok());
          spent += actual;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  BudgetStats st = *ledger.Stats("b");
  EXPECT_EQ(st.spent_nanousd, spent.load());
  EXPECT_LE(st.spent_nanousd, 5'000);
  EXPECT_EQ(st.outstanding, 0);
  EXPECT_EQ(st.reserved_nanousd, 0);
  EXPECT_EQ(st.settled + st.released, st.admitted);
  EXPECT_EQ(*ledger.Remaining("b", ""), 5'000 - spent.load());
}

}  // namespace
}  // namespace bastion

namespace bastion {
namespace {

// --- snapshot / restore ---

TEST(BudgetSnapshot, RestoredLedgerContinuesWhereTheOldOneStopped) {
  for (Window window : {Window::Daily(FixedOffset::Hours(9)), Window::Rolling(3600 * kSecond)}) {
    BudgetSpec s = Spec("b", 1000, window);
    s.thresholds = {{50, AlertLevel::kWarning, AlertAction::kNotify, 3600 * kSecond}};
    Fixture a;
    ASSERT_TRUE(a.ledger.AddBudget(s).ok());
    auto settled = a.ledger.Reserve("b", "u", 300);
    ASSERT_TRUE(settled.ok());
    ASSERT_TRUE(a.ledger.Settle(*settled, 350).ok());
    auto open = a.ledger.Reserve("b", "u", 200);  // 550: fires the 50% alert
    ASSERT_TRUE(open.ok());
    ASSERT_EQ(open->alerts.size(), 1u);
    auto snap = a.ledger.Snapshot("b");
    ASSERT_TRUE(snap.ok());

    Fixture b;
    b.now = a.now.load();
    ASSERT_TRUE(b.ledger.AddBudget(s).ok());
    ASSERT_TRUE(b.ledger.Restore(*snap).ok());
    const std::string name = window.ToString();
    EXPECT_EQ(*b.ledger.Remaining("b", "u"), 450) << name;
    auto more = b.ledger.Reserve("b", "u", 10);
    ASSERT_TRUE(more.ok()) << name;
    EXPECT_TRUE(more->alerts.empty()) << name;  // still in cooldown
    EXPECT_GT(more->id, open->id) << name;      // no id reuse
    ASSERT_TRUE(b.ledger.Settle(*open, 200).ok()) << name;
    EXPECT_TRUE(b.ledger.Settle(*open, 200).status().IsFailedPrecondition()) << name;
    EXPECT_TRUE(b.ledger.Settle(*settled, 1).status().IsFailedPrecondition()) << name;
    BudgetStats st = *b.ledger.Stats("b");
    EXPECT_EQ(st.spent_nanousd, 550) << name;
    EXPECT_EQ(st.overshoot_nanousd, 50) << name;
    EXPECT_EQ(st.outstanding, 1) << name;
    EXPECT_EQ(*b.ledger.Remaining("b", "u"), 1000 - 550 - 10) << name;
  }
}

TEST(BudgetSnapshot, RestoreRejectsUnknownThresholdAndLeavesStateAlone) {
  Fixture f;
  ASSERT_TRUE(f.ledger.AddBudget(Spec("b", 100)).ok());
  ASSERT_TRUE(f.ledger.Reserve("b", "u", 40).ok());
  BudgetSnapshot snap;
  snap.budget_id = "b";
  snap.windows.push_back({"u", 0, 100});
  snap.alerts.push_back({"u", 3, 0, 0});
  Status st = f.ledger.Restore(snap);
  EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();
  EXPECT_NE(st.message().find("threshold index 3"), std::string::npos) << st.ToString();
  EXPECT_EQ(*f.ledger.Remaining("b", "u"), 60);
  snap.budget_id = "missing";
  EXPECT_TRUE(f.ledger.Restore(snap).IsNotFound());
}

}  // namespace
}  // namespace bastion
