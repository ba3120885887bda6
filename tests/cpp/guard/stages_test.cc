// Each stage of the guarded call alone (guard/stages.cc, guard/record_stage.cc):
// admitted, undone and settled over a call state, without a Guard.
#include "guard/stage.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace bastion::guard {
namespace {

using testing::kNoon;

constexpr char kPolicy[] = R"(
return {
  id = "checks",
  before_model = function(call)
    if string.find(call.input, "FORBIDDEN", 1, true) then return deny("forbidden words") end
    if call.model == "big" and string.find(call.input, "cheap", 1, true) then
      return downgrade("small", "cheap question")
    end
    local hits = pii.find(call.input, "email")
    if #hits > 0 then return redact(hits, "no emails") end
  end,
  after_model = function(call, out)
    if string.find(out.text, "SECRET", 1, true) then return deny("leaks a secret") end
  end,
}
)";

constexpr char kPermissions[] = R"(version: 1
agents:
  support:
    tools:
      - name: lookup
        operations: [read]
        rate_limit: 2/min
)";

constexpr char kBudgets[] = R"(version: 1
budgets:
  - id: per-user
    scope: user
    limit_usd: 0.10
    window: daily
)";

constexpr char kSlos[] = R"(version: 1
slos:
  - id: calls
    match: {kind: "*"}
    success: {target: 99%, window: 3d}
    circuit_breaker: {minimum_calls: 2, window: 2, failure_rate: 100%, open_for: 30s,
                      half_open_probes: 1}
)";

class StageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto engine = PolicyEngine::FromSources({{"checks.lua", kPolicy}}, "", kPermissions);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    engine_->SetClock(clock_);

    auto prices = PricingTable::FromYaml(
        "models:\n  big: {input: 10, output: 30}\n  small: {input: 1, output: 2}\n", "prices");
    ASSERT_TRUE(prices.ok()) << prices.status().ToString();
    pricing_ = std::move(*prices);

    auto config = ParseBudgetYaml(kBudgets, "budgets");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    BudgetSet::Options bo;
    bo.clock = [c = clock_] { return c->NowNs(); };
    auto set = BudgetSet::Open(std::move(*config), bo);
    ASSERT_TRUE(set.ok()) << set.status().ToString();
    budgets_ = std::move(*set);
    backend_ = BudgetSetBackend(budgets_);

    auto specs = ParseSloYaml(kSlos, "slos");
    ASSERT_TRUE(specs.ok()) << specs.status().ToString();
    SloMonitor::Options so;
    so.clock = clock_;
    auto monitor = SloMonitor::Create(std::move(*specs), so);
    ASSERT_TRUE(monitor.ok()) << monitor.status().ToString();
    slos_ = std::move(*monitor);

    auto ledger = Ledger::Open(tmp_.Sub("ledger"), {});
    ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
    ledger_ = std::move(*ledger);

    ctx_.options = &options_;
    ctx_.clock = clock_.get();
    ctx_.engine = engine_.get();
    ctx_.pricing = &pricing_;
    ctx_.budgets = backend_.get();
    ctx_.slos = slos_.get();
    ctx_.ledger = ledger_.get();
  }

  static CallState Model(const std::string& input, const std::string& model = "big") {
    CallState s;
    s.call_id = 1;
    s.model_call = true;
    s.request.call.hook = Hook::kBeforeModel;
    s.request.call.agent_id = "support";
    s.request.call.user_id = "alice";
    s.request.call.model = model;
    s.request.call.input = input;
    s.request.input_tokens = 1000;
    s.request.max_output_tokens = 500;
    s.span_id = "00000000000000aa";
    return s;
  }

  static CallState Tool(const std::string& tool, const std::string& op) {
    CallState s;
    s.call_id = 2;
    s.request.call.hook = Hook::kBeforeTool;
    s.request.call.agent_id = "support";
    s.request.call.user_id = "alice";
    s.request.call.tool = tool;
    s.request.call.operation = op;
    s.span_id = "00000000000000bb";
    return s;
  }

  int64_t Reserved() { return budgets_->UsageOf("per-user", "alice")->reserved_nanousd; }
  int64_t Spent() { return budgets_->UsageOf("per-user", "alice")->spent_nanousd; }

  // Opens the breaker (two failures), then lets the open period pass: one
  // half-open probe is left.
  void HalfOpen() {
    for (int i = 0; i < 2; ++i) {
      SloOutcome o;
      o.success = false;
      o.error_class = "upstream_5xx";
      slos_->Record(SloCall{"model", "support", "big", ""}, o);
    }
    ASSERT_FALSE(slos_->Admit(SloCall{"model", "support", "big", ""}).allowed);
    clock_->Advance(31 * kNsPerSecond);
  }
  // Whether the half-open probe slot is free (given back if it was).
  bool ProbeFree() {
    const SloCall probe{"model", "support", "big", ""};
    if (!slos_->Admit(probe).allowed) return false;
    slos_->Release(probe);
    return true;
  }

  std::vector<Record> Records() { return testing::AllRecords(ledger_.get()); }

  testing::TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>(kNoon);
  GuardOptions options_;
  std::unique_ptr<PolicyEngine> engine_;
  PricingTable pricing_;
  std::shared_ptr<BudgetSet> budgets_;
  std::shared_ptr<BudgetBackend> backend_;
  std::shared_ptr<SloMonitor> slos_;
  std::unique_ptr<Ledger> ledger_;
  StageContext ctx_;
};

