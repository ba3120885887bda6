// Policies reading live budgets, SLOs and prices through LivePolicyState.
#include "bastion/policy_state.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace bastion {
namespace {

constexpr int64_t kNoon = 1'795'262'400LL * 1'000'000'000;  // 2026-11-21T12:00:00Z

struct World {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(kNoon);
  std::shared_ptr<BudgetSet> budgets;
  std::shared_ptr<SloMonitor> slos;
  std::shared_ptr<PricingTable> pricing;
  std::unique_ptr<PolicyEngine> engine;

  explicit World(const std::string& policy_body) {
    auto config = ParseBudgetYaml(
        "version: 1\nbudgets:\n  - {id: daily, scope: user, limit_usd: 1, window: daily}\n",
        "budgets.yaml");
    EXPECT_TRUE(config.ok()) << config.status().ToString();
    BudgetSet::Options bo;
    bo.clock = [c = clock] { return c->NowNs(); };
    auto b = BudgetSet::Open(*config, bo);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    budgets = std::move(*b);

    auto specs = ParseSloYaml(R"(version: 1
slos:
  - id: models
    match: {kind: model}
    group_by: [model]
    success: {target: 99%, window: 3d, bucket: 1m}
    circuit_breaker: {minimum_calls: 5, window: 10, failure_rate: 50%}
)",
                              "slos.yaml");
    EXPECT_TRUE(specs.ok()) << specs.status().ToString();
    SloMonitor::Options so;
    so.clock = clock;
    so.evaluate_every_ns = 0;
    auto m = SloMonitor::Create(*specs, so);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    slos = std::move(*m);

    auto t = PricingTable::FromYaml("models:\n  m: {input: 2.5, output: 10}\n", "prices.yaml");
    EXPECT_TRUE(t.ok());
    pricing = std::make_shared<PricingTable>(std::move(*t));

    auto e = PolicyEngine::FromSources({{"p.lua", fmt::format(
        "return {{ id = 'p', before_model = function(call) {} end }}", policy_body)}});
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    engine = std::move(*e);
    engine->SetState(std::make_shared<LivePolicyState>(pricing, budgets, slos));
  }

  Decision Evaluate(const std::string& user, const std::string& model) {
    CallInfo c;
    c.hook = Hook::kBeforeModel;
    c.agent_id = "a";
    c.user_id = user;
    c.model = model;
    return engine->Evaluate(c);
  }
};

TEST(LivePolicyState, BudgetKeyComesFromTheCall) {
  World w("return deny(string.format('%.2f', budget.remaining('daily')))");
  BudgetSubject who;
  who.user = "alice";
  auto hold = w.budgets->Reserve(who, 300'000'000);
  ASSERT_TRUE(hold.ok());
  Decision alice = w.Evaluate("alice", "m");
  ASSERT_EQ(alice.reasons.size(), 1u);
  EXPECT_EQ(alice.reasons[0].message, "0.70");
  Decision bob = w.Evaluate("bob", "m");
  ASSERT_EQ(bob.reasons.size(), 1u);
  EXPECT_EQ(bob.reasons[0].message, "1.00");
  // A call without a user cannot name a per-user key: the policy fails closed.
  Decision nobody = w.Evaluate("", "m");
  EXPECT_EQ(nobody.effect, Effect::kDeny);
  ASSERT_EQ(nobody.errors.size(), 1u);
  EXPECT_NE(nobody.errors[0].message.find("kept per user, and the call has no user"),
            std::string::npos)
      << nobody.errors[0].message;
}

TEST(LivePolicyState, SloSeriesOfTheCallAndBreakerState) {
  World w(R"(
    local s = slo.get("models")
    return deny(string.format("%s %d %s %.1f", s.subject, s.calls, slo.breaker("models"),
                              slo.burn_rate("models", 3600))))");
  // A model never called yet reads as healthy.
  Decision fresh = w.Evaluate("u", "never-called");
  ASSERT_EQ(fresh.reasons.size(), 1u) << (fresh.errors.empty() ? "" : fresh.errors[0].message);
  EXPECT_EQ(fresh.reasons[0].message, "model=never-called 0 closed 0.0");
  for (int i = 0; i < 6; ++i) {
    w.slos->Record(SloCall{"model", "a", "flaky", ""},
                   SloOutcome{false, "upstream_5xx", 1'000'000, std::nullopt});
  }
  Decision flaky = w.Evaluate("u", "flaky");
  ASSERT_EQ(flaky.reasons.size(), 1u) << (flaky.errors.empty() ? "" : flaky.errors[0].message);
  // 100% errors against a 1% allowance: a burn rate of 100.
  EXPECT_EQ(flaky.reasons[0].message, "model=flaky 6 open 100.0");
}

TEST(LivePolicyState, PricesAndMissingParts) {
  World w("return deny(tostring(cost.estimate('m', 1000000, 100000)) .. ' ' .. "
          "tostring(cost.estimate('x', 1, 1)))");
  Decision d = w.Evaluate("u", "m");
  ASSERT_EQ(d.reasons.size(), 1u);
  EXPECT_EQ(d.reasons[0].message, "3.5 nil");

  w.engine->SetState(std::make_shared<LivePolicyState>(nullptr, nullptr, nullptr));
  Decision none = w.Evaluate("u", "m");
  ASSERT_EQ(none.errors.size(), 1u);
  EXPECT_NE(none.errors[0].message.find("no pricing table is configured"), std::string::npos);
}

TEST(LivePolicyState, UnknownSloAndUncoveredCallsAreErrors) {
  World w("slo.get('nope')");
  Decision d = w.Evaluate("u", "m");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("no slo 'nope'"), std::string::npos);
  auto uncovered = w.slos->GetFor("models", SloCall{"tool", "a", "", "search"});
  EXPECT_TRUE(uncovered.status().IsNotFound());
  auto no_series = w.slos->BurnRate("models", "model=zzz", 3'600'000'000'000);
  EXPECT_TRUE(no_series.status().IsNotFound());
}

}  // namespace
}  // namespace bastion
