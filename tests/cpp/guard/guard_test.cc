// The guarded call lifecycle: policies, SLO responses, budgets, cost and the
// ledger records of each call.
#include "bastion/guard.h"

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "test_util.h"

namespace bastion {
namespace {

using testing::kNoon;

class GuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = tmp_.path();
    testing::WriteFile(dir + "/policies/redact.lua", R"(
return {
  id = "redact-email",
  before_model = function(call)
    local hits = pii.find(call.input, "email")
    if #hits > 0 then return redact(hits, "no emails to the model") end
  end,
  after_model = function(call, out)
    if string.find(out.text, "SECRET", 1, true) then return deny("leaks a secret") end
    local hits = pii.find(out.text, "email")
    if #hits > 0 then return redact(hits, "no emails to the user") end
  end,
  on_chunk = function(call, chunk)
    if string.find(chunk.text, "FORBIDDEN", 1, true) then return deny("forbidden words") end
  end,
}
)");
    testing::WriteFile(dir + "/policies/payments.lua", R"(
return {
  id = "payments-need-review",
  after_model = function(call, out)
    if string.find(out.text, "WIRE", 1, true) then
      return require_approval("payment instructions need a human")
    end
  end,
}
)");
    testing::WriteFile(dir + "/policies/approve.lua", R"(
return {
  id = "refunds-need-approval",
  before_tool = function(call)
    if call.tool == "refund" then return require_approval("refunds need a human") end
    if call.tool == "drop_table" then return deny("never") end
  end,
}
)");
    testing::WriteFile(dir + "/prices.yaml", "models:\n  big: {input: 10, output: 30}\n  small: {input: 1, output: 2}\n");
    testing::WriteFile(dir + "/budgets.yaml", R"(version: 1
budgets:
  - id: per-user
    scope: user
    limit_usd: 0.10
    window: daily
    alerts:
      - {at: 50%, action: notify}
      - {at: 60%, action: downgrade, model: small}
)");
    testing::WriteFile(dir + "/slos.yaml", R"(version: 1
slos:
  - id: models
    match: {kind: model}
    group_by: [model]
    success: {target: 99%, window: 3d}
    circuit_breaker: {minimum_calls: 3, window: 3, failure_rate: 100%, open_for: 30s}
)");
    options_.policy_dir = dir + "/policies";
    options_.pricing_files = {dir + "/prices.yaml"};
    options_.budgets_file = dir + "/budgets.yaml";
    options_.slos_file = dir + "/slos.yaml";
    options_.ledger_path = dir + "/ledger";
    options_.clock = clock_;
    auto g = Guard::Open(options_);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    guard_ = std::move(*g);
  }

  CallRequest Model(const std::string& input, const std::string& model = "big") {
    CallRequest r;
    r.call.hook = Hook::kBeforeModel;
    r.call.agent_id = "support";
    r.call.user_id = "alice";
    r.call.run_id = "run-1";
    r.call.model = model;
    r.call.input = input;
    r.input_tokens = 1000;
    r.max_output_tokens = 500;
    return r;
  }

  CallRequest Tool(const std::string& tool, const std::string& op = "write") {
    CallRequest r;
    r.call.hook = Hook::kBeforeTool;
    r.call.agent_id = "support";
    r.call.user_id = "alice";
    r.call.run_id = "run-1";
    r.call.tool = tool;
    r.call.operation = op;
    return r;
  }

  std::vector<Record> Records() { return testing::AllRecords(guard_->ledger()); }

  static std::string Attr(const Record& r, const std::string& key) {
    for (const auto& [k, v] : r.attributes) {
      if (k == key) return v;
    }
    return "";
  }

  testing::TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>(kNoon);
  GuardOptions options_;
  std::unique_ptr<Guard> guard_;
};

