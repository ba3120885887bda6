#include "bastion/budget_set.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "test_util.h"

namespace bastion {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kUsd = 1'000'000'000;
// 2026-11-21T12:00:00Z
constexpr int64_t kNoon = 1'795'262'400LL * 1'000'000'000;

struct FakeClock {
  std::shared_ptr<std::atomic<int64_t>> now = std::make_shared<std::atomic<int64_t>>(kNoon);
  BudgetLedger::Clock fn() const {
    auto n = now;
    return [n] { return n->load(); };
  }
};

BudgetConfig MustParse(const std::string& yaml) {
  auto c = ParseBudgetYaml(yaml, "budgets.yaml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : BudgetConfig{};
}

std::unique_ptr<BudgetSet> MustOpen(BudgetConfig config, BudgetSet::Options options) {
  auto s = BudgetSet::Open(std::move(config), std::move(options));
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

const char* kTwoBudgets = R"(version: 1
time_zone: "+09:00"
budgets:
  - id: per-user-daily
    scope: user
    match: {agent: "support-*"}
    limit_usd: 1.00
    window: daily
    alerts:
      - {at: 50%, level: warning, action: notify}
      - {at: 80%, level: warning, action: downgrade, model: small-model}
  - id: tenant-monthly
    scope: tenant
    limit_usd: "$10"
    window: monthly
    reserve_percent: 10
)";

TEST(BudgetConfig, ParsesEveryField) {
  BudgetConfig c = MustParse(kTwoBudgets);
  ASSERT_EQ(c.budgets.size(), 2u);
  const BudgetRule& a = c.budgets[0];
  EXPECT_EQ(a.spec.id, "per-user-daily");
  EXPECT_EQ(a.spec.scope.kind, Scope::Kind::kUser);
  EXPECT_EQ(a.spec.limit_nanousd, 1 * kUsd);
  EXPECT_EQ(a.spec.window.kind, Window::Kind::kDaily);
  ASSERT_NE(a.spec.window.zone, nullptr);
  EXPECT_EQ(a.spec.window.zone->Name(), "+09:00");
  EXPECT_EQ(a.agents, std::vector<std::string>{"support-*"});
  ASSERT_EQ(a.spec.thresholds.size(), 2u);
  EXPECT_EQ(a.spec.thresholds[1].percent, 80);
  EXPECT_EQ(a.spec.thresholds[1].action, AlertAction::kDowngrade);
  EXPECT_EQ(a.downgrade_models[1], "small-model");
  EXPECT_EQ(a.line, 4);
  const BudgetRule& b = c.budgets[1];
  EXPECT_EQ(b.spec.limit_nanousd, 10 * kUsd);
  EXPECT_EQ(b.spec.reserve_percent, 10);
  EXPECT_EQ(b.spec.window.kind, Window::Kind::kMonthly);
}

TEST(BudgetConfig, RollingWindowsAndThrottles) {
  BudgetConfig c = MustParse(R"(version: 1
budgets:
  - id: burst
    scope: agent
    limit_usd: 0.5
    window: rolling 90m
    alerts:
      - {at: 50%, action: throttle, rate: 3/min, cooldown: 5m}
)");
  ASSERT_EQ(c.budgets.size(), 1u);
  EXPECT_EQ(c.budgets[0].spec.window.kind, Window::Kind::kRolling);
  EXPECT_EQ(c.budgets[0].spec.window.duration_ns, 90 * 60 * kUsd);
  EXPECT_EQ(c.budgets[0].throttle_rates[0].count, 3u);
  EXPECT_EQ(c.budgets[0].spec.thresholds[0].cooldown_ns, 300 * kUsd);
}

struct BadCase {
  const char* name;
  const char* yaml;
  const char* where;  // expected "line:col"
  const char* what;   // expected substring
};

TEST(BudgetConfig, BadInputNamesLineAndField) {
  const BadCase cases[] = {
      {"syntax", "version: 1\nbudgets: [\n", "3:1", "malformed YAML"},
      {"empty", "", "1:1", "empty document"},
      {"no version", "budgets: []\n", "1:1", "missing required key 'version'"},
      {"bad version", "version: 2\nbudgets: []\n", "1:10", "unsupported version 2"},
      {"no budgets", "version: 1\n", "1:1", "missing required key 'budgets'"},
      {"unknown top key", "version: 1\nbugdets: []\n", "2:1", "did you mean 'budgets'"},
      {"budgets not list", "version: 1\nbudgets: {}\n", "2:10", "budgets: expected a list"},
      {"unknown key", "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit: 1\n",
       "5:5", "budgets[0]: unknown key 'limit'"},
      {"missing id", "version: 1\nbudgets:\n  - scope: user\n    limit_usd: 1\n    window: daily\n",
       "3:5", "missing required key 'id'"},
      {"missing limit", "version: 1\nbudgets:\n  - {id: a, scope: user, window: daily}\n", "3:5",
       "missing required key 'limit_usd'"},
      {"missing window", "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 1}\n", "3:5",
       "missing required key 'window'"},
      {"bad scope", "version: 1\nbudgets:\n  - {id: a, scope: team, limit_usd: 1, window: daily}\n",
       "3:20", "budgets[0].scope: unknown scope 'team'"},
      {"bad amount",
       "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: ten, window: daily}\n", "3:37",
       "budgets[0].limit_usd: expected an amount in USD"},
      {"zero amount", "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 0, window: daily}\n",
       "3:37", "must be more than zero"},
      {"too precise",
       "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 0.0000000001, window: daily}\n",
       "3:37", "at most 9 decimal places"},
      {"bad window",
       "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 1, window: hourly}\n", "3:48",
       "unknown window 'hourly'"},
      {"rolling without length",
       "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 1, window: rolling}\n", "3:48",
       "a rolling window needs a length"},
      {"bad zone", "version: 1\ntime_zone: Mars/Olympus\nbudgets: []\n", "2:12", "Mars/Olympus"},
      {"zone on rolling",
       "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 1, window: rolling 1h, "
       "time_zone: UTC}\n",
       "3:71", "time_zone applies only to daily"},
      {"reserve over 100",
       "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 1, window: daily, "
       "reserve_percent: 101}\n",
       "3:72", "budgets[0].reserve_percent: must be between 0 and 100"},
      {"bad enforcement",
       "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 1, window: daily, "
       "enforcement: strict}\n",
       "3:68", "unknown enforcement 'strict'"},
      {"duplicate id",
       "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 1, window: daily}\n"
       "  - {id: a, scope: user, limit_usd: 1, window: daily}\n",
       "4:5", "duplicate budget id 'a' (first defined at line 3)"},
      {"alert without at",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: daily\n"
       "    alerts:\n      - {action: log}\n",
       "8:9", "budgets[0].alerts[0]: missing required key 'at'"},
      {"alert bad percent",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: daily\n"
       "    alerts:\n      - {at: lots}\n",
       "8:14", "budgets[0].alerts[0].at: expected a percentage"},
      {"alert fractional percent",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: daily\n"
       "    alerts:\n      - {at: 80.5%}\n",
       "8:14", "must be a whole percentage"},
      {"alert bad action",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: daily\n"
       "    alerts:\n      - {at: 80%, action: page}\n",
       "8:27", "unknown action 'page'"},
      {"downgrade without model",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: daily\n"
       "    alerts:\n      - {at: 80%, action: downgrade}\n",
       "8:27", "a downgrade needs 'model'"},
      {"throttle without rate",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: daily\n"
       "    alerts:\n      - {at: 80%, action: throttle}\n",
       "8:27", "a throttle needs 'rate'"},
      {"bad rate",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: daily\n"
       "    alerts:\n      - {at: 80%, action: throttle, rate: fast}\n",
       "8:43", "invalid rate limit 'fast'"},
      {"bad cooldown",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: daily\n"
       "    alerts:\n      - {at: 80%, cooldown: 5 parsecs}\n",
       "8:29", "invalid duration"},
      {"halt above 100",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: daily\n"
       "    alerts:\n      - {at: 120%, action: halt}\n",
       "8:14", "a halt threshold must be at most 100%"},
      {"rolling alert without cooldown",
       "version: 1\nbudgets:\n  - id: a\n    scope: user\n    limit_usd: 1\n    window: rolling 1h\n"
       "    alerts:\n      - {at: 80%}\n",
       "3:5", "cooldown"},
      {"bad glob",
       "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 1, window: daily, match: "
       "{agent: \"[\"}}\n",
       "3:70", "invalid glob"},
      {"global with key",
       "version: 1\nbudgets:\n  - {id: a, scope: global, key: x, limit_usd: 1, window: daily}\n",
       "3:5", "a global budget has no 'key'"},
  };
  for (const BadCase& c : cases) {
    auto r = ParseBudgetYaml(c.yaml, "budgets.yaml");
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_TRUE(r.status().IsInvalidArgument()) << c.name;
    const std::string& m = r.status().message();
    EXPECT_NE(m.find(std::string("budgets.yaml:") + c.where + ":"), std::string::npos)
        << c.name << ": " << m;
    EXPECT_NE(m.find(c.what), std::string::npos) << c.name << ": " << m;
  }
}

TEST(BudgetSet, ReservesOnEveryCoveringBudgetOrNone) {
  FakeClock clock;
  BudgetSet::Options o;
  o.clock = clock.fn();
  auto set = MustOpen(MustParse(kTwoBudgets), o);
  BudgetSubject who;
  who.user = "alice";
  who.tenant = "acme";
  who.agent = "support-bot";
  auto hold = set->Reserve(who, 400'000'000);  // $0.40
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  ASSERT_EQ(hold->reservations.size(), 2u);
  EXPECT_EQ(hold->reservations[0].key, "alice");
  EXPECT_EQ(hold->reservations[1].key, "acme");
  ASSERT_TRUE(set->Settle(*hold, 450'000'000).ok());

  // $0.60 more would pass the tenant budget but not alice's $1/day: nothing
  // is held on either.
  std::string refused_by;
  auto refused = set->Reserve(who, 600'000'000, &refused_by);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.status().IsFailedPrecondition());
  EXPECT_NE(refused.status().message().find("per-user-daily"), std::string::npos);
  EXPECT_EQ(refused_by, "per-user-daily");
  auto tenant = set->UsageOf("tenant-monthly", "acme");
  ASSERT_TRUE(tenant.ok());
  EXPECT_EQ(tenant->spent_nanousd, 450'000'000);
  EXPECT_EQ(tenant->reserved_nanousd, 0);

  // Another agent is outside the per-user budget's match: only the tenant's.
  who.agent = "billing";
  auto other = set->Reserve(who, 600'000'000);
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->reservations.size(), 1u);
  EXPECT_EQ(other->reservations[0].budget_id, "tenant-monthly");
  ASSERT_TRUE(set->Release(*other).ok());
  EXPECT_TRUE(set->Release(*other).IsFailedPrecondition());

