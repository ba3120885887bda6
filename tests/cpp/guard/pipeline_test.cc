// The guard's stages as a pipeline: their order as data, undo on every
// denial path, one clock, the durability of decisions, a plugged-in budget
// backend.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "bastion/guard.h"
#include "test_util.h"

namespace bastion {
namespace {

using testing::kNoon;

// Counts what the guard asks of its budgets; refuses every reservation when
// `refuse` is set.
class CountingBackend final : public BudgetBackend {
 public:
  Result<BudgetHold> Reserve(const BudgetSubject& subject, int64_t estimate_nanousd,
                             std::string* refused_by) override {
    ++reserves;
    if (refuse) {
      if (refused_by) *refused_by = "fake";
      return Status::FailedPrecondition("budget 'fake' is spent");
    }
    BudgetHold hold;
    Reservation r;
    r.id = static_cast<uint64_t>(reserves);
    r.budget_id = "fake";
    r.estimate_nanousd = estimate_nanousd;
    hold.reservations.push_back(r);
    hold.estimate_nanousd = estimate_nanousd;
    held += estimate_nanousd;
    return hold;
  }
  Result<HoldSettlement> Settle(const BudgetHold& hold, int64_t actual_nanousd) override {
    ++settles;
    held -= hold.estimate_nanousd;
    spent += actual_nanousd;
    HoldSettlement s;
    s.actual_nanousd = actual_nanousd;
    return s;
  }
  Status Release(const BudgetHold& hold) override {
    ++releases;
    held -= hold.estimate_nanousd;
    return Status::OK();
  }
  std::vector<std::string> CoveringBudgets(const BudgetSubject&) const override {
    return {"fake"};
  }

  bool refuse = false;
  int reserves = 0, settles = 0, releases = 0;
  int64_t held = 0, spent = 0;
};

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = tmp_.path();
    testing::WriteFile(dir + "/policies/checks.lua", R"(
return {
  id = "checks",
  before_model = function(call)
    if string.find(call.input, "FORBIDDEN", 1, true) then return deny("forbidden words") end
    if string.find(call.input, "APPROVE", 1, true) then return require_approval("a human") end
  end,
}
)");
    testing::WriteFile(dir + "/policies/permissions.yaml", R"(version: 1
agents:
  support:
    tools:
      - name: lookup
        operations: [read]
        rate_limit: 2/min
      - name: refund
        operations: [write]
)");
    testing::WriteFile(dir + "/prices.yaml", "models:\n  big: {input: 10, output: 30}\n");
    testing::WriteFile(dir + "/budgets.yaml", R"(version: 1
budgets:
  - id: per-user
    scope: user
    limit_usd: 0.10
    window: daily
)");
    testing::WriteFile(dir + "/slos.yaml", R"(version: 1
slos:
  - id: calls
    match: {kind: "*"}
    success: {target: 99%, window: 3d}
    circuit_breaker: {minimum_calls: 2, window: 2, failure_rate: 100%, open_for: 30s,
                      half_open_probes: 1}
)");
    options_.policy_dir = dir + "/policies";
    options_.pricing_files = {dir + "/prices.yaml"};
    options_.budgets_file = dir + "/budgets.yaml";
    options_.slos_file = dir + "/slos.yaml";
    options_.ledger_path = dir + "/ledger";
    options_.clock = clock_;
    options_.time_stages = true;
  }

  void Open(std::vector<std::string> stages = {}) {
    if (!stages.empty()) options_.stages = std::move(stages);
    guard_.reset();
    auto g = Guard::Open(options_);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    guard_ = std::move(*g);
  }

  static CallRequest Model(const std::string& input) {
    CallRequest r;
    r.call.hook = Hook::kBeforeModel;
    r.call.agent_id = "support";
    r.call.user_id = "alice";
    r.call.model = "big";
    r.call.input = input;
    r.input_tokens = 1000;
    r.max_output_tokens = 500;
    return r;
  }

  static CallRequest Tool(const std::string& tool, const std::string& op) {
    CallRequest r;
    r.call.hook = Hook::kBeforeTool;
    r.call.agent_id = "support";
    r.call.user_id = "alice";
    r.call.tool = tool;
    r.call.operation = op;
    return r;
  }

  Effect BeginEffect(const CallRequest& req) {
    auto b = guard_->Begin(req);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? b->decision.effect : Effect::kDeny;
  }

  // Two failed calls open the breaker; 31 s later it is half-open with one
  // probe slot.
  void HalfOpen() {
    for (int i = 0; i < 2; ++i) {
      auto b = guard_->Begin(Model("hi"));
      ASSERT_TRUE(b.ok());
      ASSERT_EQ(b->decision.effect, Effect::kAllow);
      CallOutcome failed;
      failed.ok = false;
      failed.error_class = "upstream_5xx";
      ASSERT_TRUE(guard_->End(b->call_id, failed).ok());
    }
    ASSERT_EQ(BeginEffect(Model("hi")), Effect::kDeny);  // open
    clock_->Advance(31 * kNsPerSecond);
  }