TEST_F(GuardTest, ModelCallIsRedactedMeteredAndRecordedTwice) {
  auto b = guard_->Begin(Model("mail bob@example.com about it"));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->decision.effect, Effect::kModify);
  EXPECT_EQ(b->input, "mail [EMAIL] about it");
  EXPECT_EQ(b->model, "big");
  EXPECT_EQ(b->estimate_nanousd, 25'000'000);  // 1000 x $10/M + 500 x $30/M
  ASSERT_EQ(b->trace_id.size(), 32u);
  ASSERT_EQ(b->span_id.size(), 16u);

  CallOutcome out;
  out.output = "done, wrote to carol@example.com";
  out.usage = Usage{800, 0, 0, 0, 100, 0};
  out.latency_ns = 1'200'000'000;
  auto e = guard_->End(b->call_id, out);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->output, "done, wrote to [EMAIL]");
  ASSERT_TRUE(e->cost_nanousd);
  EXPECT_EQ(*e->cost_nanousd, 11'000'000);  // 800 x 10 + 100 x 30 per 1M

  auto usage = guard_->budgets()->UsageOf("per-user", "alice");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->spent_nanousd, 11'000'000);
  EXPECT_EQ(usage->reserved_nanousd, 0);
  auto slo = guard_->slos()->Get("models", "model=big");
  ASSERT_TRUE(slo.ok());
  EXPECT_EQ(slo->calls, 1u);

  std::vector<Record> records = Records();
  ASSERT_EQ(records.size(), 2u);
  const Record& decision = records[0];
  const Record& outcome = records[1];
  EXPECT_EQ(decision.action, "model_call");
  EXPECT_EQ(Attr(decision, "phase"), "decision");
  EXPECT_EQ(decision.effect, "modify");
  EXPECT_EQ(decision.input_summary, "mail [EMAIL] about it");
  EXPECT_EQ(Attr(outcome, "phase"), "outcome");
  EXPECT_EQ(outcome.output_summary, "done, wrote to [EMAIL]");
  EXPECT_EQ(outcome.cost_nanousd, 11'000'000);
  EXPECT_EQ(outcome.tokens.input, 800u);
  EXPECT_EQ(outcome.duration_ns, 1'200'000'000);
  for (const Record& r : records) {
    EXPECT_EQ(r.trace_id, b->trace_id);
    EXPECT_EQ(r.span_id, b->span_id);
    EXPECT_EQ(r.run_id, "run-1");
    EXPECT_EQ(r.policy_version, guard_->policies()->version());
  }
  EXPECT_TRUE(guard_->ledger()->Verify({}).ok);
}