  // No user: the user budget does not cover the call.
  BudgetSubject anon;
  anon.agent = "support-bot";
  auto none = set->Reserve(anon, 1);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->reservations.empty());
}

TEST(BudgetSet, DowngradeIsInForceAboveItsThreshold) {
  FakeClock clock;
  BudgetSet::Options o;
  o.clock = clock.fn();
  auto set = MustOpen(MustParse(kTwoBudgets), o);
  BudgetSubject who;
  who.user = "bob";
  who.agent = "support-1";
  auto a = set->Reserve(who, 500'000'000);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->downgrade_model);
  ASSERT_EQ(a->alerts.size(), 1u);  // 50% notify
  EXPECT_EQ(a->alerts[0].action, AlertAction::kNotify);
  ASSERT_TRUE(set->Settle(*a, 500'000'000).ok());
  auto b = set->Reserve(who, 300'000'000);  // 80%: downgrade fires
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(b->downgrade_model);
  EXPECT_EQ(*b->downgrade_model, "small-model");
  EXPECT_EQ(b->downgrade_budget, "per-user-daily");
  ASSERT_TRUE(set->Settle(*b, 300'000'000).ok());
  auto c = set->Reserve(who, 10'000'000);  // still above: still in force
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->downgrade_model);
  EXPECT_TRUE(c->alerts.empty());  // fired once per window
  ASSERT_TRUE(set->Release(*c).ok());
  // The next local day (+09:00) starts fresh.
  clock.now->store(kNoon + 12 * 3600 * kUsd);
  auto d = set->Reserve(who, 10'000'000);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->downgrade_model);
}

