// The budget, slo and cost helper libraries, against a scripted PolicyState.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "bastion/policy.h"

namespace bastion {
namespace {

using Sources = std::vector<std::pair<std::string, std::string>>;

class FakeState final : public PolicyState {
 public:
  Result<BudgetView> Budget(std::string_view id, std::string_view key,
                            const CallInfo& call) const override {
    if (id != "daily") return Status::NotFound(fmt::format("budget '{}' does not exist", id));
    BudgetView v;
    v.key = key.empty() ? call.user_id : std::string(key);
    v.window = "daily UTC";
    v.limit_nanousd = 10'000'000'000;
    v.admissible_nanousd = 9'000'000'000;
    v.spent_nanousd = v.key == "rich" ? 1'000'000'000 : 8'500'000'000;
    v.reserved_nanousd = 250'000'000;
    v.remaining_nanousd = v.admissible_nanousd - v.spent_nanousd - v.reserved_nanousd;
    return v;
  }
  Result<SloView> Slo(std::string_view id, std::string_view subject,
                      const CallInfo& call) const override {
    if (id != "model-slo") return Status::NotFound(fmt::format("SLO '{}' does not exist", id));
    SloView v;
    v.subject = subject.empty() ? "model=" + call.model : std::string(subject);
    v.calls = 1234;
    v.success_rate = 0.98;
    v.target = 0.99;
    v.error_budget_remaining = -1;
    v.p50_ns = 120e6;
    v.p95_ns = 900e6;
    v.p99_ns = 2500e6;
    v.breaker = subject == "model=broken" ? "open" : "closed";
    v.firing = {"burn_rate:page-1h", "latency_p99"};
    v.cost_today_nanousd = 3'500'000'000;
    return v;
  }
  Result<double> BurnRate(std::string_view id, std::string_view, int64_t window_ns,
                          const CallInfo&) const override {
    if (id != "model-slo") return Status::NotFound(fmt::format("SLO '{}' does not exist", id));
    return window_ns == 3600LL * 1'000'000'000 ? 14.5 : 2.0;
  }
  Result<int64_t> Price(std::string_view model, int64_t in, int64_t out) const override {
    if (model != "m") return Status::NotFound(fmt::format("model '{}' has no price", model));
    return in * 2'500 + out * 10'000;  // $2.50 / $10 per 1M tokens
  }
};

CallInfo ModelCall(std::string user = "alice", std::string model = "gpt-4o") {
  CallInfo c;
  c.hook = Hook::kBeforeModel;
  c.agent_id = "support-bot";
  c.user_id = std::move(user);
  c.model = std::move(model);
  return c;
}

std::unique_ptr<PolicyEngine> Engine(const std::string& body, std::string bundle_yaml = "") {
  auto e = PolicyEngine::FromSources(
      {{"p.lua", fmt::format("return {{ id = 'p', before_model = function(call) {} end }}", body)}},
      std::move(bundle_yaml));
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return nullptr;
  (*e)->SetState(std::make_shared<FakeState>());
  return std::move(*e);
}

TEST(StateHelpers, BudgetRemainingDrivesADecision) {
  auto e = Engine(R"(
    local left = budget.remaining("daily")
    if left < 0.5 then return downgrade("small", string.format("$%.2f left", left)) end)");
  Decision poor = e->Evaluate(ModelCall("alice"));
  EXPECT_EQ(poor.effect, Effect::kModify);
  ASSERT_TRUE(poor.model_downgrade);
  EXPECT_EQ(*poor.model_downgrade, "small");
  ASSERT_EQ(poor.reasons.size(), 1u);
  EXPECT_EQ(poor.reasons[0].message, "$0.25 left");
  EXPECT_EQ(e->Evaluate(ModelCall("rich")).effect, Effect::kAllow);
}

TEST(StateHelpers, BudgetGetReturnsEveryField) {
  auto e = Engine(R"(
    local b = budget.get("daily", "bob")
    return deny(string.format("%s|%s|%.2f|%.2f|%.2f|%.2f|%.2f|%.3f", b.key, b.window, b.limit,
                              b.admissible, b.spent, b.reserved, b.remaining, b.used)))");
  Decision d = e->Evaluate(ModelCall());
  ASSERT_EQ(d.reasons.size(), 1u) << d.errors.size();
  EXPECT_EQ(d.reasons[0].message, "bob|daily UTC|10.00|9.00|8.50|0.25|0.25|0.875");
}

TEST(StateHelpers, SloHelpers) {
  auto e = Engine(R"(
    local s = slo.get("model-slo")
    local parts = {s.subject, tostring(s.calls), string.format("%.2f/%.2f", s.success_rate, s.target),
                   tostring(s.error_budget_remaining), string.format("%.0f/%.0f/%.0f", s.p50_ms, s.p95_ms, s.p99_ms),
                   s.breaker, table.concat(s.firing, ","), string.format("%.2f", s.cost_today),
                   tostring(slo.burn_rate("model-slo", 3600)), slo.breaker("model-slo", "model=broken")}
    return deny(table.concat(parts, "|")))");
  Decision d = e->Evaluate(ModelCall("alice", "gpt-4o"));
  ASSERT_EQ(d.reasons.size(), 1u);
  EXPECT_EQ(d.reasons[0].message,
            "model=gpt-4o|1234|0.98/0.99|-1.0|120/900/2500|closed|burn_rate:page-1h,latency_p99|"
            "3.50|14.5|open");
}

TEST(StateHelpers, CostEstimateIsNilForUnpricedModels) {
  auto e = Engine(R"(
    local c = cost.estimate("m", 1000000, 100000)
    local u = cost.estimate("unknown", 1, 1)
    return deny(string.format("%.2f %s", c, tostring(u))))");
  Decision d = e->Evaluate(ModelCall());
  ASSERT_EQ(d.reasons.size(), 1u);
  EXPECT_EQ(d.reasons[0].message, "3.50 nil");
}

TEST(StateHelpers, UnknownIdsFailClosedNamingTheId) {
  struct Case {
    const char* body;
    const char* message;
  } cases[] = {
      {"budget.remaining('nope')", "budget 'nope' does not exist"},
      {"budget.get('nope')", "budget 'nope' does not exist"},
      {"slo.get('nope')", "SLO 'nope' does not exist"},
      {"slo.burn_rate('nope', 60)", "SLO 'nope' does not exist"},
      {"slo.burn_rate('model-slo', 0)", "window must be between 1 second and 400 days"},
      {"cost.estimate('m', -1, 0)", "token counts must be >= 0"},
      {"budget.remaining()", "bad argument #1"},
  };
  for (const Case& c : cases) {
    auto e = Engine(c.body);
    Decision d = e->Evaluate(ModelCall());
    EXPECT_EQ(d.effect, Effect::kDeny) << c.body;
    ASSERT_EQ(d.errors.size(), 1u) << c.body;
    EXPECT_NE(d.errors[0].message.find(c.message), std::string::npos)
        << c.body << ": " << d.errors[0].message;
  }
}

TEST(StateHelpers, WithoutStateTheHelpersRaise) {
  auto e = PolicyEngine::FromSources(
      {{"p.lua", "return { id = 'p', before_model = function(call) budget.remaining('daily') end }"}});
  ASSERT_TRUE(e.ok());
  Decision d = (*e)->Evaluate(ModelCall());
  EXPECT_EQ(d.effect, Effect::kDeny);
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("no budgets, SLOs or prices are attached"),
            std::string::npos);
}

TEST(StateHelpers, LibrariesAreReadOnly) {
  auto e = Engine("budget.remaining = function() return 1e9 end");
  Decision d = e->Evaluate(ModelCall());
  EXPECT_EQ(d.effect, Effect::kDeny);
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("read-only"), std::string::npos);
}