TEST_F(GuardTest, BudgetDowngradesThenDenies) {
  // $0.10 a day: the first call reserves 0.025 (25%), then settles at 0.04.
  auto a = guard_->Begin(Model("hi"));
  ASSERT_TRUE(a.ok());
  CallOutcome big;
  big.usage = Usage{1000, 0, 0, 0, 1000, 0};  // $0.04
  ASSERT_TRUE(guard_->End(a->call_id, big).ok());
  // 0.04 + 0.025 = 65% committed: the 60% downgrade applies to this call.
  auto b = guard_->Begin(Model("again"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->model, "small");
  EXPECT_EQ(b->decision.effect, Effect::kModify);
  ASSERT_EQ(b->budget_alerts.size(), 2u);  // 50% notify and 60% downgrade fired
  EXPECT_EQ(b->budget_alerts[1].action, AlertAction::kDowngrade);
  CallOutcome small;
  small.usage = Usage{1000, 0, 0, 0, 1000, 0};  // $0.003 at small's prices
  auto e = guard_->End(b->call_id, small);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e->cost_nanousd, 3'000'000);
  // Now 0.043 spent; a 1M-token prompt cannot fit.
  CallRequest huge = Model("x");
  huge.input_tokens = 1'000'000;
  auto c = guard_->Begin(huge);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->decision.effect, Effect::kDeny);
  ASSERT_EQ(c->decision.reasons.size(), 1u);
  EXPECT_EQ(c->decision.reasons[0].policy_id, "budget:per-user");
  // The refusal says what the call would have cost: 1M x $10/M + 500 x $30/M.
  EXPECT_EQ(c->estimate_nanousd, 10'015'000'000);
  EXPECT_TRUE(guard_->End(c->call_id, {}).status().IsNotFound());  // over at Begin

  std::vector<Record> records = Records();
  int alerts = 0;
  for (const Record& r : records) alerts += r.action == "budget_alert";
  EXPECT_EQ(alerts, 2);
  EXPECT_EQ(records.back().effect, "deny");
  EXPECT_EQ(Attr(records.back(), "estimate_usd"), FormatUsd(10'015'000'000));
}

TEST_F(GuardTest, UnpricedModelsCoveredByABudgetAreDenied) {
  auto b = guard_->Begin(Model("hi", "mystery-model"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->decision.effect, Effect::kDeny);
  EXPECT_NE(b->decision.reasons[0].message.find("has no price"), std::string::npos);
}

TEST_F(GuardTest, ApprovalHoldsTheCallUntilAHumanDecides) {
  auto b = guard_->Begin(Tool("refund"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->decision.effect, Effect::kRequireApproval);
  EXPECT_TRUE(guard_->End(b->call_id, {}).status().IsFailedPrecondition());
  auto approved = guard_->Approve(b->call_id, true, "manager@acme", "customer is right");
  ASSERT_TRUE(approved.ok()) << approved.status().ToString();
  EXPECT_EQ(approved->decision.effect, Effect::kAllow);
  CallOutcome out;
  out.output = "refunded";
  ASSERT_TRUE(guard_->End(b->call_id, out).ok());

  auto r = guard_->Begin(Tool("refund"));
  ASSERT_TRUE(r.ok());
  auto rejected = guard_->Approve(r->call_id, false, "manager@acme", "fraud");
  ASSERT_TRUE(rejected.ok());
  EXPECT_EQ(rejected->decision.effect, Effect::kDeny);
  EXPECT_TRUE(guard_->End(r->call_id, {}).status().IsNotFound());
  EXPECT_TRUE(guard_->Approve(r->call_id, true, "x", "").status().IsNotFound());

  std::vector<Record> records = Records();
  std::vector<std::string> shape;
  for (const Record& rec : records) {
    shape.push_back(rec.action + ":" + (rec.approval_status.empty() ? rec.effect
                                                                      : rec.approval_status));
  }
  EXPECT_EQ(shape, (std::vector<std::string>{"tool_call:pending", "approval:approved",
                                             "tool_call:allow", "tool_call:pending",
                                             "approval:rejected"}));
  EXPECT_EQ(records[1].approved_by, "manager@acme");
  EXPECT_EQ(records[1].span_id, records[0].span_id);
}

TEST_F(GuardTest, IdempotencyKeyReturnsTheSameCallWithoutRecordingAgain) {
  CallRequest req = Tool("refund");
  req.idempotency_key = "thread-1/call-7";
  auto first = guard_->Begin(req);
  ASSERT_TRUE(first.ok());
  auto again = guard_->Begin(req);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->resumed);
  EXPECT_EQ(again->call_id, first->call_id);
  EXPECT_EQ(Records().size(), 1u);
  ASSERT_TRUE(guard_->Approve(first->call_id, true, "boss", "").ok());
  auto after = guard_->Begin(req);  // still in flight: the approved call
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->decision.effect, Effect::kAllow);
  EXPECT_EQ(*guard_->FindByKey("thread-1/call-7"), first->call_id);
  CallRequest other = Tool("delete_account");
  other.idempotency_key = "thread-1/call-7";
  EXPECT_TRUE(guard_->Begin(other).status().IsInvalidArgument());
  ASSERT_TRUE(guard_->End(first->call_id, {}).ok());
  EXPECT_TRUE(guard_->FindByKey("thread-1/call-7").status().IsNotFound());
  // Ended, and still the same call: returned as it ended, not begun anew.
  auto ended = guard_->Begin(req);
  ASSERT_TRUE(ended.ok());
  EXPECT_TRUE(ended->resumed);
  EXPECT_EQ(ended->state, CallPhase::kEnded);
  EXPECT_TRUE(guard_->End(ended->call_id, {}).status().IsNotFound());
  EXPECT_EQ(Records().size(), 3u);
}

TEST_F(GuardTest, CallAttributesReachTheRecordsAndGuardKeysWin) {
  CallRequest req = Model("hi");
  req.call.attributes = {{"ticket", "T-9"}, {"phase", "mine"}};
  auto b = guard_->Begin(req);
  ASSERT_TRUE(b.ok());
  CallOutcome out;
  out.usage = Usage{10, 0, 0, 0, 10, 0};
  ASSERT_TRUE(guard_->End(b->call_id, out).ok());
  std::vector<Record> records = Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(Attr(records[0], "ticket"), "T-9");
  EXPECT_EQ(Attr(records[0], "phase"), "decision");
  EXPECT_EQ(Attr(records[1], "ticket"), "T-9");
  EXPECT_EQ(Attr(records[1], "phase"), "outcome");
}

TEST_F(GuardTest, StreamingChunksAreCheckedAndCanStop) {
  auto b = guard_->Begin(Model("hi"));
  ASSERT_TRUE(b.ok());
  auto c1 = guard_->Chunk(b->call_id, "all fine ");
  ASSERT_TRUE(c1.ok());
  EXPECT_FALSE(c1->stop);
  EXPECT_EQ(c1->text, "all fine ");
  auto c2 = guard_->Chunk(b->call_id, "FORBID");
  ASSERT_TRUE(c2.ok());
  EXPECT_FALSE(c2->stop);
  auto c3 = guard_->Chunk(b->call_id, "DEN words");  // the window spans the chunks
  ASSERT_TRUE(c3.ok());
  EXPECT_TRUE(c3->stop);
  CallOutcome out;
  out.ok = false;
  out.error_class = "stopped_by_policy";
  ASSERT_TRUE(guard_->End(b->call_id, out).ok());
  // Failed without usage: the reservation is released.
  EXPECT_EQ(guard_->budgets()->UsageOf("per-user", "alice")->reserved_nanousd, 0);
  EXPECT_EQ(guard_->budgets()->UsageOf("per-user", "alice")->spent_nanousd, 0);
}

TEST_F(GuardTest, OutputGuardrailWithholdsOutput) {
  auto b = guard_->Begin(Model("hi"));
  ASSERT_TRUE(b.ok());
  CallOutcome out;
  out.output = "the SECRET is 42";
  out.usage = Usage{10, 0, 0, 0, 10, 0};
  auto e = guard_->End(b->call_id, out);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->withheld);
  EXPECT_EQ(e->output, "[withheld by policy: leaks a secret]");
  EXPECT_EQ(Records().back().output_summary, "[withheld by policy: leaks a secret]");
}

// An output guardrail that asks for approval holds the output: End shows a
// notice, not the output, until ReviewOutput records a verdict and releases
// it (redacted) or keeps it back. Cost and SLO are settled at End: the call ran.
TEST_F(GuardTest, OutputHeldForReviewIsReleasedOnlyByAVerdict) {
  for (const bool approve : {true, false}) {
    SCOPED_TRACE(approve ? "approved" : "rejected");
    CallRequest req = Model("how do I pay?");
    req.idempotency_key = approve ? "k-approve" : "k-reject";
    auto b = guard_->Begin(req);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    CallOutcome o;
    o.output = "WIRE the money to bob@example.com";
    o.usage = Usage{.input = 1000, .output = 20};
    auto e = guard_->End(b->call_id, o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->decision.effect, Effect::kRequireApproval);
    EXPECT_TRUE(e->awaiting_approval);
    EXPECT_TRUE(e->withheld);
    EXPECT_EQ(e->output.find("WIRE"), std::string::npos) << e->output;
    EXPECT_NE(e->output.find("payment instructions need a human"), std::string::npos);
    EXPECT_EQ(e->held_output, "WIRE the money to [EMAIL]");
    EXPECT_TRUE(e->cost_nanousd.has_value());

    // Held: not ended twice, not approved as a begin approval, and found by key.
    EXPECT_TRUE(guard_->End(b->call_id, o).status().IsFailedPrecondition());
    EXPECT_TRUE(guard_->Approve(b->call_id, true, "ann", "").status().IsFailedPrecondition());
    auto again = guard_->Begin(req);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_TRUE(again->resumed);
    EXPECT_EQ(again->call_id, b->call_id);
    EXPECT_TRUE(guard_->ReviewOutput(b->call_id, true, "", "").status().IsInvalidArgument());

    auto shown = guard_->ReviewOutput(b->call_id, approve, "ann", approve ? "" : "fraud risk");
    ASSERT_TRUE(shown.ok()) << shown.status().ToString();
    if (approve) {
      EXPECT_EQ(*shown, "WIRE the money to [EMAIL]");
    } else {
      EXPECT_EQ(*shown, "[withheld: output rejected by ann: fraud risk]");
    }
    EXPECT_TRUE(guard_->ReviewOutput(b->call_id, true, "ann", "").status().IsNotFound());
    EXPECT_TRUE(guard_->FindByKey(req.idempotency_key).status().IsNotFound());
  }

  const std::vector<Record> records = Records();
  ASSERT_EQ(records.size(), 6u);
  for (int i = 0; i < 2; ++i) {
    const Record& decision = records[3 * i];
    const Record& outcome = records[3 * i + 1];
    const Record& verdict = records[3 * i + 2];
    EXPECT_EQ(Attr(decision, "phase"), "decision");
    EXPECT_EQ(outcome.effect, "require_approval");
    EXPECT_EQ(outcome.approval_status, "pending");
    EXPECT_EQ(outcome.output_summary, "WIRE the money to [EMAIL]");
    EXPECT_EQ(verdict.action, "approval");
    EXPECT_EQ(Attr(verdict, "stage"), "output");
    EXPECT_EQ(Attr(verdict, "call"), "model_call");
    EXPECT_EQ(verdict.approved_by, "ann");
    EXPECT_EQ(verdict.approval_status, i == 0 ? "approved" : "rejected");
    EXPECT_EQ(verdict.effect, i == 0 ? "allow" : "deny");
    EXPECT_EQ(verdict.span_id, outcome.span_id);
    EXPECT_EQ(verdict.trace_id, outcome.trace_id);
  }
}

TEST_F(GuardTest, FailuresOpenTheBreakerAndTheNextCallIsRefused) {
  for (int i = 0; i < 3; ++i) {
    auto b = guard_->Begin(Model("hi"));
    ASSERT_TRUE(b.ok());
    ASSERT_EQ(b->decision.effect, Effect::kAllow) << i;
    CallOutcome out;
    out.ok = false;
    out.error_class = "upstream_5xx";
    ASSERT_TRUE(guard_->End(b->call_id, out).ok());
  }
  auto refused = guard_->Begin(Model("hi"));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->decision.effect, Effect::kDeny);
  EXPECT_EQ(refused->decision.reasons[0].policy_id, "slo:models");
  EXPECT_NE(refused->decision.reasons[0].message.find("circuit breaker open"), std::string::npos);
  clock_->Advance(31'000'000'000);
  auto probe = guard_->Begin(Model("hi"));
  ASSERT_TRUE(probe.ok());
  EXPECT_EQ(probe->decision.effect, Effect::kAllow);
}

TEST_F(GuardTest, ABudgetRefusalGivesBackTheHalfOpenProbe) {
  for (int i = 0; i < 3; ++i) {
    auto b = guard_->Begin(Model("hi"));
    ASSERT_TRUE(b.ok());
    CallOutcome out;
    out.ok = false;
    out.error_class = "upstream_5xx";
    ASSERT_TRUE(guard_->End(b->call_id, out).ok());
  }
  clock_->Advance(31'000'000'000);  // half-open: 5 probes (the default)
  // Six calls admitted as probes, then refused by the budget (too big to
  // fit): none may keep its probe slot.
  for (int i = 0; i < 6; ++i) {
    CallRequest huge = Model("hi");
    huge.input_tokens = 100'000'000;
    auto refused = guard_->Begin(huge);
    ASSERT_TRUE(refused.ok());
    ASSERT_EQ(refused->decision.effect, Effect::kDeny);
    EXPECT_EQ(refused->decision.reasons[0].policy_id, "budget:per-user") << i;
  }
  auto probe = guard_->Begin(Model("hi"));
  ASSERT_TRUE(probe.ok());
  EXPECT_EQ(probe->decision.effect, Effect::kAllow);
}

TEST_F(GuardTest, HighRiskToolDecisionsAreWrittenBeforeTheToolRuns) {
  auto denied = guard_->Begin(Tool("drop_table"));
  ASSERT_TRUE(denied.ok());
  EXPECT_EQ(denied->decision.effect, Effect::kDeny);
  auto read = guard_->Begin(Tool("lookup", "read"));
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->decision.effect, Effect::kAllow);
  // The decision records exist now, before any End.
  std::vector<Record> records = Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].tool, "drop_table");
  EXPECT_EQ(records[0].effect, "deny");
}

TEST_F(GuardTest, ManyThreadsBeginAndEndConcurrently) {
  std::vector<std::thread> threads;
  std::atomic<int> ended{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        CallRequest req = Tool("lookup", "read");
        req.call.run_id = "run-" + std::to_string(t);
        auto b = guard_->Begin(req);
        if (!b.ok()) continue;
        CallOutcome out;
        out.output = "ok";
        if (guard_->End(b->call_id, out).ok()) ++ended;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ended.load(), 200);
  EXPECT_EQ(Records().size(), 400u);
  EXPECT_TRUE(guard_->ledger()->Verify({}).ok);
}

TEST(GuardOpen, ConfigurationErrorsNameTheFile) {
  testing::TempDir tmp;
  testing::WriteFile(tmp.Sub("budgets.yaml"), "version: 1\nbudgets:\n  - {id: a, scope: nobody}\n");
  GuardOptions o;
  o.budgets_file = tmp.Sub("budgets.yaml");
  auto g = Guard::Open(o);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("budgets.yaml:3:"), std::string::npos)
      << g.status().ToString();
  o.budgets_file.clear();
  o.policy_dir = tmp.Sub("missing");
  EXPECT_FALSE(Guard::Open(o).ok());
}

}  // namespace
}  // namespace bastion