TEST(BudgetSet, HaltThresholdIsAHardCapEvenOnSoftBudgets) {
  FakeClock clock;
  BudgetSet::Options o;
  o.clock = clock.fn();
  auto set = MustOpen(MustParse(R"(version: 1
budgets:
  - id: soft
    scope: global
    limit_usd: 1
    window: daily
    enforcement: soft
    alerts: [{at: 90%, action: halt, level: critical}]
)"),
                      o);
  BudgetSubject any;
  auto a = set->Reserve(any, 850'000'000);
  ASSERT_TRUE(a.ok());
  auto b = set->Reserve(any, 100'000'000);  // 95% > the 90% halt
  ASSERT_FALSE(b.ok());
  EXPECT_TRUE(b.status().IsFailedPrecondition());
  auto c = set->Reserve(any, 50'000'000);  // exactly 90%
  ASSERT_TRUE(c.ok());
}

TEST(BudgetSet, ThrottleLimitsRateAboveThreshold) {
  FakeClock clock;
  BudgetSet::Options o;
  o.clock = clock.fn();
  auto set = MustOpen(MustParse(R"(version: 1
budgets:
  - id: t
    scope: agent
    limit_usd: 100
    window: daily
    alerts: [{at: 10%, action: throttle, rate: 2/min}]
)"),
                      o);
  BudgetSubject who;
  who.agent = "a";
  auto big = set->Reserve(who, 20 * kUsd);  // 20%: throttling starts (first token)
  ASSERT_TRUE(big.ok());
  ASSERT_TRUE(set->Settle(*big, 20 * kUsd).ok());
  ASSERT_TRUE(set->Reserve(who, 1).ok());
  std::string refused_by;
  auto third = set->Reserve(who, 1, &refused_by);
  ASSERT_FALSE(third.ok());
  EXPECT_NE(third.status().message().find("throttled to 2/min"), std::string::npos);
  EXPECT_EQ(refused_by, "t");
  // The refused reservation held nothing.
  auto u = set->UsageOf("t", "a");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->reserved_nanousd, 1);
  clock.now->fetch_add(60 * kUsd);
  EXPECT_TRUE(set->Reserve(who, 1).ok());
  who.agent = "b";  // another key has its own bucket and its own spend
  EXPECT_TRUE(set->Reserve(who, 1).ok());
}