  bool ProbeFree() {
    const SloCall probe{"model", "support", "big", ""};
    if (!guard_->slos()->Admit(probe).allowed) return false;
    guard_->slos()->Release(probe);
    return true;
  }
  int64_t Reserved() { return guard_->budgets()->UsageOf("per-user", "alice")->reserved_nanousd; }

  uint64_t Calls(const std::string& stage, const std::string& phase) {
    for (const StageTiming& t : guard_->StageTimings()) {
      if (t.stage == stage && t.phase == phase) return t.calls;
    }
    return 0;
  }

  std::vector<Record> Records() { return testing::AllRecords(guard_->ledger()); }

  testing::TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>(kNoon);
  GuardOptions options_;
  std::unique_ptr<Guard> guard_;
};

// Every way a call can be refused after a stage took something for it: the
// half-open probe and the reservation are given back each time. Permissions
// and policies run after slo and budget here, so they deny a call those
// stages admitted.
TEST_F(PipelineTest, EveryDenialPathUndoesWhatTheStagesTook) {
  Open({"slo", "budget", "permissions", "policies", "record"});
  HalfOpen();
  ASSERT_TRUE(ProbeFree());

  SCOPED_TRACE("denied by permissions");
  ASSERT_EQ(BeginEffect(Tool("drop_table", "write")), Effect::kDeny);
  EXPECT_TRUE(ProbeFree());

  SCOPED_TRACE("denied by a policy");
  auto policy = guard_->Begin(Model("FORBIDDEN"));
  ASSERT_TRUE(policy.ok());
  ASSERT_EQ(policy->decision.effect, Effect::kDeny);
  EXPECT_EQ(policy->decision.reasons[0].policy_id, "checks");
  EXPECT_EQ(Reserved(), 0);
  EXPECT_TRUE(ProbeFree());

  SCOPED_TRACE("denied by the budget");
  CallRequest huge = Model("hi");
  huge.input_tokens = 100'000'000;
  auto budget = guard_->Begin(huge);
  ASSERT_TRUE(budget.ok());
  ASSERT_EQ(budget->decision.effect, Effect::kDeny);
  EXPECT_EQ(budget->decision.reasons[0].policy_id, "budget:per-user");
  EXPECT_TRUE(ProbeFree());

  SCOPED_TRACE("rejected by a human");
  auto pending = guard_->Begin(Model("APPROVE this"));
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->decision.effect, Effect::kRequireApproval);
  EXPECT_EQ(Reserved(), 25'000'000);  // held while the human decides
  EXPECT_FALSE(ProbeFree());
  auto rejected = guard_->Approve(pending->call_id, false, "ann", "no");
  ASSERT_TRUE(rejected.ok()) << rejected.status().ToString();
  EXPECT_EQ(rejected->decision.effect, Effect::kDeny);
  EXPECT_EQ(Reserved(), 0);
  EXPECT_TRUE(ProbeFree());

  SCOPED_TRACE("the record could not be written");
  ASSERT_TRUE(guard_->ledger()->Close().ok());
  auto unrecorded = guard_->Begin(Model("hi"));
  EXPECT_FALSE(unrecorded.ok());
  EXPECT_EQ(Reserved(), 0);
  EXPECT_TRUE(ProbeFree());

  // Undo ran in reverse order, once per admitted stage of each refused call:
  // permissions denial (slo), policy (budget, slo), budget (slo), rejection
  // and record failure (budget, slo each; policies and permissions too).
  EXPECT_EQ(Calls("slo", "undo"), 5u);
  EXPECT_EQ(Calls("budget", "undo"), 4u);
}

TEST_F(PipelineTest, DenialBySloIsUndoneWhenTheBudgetCameFirst) {
  Open({"budget", "slo", "permissions", "policies", "record"});
  HalfOpen();
  ASSERT_TRUE(guard_->Begin(Model("hi")).ok());  // takes the only probe (in flight)
  auto refused = guard_->Begin(Model("hi"));
  ASSERT_TRUE(refused.ok());
  ASSERT_EQ(refused->decision.effect, Effect::kDeny);
  EXPECT_EQ(refused->decision.reasons[0].policy_id, "slo:calls");
  EXPECT_EQ(Reserved(), 25'000'000);  // the probe's own reservation only
}