TEST_F(StageTest, PermissionsVoteOnToolCallsOnly) {
  auto stage = MakePermissionsStage(ctx_);
  EXPECT_EQ(stage->name(), "permissions");

  CallState granted = Tool("lookup", "read");
  ASSERT_TRUE(stage->Admit(granted).ok());
  EXPECT_EQ(granted.decision.effect, Effect::kAllow);
  ASSERT_EQ(granted.decision.explain.size(), 1u);
  EXPECT_EQ(granted.decision.explain[0].policy_id, "permissions");
  EXPECT_EQ(granted.decision.policy_version, engine_->version());

  CallState missing = Tool("drop_table", "write");
  ASSERT_TRUE(stage->Admit(missing).ok());
  EXPECT_EQ(missing.decision.effect, Effect::kDeny);
  ASSERT_EQ(missing.decision.reasons.size(), 1u);
  EXPECT_EQ(missing.decision.reasons[0].policy_id, "permissions");

  // The Lua policies are not this stage's: a forbidden model call passes.
  CallState model = Model("FORBIDDEN");
  ASSERT_TRUE(stage->Admit(model).ok());
  EXPECT_EQ(model.decision.effect, Effect::kAllow);
  EXPECT_TRUE(model.decision.explain.empty());
  EXPECT_TRUE(stage->Undo(granted).ok());
  EXPECT_TRUE(stage->Settle(granted, CallOutcome{}).ok());
}

TEST_F(StageTest, PoliciesRedactDowngradeAndGuardTheOutput) {
  auto stage = MakePoliciesStage(ctx_);
  CallState s = Model("cheap: mail bob@example.com");
  ASSERT_TRUE(stage->Admit(s).ok());
  // The first vote (downgrade) stands; both are modify votes and reasons.
  EXPECT_EQ(s.decision.effect, Effect::kModify);
  EXPECT_EQ(s.model(), "small");
  EXPECT_EQ(s.requested_model, "big");
  EXPECT_EQ(s.input(), "cheap: mail bob@example.com");  // the downgrade returned first

  CallState r = Model("mail bob@example.com");
  ASSERT_TRUE(stage->Admit(r).ok());
  EXPECT_EQ(r.input(), "mail [EMAIL]");
  EXPECT_EQ(r.request.call.input, "mail bob@example.com");  // the request is kept

  CallState denied = Model("FORBIDDEN and bob@example.com");
  ASSERT_TRUE(stage->Admit(denied).ok());
  EXPECT_EQ(denied.decision.effect, Effect::kDeny);
  EXPECT_EQ(denied.decision.reasons[0].message, "forbidden words");

  // Settle: the after_model hook withholds a leaking output.
  CallOutcome leak;
  leak.output = "the SECRET is 42";
  ASSERT_TRUE(stage->Settle(r, leak).ok());
  EXPECT_EQ(r.ended.decision.effect, Effect::kDeny);
  EXPECT_TRUE(r.ended.withheld);
  EXPECT_EQ(r.ended.output, "[withheld by policy: leaks a secret]");
  // A failed call's output is not checked: the guard's own allow stands.
  CallState failed = Model("hi");
  CallOutcome error;
  error.ok = false;
  error.output = "SECRET";
  ASSERT_TRUE(stage->Settle(failed, error).ok());
  EXPECT_EQ(failed.ended.decision.effect, Effect::kAllow);
  EXPECT_EQ(failed.ended.output, "SECRET");
}

TEST_F(StageTest, SloAdmissionTakesTheProbeAndUndoGivesItBack) {
  auto stage = MakeSloStage(ctx_);
  HalfOpen();
  CallState probe = Model("hi");
  ASSERT_TRUE(stage->Admit(probe).ok());
  EXPECT_EQ(probe.decision.effect, Effect::kAllow);
  EXPECT_TRUE(probe.slo_admitted);
  // The only probe is taken: the next call is refused by the breaker.
  CallState second = Model("hi");
  ASSERT_TRUE(stage->Admit(second).ok());
  EXPECT_EQ(second.decision.effect, Effect::kDeny);
  EXPECT_EQ(second.decision.reasons[0].policy_id, "slo:calls");
  EXPECT_FALSE(second.slo_admitted);

  ASSERT_TRUE(stage->Undo(probe).ok());
  EXPECT_FALSE(probe.slo_admitted);
  EXPECT_TRUE(ProbeFree());

  // Settled: a success closes the breaker and is counted.
  CallState ok = Model("hi");
  ASSERT_TRUE(stage->Admit(ok).ok());
  ok.latency_ns = 5'000'000;
  ASSERT_TRUE(stage->Settle(ok, CallOutcome{}).ok());
  auto status = slos_->Get("calls");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->calls, 3u);
  EXPECT_EQ(status->breaker_state, "closed");
}