TEST(BudgetSet, ConcurrentHoldsNeverExceedTheSmallestBudget) {
  BudgetSet::Options o;
  auto set = MustOpen(MustParse(R"(version: 1
budgets:
  - {id: user, scope: user, limit_usd: 0.01, window: per_run}
  - {id: all, scope: global, limit_usd: 0.015, window: per_run}
)"),
                      o);
  std::atomic<int64_t> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      BudgetSubject who;
      const std::string user = t % 2 ? "odd" : "even";
      who.user = user;
      for (int i = 0; i < 2000; ++i) {
        auto h = set->Reserve(who, 7'000);
        if (h.ok()) admitted.fetch_add(7'000);
      }
    });
  }
  for (auto& th : threads) th.join();
  // Per user at most $0.01, in total at most $0.015.
  auto even = set->UsageOf("user", "even");
  auto odd = set->UsageOf("user", "odd");
  auto all = set->UsageOf("all", "");
  ASSERT_TRUE(even.ok() && odd.ok() && all.ok());
  EXPECT_LE(even->reserved_nanousd, 10'000'000);
  EXPECT_LE(odd->reserved_nanousd, 10'000'000);
  EXPECT_LE(all->reserved_nanousd, 15'000'000);
  EXPECT_EQ(all->reserved_nanousd, admitted.load());
  EXPECT_EQ(even->reserved_nanousd + odd->reserved_nanousd, admitted.load());
  // And the global budget was filled as far as 7,000-nUSD steps allow.
  EXPECT_GT(all->reserved_nanousd, 15'000'000 - 7'000);
}

