// The stages of a guarded call, and the pipeline that runs them over one
// call state. docs/architecture.md#stages describes them for users.
//
// A stage is one concern of the guard (permissions, policies, SLO admission,
// budget, records). Begin runs every stage's Admit in order; End every
// stage's Settle; Approve and ReviewOutput every stage's Resolve. A call the
// guard will not let run after all (a later stage denied it, its record
// could not be written, a human rejected it) has every admitted stage's Undo
// run, in reverse order, so it holds nothing.
#ifndef BASTION_GUARD_STAGE_H_
#define BASTION_GUARD_STAGE_H_

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/budget_backend.h"
#include "bastion/guard.h"
#include "bastion/policy_state.h"

namespace bastion::guard {

class Stream;

// Everything one guarded call carries from Begin to its end. Owned by the
// guard: one thread at a time works on it.
struct CallState {
  uint64_t call_id = 0;
  bool model_call = false;
  // The request; request.call is the call as the stages left it: its model
  // after downgrades, its trace id filled in.
  CallRequest request;
  std::string span_id;
  int64_t started_ns = 0;  // the guard's clock at Begin

  // --- Admit ---
  // The decision so far: the guard's own allow vote, then every stage's.
  Decision decision = Decision::DefaultAllow();
  // The input after redactions; unset while none applies.
  std::optional<std::string> redacted_input;
  // The model the caller asked for, once a stage changed it (idempotent
  // begins of the same call may name either).
  std::optional<std::string> requested_model;
  int64_t estimate_nanousd = 0;  // what the budget stage priced the call at
  BudgetHold hold;               // the budget stage's reservation
  bool slo_admitted = false;     // the slo stage holds an admission
  uint64_t record_seq = 0;       // the decision record
  size_t admitted = 0;           // stages admitted so far, in pipeline order

  // --- lifecycle ---
  std::string policy_version;  // the decision's (kept when the decision is handed out)
  bool awaiting_approval = false;
  bool resolving = false;      // an approval is being recorded
  // While an approval is recorded: the decision as it stood, which a Begin
  // resuming the call returns until the verdict is recorded and kept.
  std::optional<Decision> unresolved;
  // Written to the call journal at least once (Guard::Journal).
  bool kept = false;
  uint64_t verdict_seq = 0;    // the last verdict record
  // The streamed output (guard/stream.h), from the first Chunk or
  // FinishStream on; shared so that a chunk being evaluated outlives End.
  std::shared_ptr<Stream> stream;

  // --- End ---
  int64_t latency_ns = 0;
  // What End returns, as the stages settle it.
  EndResult ended = [] {
    EndResult e;
    e.decision = Decision::DefaultAllow();
    return e;
  }();
  // Ended with its output held for review (an after_* require_approval).
  bool output_held = false;
  std::string held_output;
  std::string after_policy_version;

  // --- the call journal (a call with an idempotency key) ---
  // Kept in the call journal: its decision record is written (crash-safe)
  // before Begin returns, so the journal never names a record a crash lost.
  bool journaled = false;
  CallPhase phase = CallPhase::kInFlight;
  std::string approved_by, approval_reason;  // the verdict at approval
  int64_t ended_ns = 0;         // when it was over (or its output held)
  std::string reviewed_output;  // what ReviewOutput returned

  const std::string& input() const {
    return redacted_input ? *redacted_input : request.call.input;
  }
  const std::string& model() const { return request.call.model; }
  // A stage's downgrade: the call runs on `model` from now on.
  void SetModel(std::string model);
  // The call as the SLO monitor counts it (views into this state).
  SloCall slo_call() const { return SloCallOf(request.call); }
  // Risk "high" or "critical", or a tool call whose operation is not "read".
  bool high_risk() const;
};

// A human's verdict: on a call awaiting approval, or on its held output.
struct Verdict {
  bool approved = false;
  bool on_output = false;
  std::string by;
  std::string message;  // "approved by ann: reason"
};

class Stage {
 public:
  virtual ~Stage() = default;
  virtual std::string_view name() const = 0;