// A budget before the SLO stage: its refusal never reaches the breaker.
TEST_F(PipelineTest, ABudgetRefusalFirstNeverTouchesTheSloStage) {
  auto backend = std::make_shared<CountingBackend>();
  backend->refuse = true;
  options_.budgets_file.clear();
  options_.budget_backend = backend;
  Open({"permissions", "policies", "budget", "slo", "record"});
  auto b = guard_->Begin(Model("hi"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->decision.effect, Effect::kDeny);
  EXPECT_EQ(b->decision.reasons[0].policy_id, "budget:fake");
  EXPECT_EQ(backend->reserves, 1);
  EXPECT_EQ(Calls("slo", "admit"), 0u);
  EXPECT_EQ(Calls("slo", "undo"), 0u);

  // The default order: the SLO admits first, and gives back on the refusal.
  options_.stages = GuardOptions{}.stages;
  Open();
  ASSERT_EQ(BeginEffect(Model("hi")), Effect::kDeny);
  EXPECT_EQ(Calls("slo", "admit"), 1u);
  EXPECT_EQ(Calls("slo", "undo"), 1u);
}

// The SLO before the budget (the default): a call the breaker refuses never
// reserves; the other way round it reserves and releases.
TEST_F(PipelineTest, AnSloRefusalFirstNeverReserves) {
  auto backend = std::make_shared<CountingBackend>();
  options_.budgets_file.clear();
  options_.budget_backend = backend;
  Open();
  HalfOpen();
  ASSERT_TRUE(guard_->Begin(Model("hi")).ok());  // the probe
  const int reserves = backend->reserves;
  ASSERT_EQ(BeginEffect(Model("hi")), Effect::kDeny);
  EXPECT_EQ(backend->reserves, reserves);
  EXPECT_EQ(backend->releases, 2);  // the two failed calls of HalfOpen

  Open({"permissions", "policies", "budget", "slo", "record"});
  HalfOpen();
  ASSERT_TRUE(guard_->Begin(Model("hi")).ok());
  const int before = backend->reserves;
  const int64_t held = backend->held;
  ASSERT_EQ(BeginEffect(Model("hi")), Effect::kDeny);
  EXPECT_EQ(backend->reserves, before + 1);
  EXPECT_EQ(backend->held, held);  // released again
}

TEST_F(PipelineTest, AnotherBudgetBackendIsSettledAtTheCost) {
  auto backend = std::make_shared<CountingBackend>();
  options_.budgets_file.clear();
  options_.budget_backend = backend;
  Open();
  EXPECT_EQ(guard_->budgets(), nullptr);
  EXPECT_EQ(guard_->budget_backend(), backend.get());
  auto b = guard_->Begin(Model("hi"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->estimate_nanousd, 25'000'000);
  EXPECT_EQ(backend->held, 25'000'000);
  CallOutcome out;
  out.usage = Usage{800, 0, 0, 0, 100, 0};
  ASSERT_TRUE(guard_->End(b->call_id, out).ok());
  EXPECT_EQ(backend->held, 0);
  EXPECT_EQ(backend->spent, 11'000'000);

  options_.budgets_file = tmp_.Sub("budgets.yaml");
  auto both = Guard::Open(options_);
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("budget_backend"), std::string::npos);
}

TEST_F(PipelineTest, OpenNamesABadStageList) {
  options_.stages = {"permissions", "policies", "slo", "budget", "record", "audit"};
  auto g = Guard::Open(options_);
  ASSERT_FALSE(g.ok());
  EXPECT_TRUE(g.status().IsInvalidArgument());
  EXPECT_NE(g.status().message().find("unknown stage 'audit'"), std::string::npos)
      << g.status().ToString();
  options_.stages = {"record", "permissions", "policies", "slo", "budget"};
  g = Guard::Open(options_);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("'record' must come last"), std::string::npos)
      << g.status().ToString();
}