class BudgetStateTest : public ::testing::Test {
 protected:
  testing::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

TEST_F(BudgetStateTest, StateSurvivesARestart) {
  FakeClock clock;
  BudgetSet::Options o;
  o.clock = clock.fn();
  o.state_path = dir_ + "/state";
  BudgetSubject who;
  who.user = "alice";
  who.tenant = "acme";
  who.agent = "support-1";
  {
    auto set = MustOpen(MustParse(kTwoBudgets), o);
    auto h = set->Reserve(who, 600'000'000);
    ASSERT_TRUE(h.ok());
    ASSERT_EQ(h->alerts.size(), 1u);
    ASSERT_TRUE(set->Settle(*h, 550'000'000).ok());
    ASSERT_TRUE(set->Close().ok());
  }
  {
    auto set = MustOpen(MustParse(kTwoBudgets), o);
    EXPECT_EQ(set->restored().budgets_restored, 2);
    EXPECT_EQ(set->restored().abandoned_reservations, 0);
    auto u = set->UsageOf("per-user-daily", "alice");
    ASSERT_TRUE(u.ok());
    EXPECT_EQ(u->spent_nanousd, 550'000'000);
    // The 50% alert already fired in this window: not again.
    auto h = set->Reserve(who, 100'000'000);
    ASSERT_TRUE(h.ok());
    EXPECT_TRUE(h->alerts.empty());
    // Left outstanding: the "process" ends with a call in flight.
    auto stats = set->ledger().Stats("per-user-daily");
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->settled, 1);
  }
  {
    auto set = MustOpen(MustParse(kTwoBudgets), o);
    EXPECT_EQ(set->restored().abandoned_reservations, 2);  // one per budget
    EXPECT_EQ(set->restored().abandoned_nanousd, 200'000'000);
    auto u = set->UsageOf("per-user-daily", "alice");
    ASSERT_TRUE(u.ok());
    EXPECT_EQ(u->spent_nanousd, 650'000'000);  // charged at its estimate
    EXPECT_EQ(u->reserved_nanousd, 0);
    auto stats = set->ledger().Stats("per-user-daily");
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->outstanding, 0);
    EXPECT_EQ(stats->reserved_nanousd, 0);
    EXPECT_EQ(stats->settled, 2);
    // New reservations get fresh ids.
    auto h = set->Reserve(who, 1);
    ASSERT_TRUE(h.ok());
  }
}

TEST_F(BudgetStateTest, WriteThroughLosesNothingWithoutClose) {
  BudgetSet::Options o;
  o.state_path = dir_ + "/state";
  o.flush_interval_ns = 0;
  BudgetSubject who;
  who.user = "u";
  who.tenant = "t";
  who.agent = "support-x";
  {
    auto set = MustOpen(MustParse(kTwoBudgets), o);
    auto h = set->Reserve(who, 100);
    ASSERT_TRUE(h.ok());
    ASSERT_TRUE(set->Settle(*h, 123).ok());
    // Simulate a crash: read the store behind the set's back before Close.
    rocksdb::Options ro;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(ro, o.state_path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), "budget/per-user-daily", &value).ok());
    EXPECT_GT(value.size(), 20u);
  }
}