// The memory limit hit while a helper pushes its result: the policy fails with
// memory_limit and nothing leaks (ASan's leak check runs on this suite).
TEST(StateHelpers, MemoryLimitWhilePushingFailsCleanly) {
  auto e = Engine(R"(
    local hog = {}
    for i = 1, 1e7 do
      hog[i] = i
      pii.find("write to a@b.example or c@d.example", "email")
      budget.get("daily")
      slo.get("model-slo")
    end)",
                  "limits: {memory_kb: 256}\n");
  for (int i = 0; i < 3; ++i) {
    Decision d = e->Evaluate(ModelCall());
    EXPECT_EQ(d.effect, Effect::kDeny);
    ASSERT_EQ(d.errors.size(), 1u);
    EXPECT_EQ(d.errors[0].kind, "memory_limit") << d.errors[0].message;
  }
}

TEST(StateHelpers, StateCanBeSwappedWhileEvaluating) {
  auto e = Engine("budget.remaining('daily')");
  std::atomic<bool> stop{false};
  std::atomic<int> denied{0};
  std::thread reader([&] {
    while (!stop) {
      if (e->Evaluate(ModelCall()).effect == Effect::kDeny) ++denied;
    }
  });
  for (int i = 0; i < 200; ++i) e->SetState(std::make_shared<FakeState>());
  stop = true;
  reader.join();
  EXPECT_EQ(denied.load(), 0);
}

}  // namespace
}  // namespace bastion