  // Before the call: casts the stage's vote into call.decision, may change
  // the call (model, input), and takes what the call will hold. A stage whose
  // vote denies takes nothing. An error means the guard cannot do its job
  // (nothing is held then either).
  virtual Status Admit(CallState& call) = 0;
  // The call will not be made after all: gives back what Admit took.
  virtual Status Undo(CallState& call) { return Status::OK(); }
  // After the call, with how it went. call.ended.cost_nanousd is set already.
  virtual Status Settle(CallState& call, const CallOutcome& outcome) { return Status::OK(); }
  // A human's verdict (a rejected call is undone before this).
  virtual Status Resolve(CallState& call, const Verdict& verdict) { return Status::OK(); }
};

// What stages work with; owned by the guard, which outlives its stages.
struct StageContext {
  const GuardOptions* options = nullptr;
  const Clock* clock = nullptr;
  const PolicyEngine* engine = nullptr;  // null: no policy bundle
  const PricingTable* pricing = nullptr;
  BudgetBackend* budgets = nullptr;      // null: no budgets
  SloMonitor* slos = nullptr;            // null: no SLOs
  Ledger* ledger = nullptr;              // null: no records kept
  // What the budget backend and the fleet's shared state went through since
  // last asked (degraded mode entered or left), recorded at each Begin and End.
  std::function<std::vector<StoreEvent>()> take_store_events;
};

// The stages by name, in their default order; "record" is always last.
inline constexpr std::array<std::string_view, 5> kStageNames = {"permissions", "policies", "slo",
                                                                "budget", "record"};

std::unique_ptr<Stage> MakePermissionsStage(const StageContext& ctx);
std::unique_ptr<Stage> MakePoliciesStage(const StageContext& ctx);
std::unique_ptr<Stage> MakeSloStage(const StageContext& ctx);
std::unique_ptr<Stage> MakeBudgetStage(const StageContext& ctx);
std::unique_ptr<Stage> MakeRecordStage(const StageContext& ctx);

// InvalidArgument naming what is wrong with a stage list: an unknown or
// repeated name, a stage missing, or "record" not last.
Status ValidateStageNames(const std::vector<std::string>& names);

// The stages of one guard, in their configured order.
class Pipeline {
 public:
  // `names` as ValidateStageNames accepts them.
  static Result<std::unique_ptr<Pipeline>> Build(const std::vector<std::string>& names,
                                                 const StageContext& ctx, bool timed);

  // Every stage's Admit in order until one denies (the first denial stops;
  // later stages do not run), then the record stage, which records every
  // decision. A denied call, or one whose record fails, has every admitted
  // stage undone in reverse order. An error: the guard failed (the call must
  // not run; it holds nothing).
  Status Admit(CallState& call);
  // Every admitted stage's Undo, in reverse order; the first error.
  Status Undo(CallState& call);
  // Every stage's Settle, in order; stops at the first error.
  Status Settle(CallState& call, const CallOutcome& outcome);
  // A rejection undoes the call first; then every stage's Resolve, in order.
  Status Resolve(CallState& call, const Verdict& verdict);

  std::vector<StageTiming> Timings() const;

 private:
  enum Phase { kAdmit, kUndo, kSettle, kResolve, kPhases };
  struct Meter {
    std::atomic<uint64_t> calls{0};
    std::atomic<int64_t> total_ns{0};
  };
  Pipeline() = default;
  template <typename F>
  Status Timed(size_t stage, Phase phase, F&& run);

  std::vector<std::unique_ptr<Stage>> stages_;
  bool timed_ = false;
  std::unique_ptr<std::array<Meter, kPhases>[]> meters_;  // per stage
};

// --- records (guard.cc) ---

// Sets attribute `key`, replacing a value the call brought under that key.
void SetAttribute(Record* r, std::string key, std::string value);
// The fields every record of a call shares, with the call's own attributes.
Record CallRecord(const CallInfo& c, const std::string& action, const CallRequest& req,
                  const std::string& policy_version);
// A usage's tokens as records and policies count them.
TokenUsage RecordTokens(const Usage& u);

}  // namespace bastion::guard

#endif  // BASTION_GUARD_STAGE_H_