TEST_F(BudgetStateTest, ChangedBudgetsAreNotRestoredIntoTheWrongShape) {
  BudgetSet::Options o;
  o.state_path = dir_ + "/state";
  BudgetSubject who;
  who.user = "u";
  {
    auto set = MustOpen(MustParse("version: 1\nbudgets:\n"
                                  "  - {id: a, scope: user, limit_usd: 1, window: daily}\n"
                                  "  - {id: gone, scope: user, limit_usd: 1, window: daily}\n"),
                        o);
    auto h = set->Reserve(who, 10);
    ASSERT_TRUE(h.ok());
    ASSERT_TRUE(set->Settle(*h, 10).ok());
  }
  auto set = MustOpen(MustParse("version: 1\nbudgets:\n"
                                "  - {id: a, scope: user, limit_usd: 1, window: monthly}\n"),
                      o);
  EXPECT_EQ(set->restored().budgets_restored, 0);
  ASSERT_EQ(set->restored().dropped.size(), 2u);
  EXPECT_NE(set->restored().dropped[0].find("budget 'a'"), std::string::npos);
  EXPECT_NE(set->restored().dropped[0].find("changed"), std::string::npos);
  EXPECT_NE(set->restored().dropped[1].find("no longer configured"), std::string::npos);
  auto u = set->UsageOf("a", "u");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->spent_nanousd, 0);
}

TEST_F(BudgetStateTest, DamagedStateIsAnErrorNamingTheBudget) {
  BudgetSet::Options o;
  o.state_path = dir_ + "/state";
  const std::string yaml =
      "version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: 1, window: daily}\n";
  {
    auto set = MustOpen(MustParse(yaml), o);
    BudgetSubject who;
    who.user = "u";
    auto h = set->Reserve(who, 10);
    ASSERT_TRUE(h.ok());
    ASSERT_TRUE(set->Settle(*h, 10).ok());
  }
  std::string good;
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), o.state_path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "budget/a", &good).ok());
  }
  // Truncations across every section and a wrong version byte: Corruption,
  // never a crash. (Each case reopens RocksDB twice, so not every length.)
  std::vector<size_t> lengths;
  for (size_t n = 0; n < good.size(); n += 1 + n / 4) lengths.push_back(n);
  lengths.push_back(good.size() - 1);
  lengths.push_back(good.size());  // stands for: the version byte changed
  for (size_t n : lengths) {
    std::string bad = n == good.size() ? std::string(1, '\x07') + good.substr(1) : good.substr(0, n);
    {
      rocksdb::DB* raw = nullptr;
      ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), o.state_path, &raw).ok());
      std::unique_ptr<rocksdb::DB> db(raw);
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "budget/a", bad).ok());
    }
    auto set = BudgetSet::Open(MustParse(yaml), o);
    ASSERT_FALSE(set.ok()) << "length " << n;
    EXPECT_TRUE(set.status().IsCorruption()) << set.status().ToString();
    EXPECT_NE(set.status().message().find("budget 'a'"), std::string::npos)
        << set.status().ToString();
  }
}

TEST_F(BudgetStateTest, OneProcessAtATime) {
  BudgetSet::Options o;
  o.state_path = dir_ + "/state";
  const BudgetConfig config = MustParse(kTwoBudgets);
  auto first = MustOpen(config, o);
  auto second = BudgetSet::Open(config, o);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(second.status().IsBusy()) << second.status().ToString();
  ASSERT_TRUE(first->Close().ok());
  EXPECT_TRUE(BudgetSet::Open(config, o).ok());
}

TEST_F(BudgetStateTest, AFileInTheWayIsAClearError) {
  BudgetSet::Options o;
  o.state_path = dir_ + "/file";
  { std::ofstream(o.state_path) << "x"; }
  auto set = BudgetSet::Open(MustParse(kTwoBudgets), o);
  ASSERT_FALSE(set.ok());
  EXPECT_TRUE(set.status().IsInvalidArgument());
  EXPECT_NE(set.status().message().find("is a file"), std::string::npos);
}

}  // namespace
}  // namespace bastion