// The permissions' rate limit runs on the guard's clock: real time passing
// refills nothing, the manual clock advancing does.
TEST_F(PipelineTest, PermissionRateLimitsRefillOnTheGuardsClock) {
  Open();
  EXPECT_EQ(BeginEffect(Tool("lookup", "read")), Effect::kAllow);
  EXPECT_EQ(BeginEffect(Tool("lookup", "read")), Effect::kAllow);
  auto third = guard_->Begin(Tool("lookup", "read"));
  ASSERT_TRUE(third.ok());
  ASSERT_EQ(third->decision.effect, Effect::kDeny);
  EXPECT_NE(third->decision.reasons[0].message.find("rate limit"), std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // 2/min: 1.7 tokens of real time
  EXPECT_EQ(BeginEffect(Tool("lookup", "read")), Effect::kDeny);
  clock_->Advance(30 * kNsPerSecond);  // one token
  EXPECT_EQ(BeginEffect(Tool("lookup", "read")), Effect::kAllow);
  EXPECT_EQ(BeginEffect(Tool("lookup", "read")), Effect::kDeny);
}

TEST_F(PipelineTest, LatencyAndTimestampsComeFromTheGuardsClock) {
  Open();
  auto b = guard_->Begin(Tool("lookup", "read"));
  ASSERT_TRUE(b.ok());
  clock_->Advance(1'500'000'000);
  CallOutcome out;
  out.output = "found";
  ASSERT_TRUE(guard_->End(b->call_id, out).ok());
  const std::vector<Record> records = Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].timestamp_ns, kNoon);
  EXPECT_EQ(records[1].timestamp_ns, kNoon + 1'500'000'000);
  EXPECT_EQ(records[1].duration_ns, 1'500'000'000);
}

// A denial lets nothing run: its record is queued (written by the next
// waited append or within group_sync_interval), never waited for. An
// allowed high-risk decision is written before Begin returns.
TEST_F(PipelineTest, DenialsAreQueuedAllowedHighRiskDecisionsAreWritten) {
  options_.ledger.group_sync_interval = std::chrono::hours(1);  // nothing writes by itself
  Open();
  auto denied = guard_->Begin(Tool("drop_table", "write"));
  ASSERT_TRUE(denied.ok());
  ASSERT_EQ(denied->decision.effect, Effect::kDeny);
  ASSERT_GT(denied->record_seq, 0u);
  auto reader = Ledger::OpenReader(options_.ledger_path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_TRUE((*reader)->Get(denied->record_seq).status().IsNotFound());

  auto allowed = guard_->Begin(Tool("refund", "write"));
  ASSERT_TRUE(allowed.ok());
  ASSERT_EQ(allowed->decision.effect, Effect::kAllow);
  ASSERT_TRUE((*reader)->Refresh().ok());
  // Written, and with it the denial queued before it.
  EXPECT_TRUE((*reader)->Get(allowed->record_seq).ok());
  EXPECT_TRUE((*reader)->Get(denied->record_seq).ok());
}

// Without a bundle, budgets or SLOs the guard's own allow vote stands.
TEST_F(PipelineTest, AGuardWithoutPoliciesAllowsWhatNoStageObjectsTo) {
  GuardOptions bare;
  bare.ledger_path = tmp_.Sub("bare-ledger");
  auto g = Guard::Open(bare);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  for (const CallRequest& req : {Tool("drop_table", "write"), Model("FORBIDDEN")}) {
    auto b = (*g)->Begin(req);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ(b->decision.effect, Effect::kAllow);
    EXPECT_TRUE(b->decision.reasons.empty());
    CallOutcome out;
    out.output = "done";
    auto e = (*g)->End(b->call_id, out);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->decision.effect, Effect::kAllow);
    EXPECT_EQ(e->output, "done");
  }
}

// What happened to a shared budget store reaches the ledger with the next
// call that drains it, one record an event.
class EventfulBackend final : public BudgetBackend {
 public:
  Result<BudgetHold> Reserve(const BudgetSubject& s, int64_t e, std::string* r) override {
    return inner.Reserve(s, e, r);
  }
  Result<HoldSettlement> Settle(const BudgetHold& h, int64_t a) override {
    return inner.Settle(h, a);
  }
  Status Release(const BudgetHold& h) override { return inner.Release(h); }
  std::vector<std::string> CoveringBudgets(const BudgetSubject& s) const override {
    return inner.CoveringBudgets(s);
  }
  std::vector<StoreEvent> TakeEvents() override {
    std::vector<StoreEvent> out;
    out.swap(events);
    return out;
  }
  CountingBackend inner;
  std::vector<StoreEvent> events;
};

TEST_F(PipelineTest, BudgetStoreEventsAreRecorded) {
  auto backend = std::make_shared<EventfulBackend>();
  options_.budgets_file.clear();
  options_.budget_backend = backend;
  Open();
  backend->events.push_back({"store_degraded", "redis://cache:6379/0", "connection refused",
                             kNoon});
  auto b = guard_->Begin(Model("hi"));
  ASSERT_TRUE(b.ok());
  backend->events.push_back({"store_restored", "redis://cache:6379/0", "answers", kNoon + 5});
  CallOutcome out;
  out.usage = Usage{800, 0, 0, 0, 100, 0};
  ASSERT_TRUE(guard_->End(b->call_id, out).ok());
  ASSERT_TRUE(guard_->ledger()->Flush().ok());
  std::vector<std::string> kinds;
  for (const Record& r : Records()) {
    if (r.action != "store_degraded" && r.action != "store_restored") continue;
    kinds.push_back(r.action);
    auto attr = [&](const std::string& k) {
      for (const auto& [key, value] : r.attributes) {
        if (key == k) return value;
      }
      return std::string();
    };
    EXPECT_EQ(attr("store"), "redis://cache:6379/0");
    EXPECT_FALSE(attr("detail").empty());
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"store_degraded", "store_restored"}));
}

}  // namespace
}  // namespace bastion