TEST_F(StageTest, BudgetReservesUndoReleasesSettleCharges) {
  auto stage = MakeBudgetStage(ctx_);
  CallState s = Model("hi");
  ASSERT_TRUE(stage->Admit(s).ok());
  EXPECT_EQ(s.decision.effect, Effect::kAllow);
  EXPECT_EQ(s.estimate_nanousd, 25'000'000);  // 1000 x $10/M + 500 x $30/M
  EXPECT_EQ(Reserved(), 25'000'000);
  ASSERT_TRUE(stage->Undo(s).ok());
  EXPECT_EQ(Reserved(), 0);
  EXPECT_TRUE(s.hold.reservations.empty());
  EXPECT_TRUE(stage->Undo(s).ok());  // nothing left to give back

  CallState ran = Model("hi");
  ASSERT_TRUE(stage->Admit(ran).ok());
  ran.ended.cost_nanousd = 11'000'000;
  CallOutcome out;
  out.usage = Usage{800, 0, 0, 0, 100, 0};
  ASSERT_TRUE(stage->Settle(ran, out).ok());
  EXPECT_EQ(Reserved(), 0);
  EXPECT_EQ(Spent(), 11'000'000);

  CallState huge = Model("hi");
  huge.request.input_tokens = 100'000'000;
  ASSERT_TRUE(stage->Admit(huge).ok());
  EXPECT_EQ(huge.decision.effect, Effect::kDeny);
  EXPECT_EQ(huge.decision.reasons[0].policy_id, "budget:per-user");
  EXPECT_EQ(Reserved(), 0);

  // Tool calls are not metered.
  CallState tool = Tool("lookup", "read");
  ASSERT_TRUE(stage->Admit(tool).ok());
  EXPECT_EQ(tool.estimate_nanousd, 0);
}

TEST_F(StageTest, RecordWritesDecisionOutcomeAndVerdict) {
  auto stage = MakeRecordStage(ctx_);
  CallState s = Model("hi");
  s.request.call.trace_id = "0123456789abcdef0123456789abcdef";
  s.decision.Vote(Effect::kRequireApproval, "checks", "a human decides");
  ASSERT_TRUE(stage->Admit(s).ok());
  s.decision.Resolve(true, "approval", "approved by ann");
  Verdict v;
  v.approved = true;
  v.by = "ann";
  v.message = "approved by ann";
  ASSERT_TRUE(stage->Resolve(s, v).ok());
  s.ended.decision = Decision::DefaultAllow();
  s.ended.output = "done";
  s.ended.cost_nanousd = 7;
  s.latency_ns = 42;
  CallOutcome out;
  out.output = "done";
  ASSERT_TRUE(stage->Settle(s, out).ok());
  EXPECT_GT(s.ended.record_seq, s.verdict_seq);
  EXPECT_GT(s.verdict_seq, s.record_seq);

  const std::vector<Record> records = Records();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].effect, "require_approval");
  EXPECT_EQ(records[0].approval_status, "pending");
  EXPECT_EQ(records[1].action, "approval");
  EXPECT_EQ(records[1].effect, "allow");
  EXPECT_EQ(records[1].approved_by, "ann");
  EXPECT_EQ(records[2].output_summary, "done");
  EXPECT_EQ(records[2].duration_ns, 42);
  for (const Record& r : records) {
    EXPECT_EQ(r.span_id, s.span_id);
    EXPECT_EQ(r.timestamp_ns, kNoon);  // the context's clock
  }
}

TEST(StageNames, TheListIsValidatedAndNamesWhatIsWrong) {
  EXPECT_TRUE(ValidateStageNames({"permissions", "policies", "slo", "budget", "record"}).ok());
  EXPECT_TRUE(ValidateStageNames({"budget", "slo", "policies", "permissions", "record"}).ok());
  struct Case {
    std::vector<std::string> names;
    std::string mentions;
  };
  const Case cases[] = {
      {{"permissions", "policies", "slo", "budgets", "record"}, "unknown stage 'budgets'"},
      {{"permissions", "policies", "slo", "slo", "budget", "record"}, "'slo' is listed twice"},
      {{"permissions", "policies", "budget", "record"}, "'slo' is missing"},
      {{"permissions", "policies", "slo", "record", "budget"}, "'record' must come last"},
      {{}, "'permissions' is missing"},
  };
  for (const Case& c : cases) {
    Status s = ValidateStageNames(c.names);
    EXPECT_TRUE(s.IsInvalidArgument()) << c.mentions;
    EXPECT_NE(s.message().find(c.mentions), std::string::npos) << s.ToString();
  }
}

}  // namespace
}  // namespace bastion::guard
