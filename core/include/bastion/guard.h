// The guarded call: one lifecycle for every model call and tool call, joining
// the policy engine, permissions, SLO responses, budgets, cost and the ledger.
//
//   bastion::GuardOptions options;
//   options.policy_dir = "policies/default";
//   options.pricing_files = {"pricing/default.yaml"};
//   options.budgets_file = "budgets.yaml";            // optional
//   options.ledger_path = "./bastion/ledger";
//   auto guard = bastion::Guard::Open(options);        // errors name file:line
//
//   bastion::CallRequest req;
//   req.call.hook = bastion::Hook::kBeforeModel;
//   req.call.agent_id = "support"; req.call.user_id = "u-1"; req.call.model = "gpt-4o";
//   req.call.input = prompt;
//   auto begun = (*guard)->Begin(req);
//   if (!begun.ok()) return begun.status();            // the guard itself failed
//   if (begun->decision.effect == bastion::Effect::kDeny) return refuse(begun->decision);
//   // call begun->model with begun->input (both possibly rewritten) ...
//   bastion::CallOutcome out;
//   out.output = text; out.usage = usage; out.latency_ns = elapsed;
//   auto ended = (*guard)->End(begun->call_id, out);   // ended->output is what to show
//
// The call runs through STAGES over one call state (docs/architecture.md#stages):
//
//   permissions  the bundle's permissions.yaml on tool calls (grants, their
//                rate limits, requires_approval)
//   policies     the Lua before_* hooks (redactions, downgrades) at Begin;
//                after_* hooks (output guardrails) at End
//   slo          the SLO monitor's admission (circuit breakers, disabled
//                subjects, rate limits, downgrades); the outcome at End
//   budget       the model call's estimate reserved on the budget backend;
//                its cost charged (or the hold released) at End
//   record       the ledger records: "decision" at Begin, "outcome" (plus
//                "budget_alert", "slo_breach") at End, "approval" verdicts
//
// The order is GuardOptions::stages (this one by default). Begin admits the
// stages in order from the guard's own explicit allow: each votes into the
// decision (bastion/decision.h: the strictest effect wins). The first denial
// stops: later stages do not run, every stage already admitted is undone in
// reverse order (a budget hold released, an SLO half-open probe slot given
// back), and the record stage records the denial. A call whose decision is
// require_approval holds what its stages took until Approve resolves it: an
// approval lets it run, a rejection undoes it.
//
// Durability of the decision record: an allowed high-risk call's (risk
// "high"/"critical", or a tool call whose operation is not "read") is durable
// before Begin returns (high_risk_durability). A decision that lets nothing
// run (a denial, an approval still pending) is only queued: no fsync, no
// wait; a crash can lose it, and nothing ran. Approve's record is durable
// before it returns, so before an approved call runs.
//
// End settles the stages in the same order: the outcome is priced first,
// then the after_* hook (output guardrails, redaction), the SLO record, the
// budget settled at the cost (or released when the call failed without
// usage), and the "outcome" record. An after_* require_approval holds the
// output (End returns a withheld notice and awaiting_approval) until
// ReviewOutput records the verdict and releases it or keeps it back.
//
// Idempotency keys: a call begun with CallRequest::idempotency_key is kept in
// the call journal (GuardOptions::calls_path, or memory) from Begin until its
// retention after it is over. Begin with the key returns it where it stands
// (BeginResult::resumed, ::state, ::ended, ::memo): no new decision record, no
// new reservation, in this process or in one that reopens the same journal
// (its pending calls come back in flight at Open; their budget holds are
// adopted, not charged as abandoned). Remember keeps an opaque memo with it.
// docs/architecture.md#the-call-journal.
//
// Time: one clock (GuardOptions::clock) drives budgets, SLOs, the policies'
// rate limits and counters, record timestamps and the default latency.
//
// Every record of a call carries its run, trace and span ids and the policy
// version; a call's span id is new, its parent span and trace come from the
// request (a child agent passes its parent's).
//
// Thread safety: Guard is thread-safe; calls may begin and end on any threads.
#ifndef BASTION_GUARD_H_
#define BASTION_GUARD_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bastion/budget_backend.h"
#include "bastion/fleet.h"
#include "bastion/budget_set.h"
#include "bastion/clock.h"
#include "bastion/cost.h"
#include "bastion/ledger.h"
#include "bastion/decision.h"
#include "bastion/fleet.h"
#include "bastion/policy.h"
#include "bastion/slo.h"
#include "bastion/slo_monitor.h"
#include "bastion/status.h"

namespace bastion {

namespace guard {
struct CallState;
}  // namespace guard

struct GuardOptions {
  // --- configuration (each optional; empty = that part is off) ---
  std::string policy_dir;                  // a policy bundle folder
  std::vector<std::string> pricing_files;  // merged in order: later files win
  std::string budgets_file;                // budgets.yaml
  std::string slos_file;                   // slos.yaml

  // --- state ---
  std::string ledger_path;  // "" = no ledger (records are not kept)
  std::string state_path;   // budget state (RocksDB); "" = in memory
  // How often the budget state is saved (BudgetSet::Options::flush_interval_ns):
  // 0 saves every reservation before Begin admits the call, so a crash never
  // lets a restart admit more than the limit.
  int64_t budget_flush_interval_ns = 1'000'000'000;
  LedgerOptions ledger;
  // Durability of ordinary records, and of the decision record of an
  // allowed high-risk call (risk "high" or "critical", or a tool call whose
  // operation is not "read"), which is durable before the tool may run, and
  // of verdict records. With kGroup the decision record of a low-risk call is
  // queued at Begin and is written (crash-safe) by the time End returns,
  // which waits for its own record and with it every earlier one; with kAsync
  // it is written with the outcome record. A decision that lets nothing run
  // (deny, require_approval pending) is queued whatever its risk. Queued
  // records are written within LedgerOptions::group_sync_interval if nothing
  // waits for them sooner. kSync waits for every record, queued ones too.
  Durability durability = Durability::kGroup;
  Durability high_risk_durability = Durability::kSync;

  // --- behaviour ---
  // When the caller gives no max_output_tokens: what a reservation assumes.
  int64_t default_max_output_tokens = 1024;
  // Model calls of an unpriced model that a budget covers are denied (the
  // budget cannot be enforced); false admits them and records them unpriced.
  bool deny_unpriced_budgeted_calls = true;
  // The streamed text on_chunk policies see (the window): the text not
  // released yet, after at most chunk_context_bytes of the text released
  // before it, at most chunk_window_bytes in all (more only when one chunk is
  // larger: the text not released yet is always seen whole).
  size_t chunk_window_bytes = 4096;
  // Released text in the window. Every chunk's evaluation reads the whole
  // window, so its cost grows with this (and with the matches in it); the
  // hold rule keeps every match in the text not released yet, so the
  // context serves phrases that span chunks.
  size_t chunk_context_bytes = 512;
  // Streamed text held back while it may still grow into a pattern (the hold
  // rule, Chunk): at most this many bytes of a run without a break, which
  // covers the longest pattern a detector must see whole before it matches
  // (an e-mail address's first 131 bytes, an IBAN's 42, a key's prefix and
  // 20 bytes). Text older than that is released even mid-word, except a
  // match that reaches the end of the text, held until chunk_window_bytes
  // are pending. At most chunk_window_bytes (Open refuses more).
  size_t stream_hold_bytes = 256;
  // Input and output as stored in the ledger (after redaction): at most this
  // many bytes each.
  size_t summary_bytes = 2048;

  // "now", UTC ns; null = the system clock (WallClock). Drives budgets, SLOs,
  // the policy engine's rate limits and counter windows, record timestamps
  // and the latency End assumes when the outcome gives none.
  std::shared_ptr<const Clock> clock;

  // --- the pipeline (docs/architecture.md#stages) ---
  // The stages of a call, in order: each of "permissions", "policies", "slo",
  // "budget" and "record" exactly once, "record" last. Open names an unknown,
  // repeated or missing stage (InvalidArgument).
  std::vector<std::string> stages = {"permissions", "policies", "slo", "budget", "record"};
  // Where budgets are reserved and settled; null = the BudgetSet opened from
  // budgets_file. Setting both is InvalidArgument.
  std::shared_ptr<BudgetBackend> budget_backend;
  // Measure the time of every stage (Guard::StageTimings): two clock reads a
  // stage; off by default.
  bool time_stages = false;

  // --- the call journal (docs/architecture.md#the-call-journal) ---
  // Where calls begun with an idempotency key are kept (RocksDB, created
  // when missing); "" = in this process's memory only. A guard reopened over
  // the same calls_path finds every kept call again: Begin with its key
  // resumes it where it stood. Calls without a key are never journaled.
  std::string calls_path;
  // How long an ended keyed call (ended, denied, rejected, its output
  // reviewed) stays findable by its key; after that, Begin with the key
  // begins a new call (0: as soon as it is over). Calls not over are kept
  // until they are. Default 24 hours: a graph resumed the next day still
  // finds its calls, and the journal holds about a day of keyed calls.
  int64_t idempotency_retention_ns = 24LL * 3600 * 1'000'000'000;

  // --- the fleet (docs/fleet.md) ---
  // The fleet's shared store; url "" = off. With a url and a budgets_file,
  // the budgets are kept there (RedisBudgets) instead of in state_path,
  // shared by every worker (with budget_backend it is InvalidArgument). And
  // the permissions' rate limits and the SLO monitor's
  // breakers, disables and rate_limit responses are shared with every worker
  // on that Redis server (bastion/fleet_limits.h). Open fails (Unavailable)
  // when the server cannot be reached. When it goes away later, Begin of a
  // call that needs it (a tool call with a rate limit; a call under an SLO
  // with a breaker or a disable action) returns Unavailable within
  // store.timeout_ns, naming the server, and records nothing; calls that need
  // nothing shared go on. The guard reconnects by itself. With
  // store.degrade_to_local it uses this process's own state instead while the
  // server is away, and records "store_degraded" / "store_restored".
  StoreOptions store;
};

// Where a guard's calls spent their time, per stage and phase.
struct StageTiming {
  std::string stage;  // "permissions", ...
  std::string phase;  // "admit", "undo", "settle", "resolve"
  uint64_t calls = 0;
  int64_t total_ns = 0;
};

// One call to check. `call.hook` is kBeforeModel or kBeforeTool.
struct CallRequest {
  CallInfo call;
  // Model calls: the reservation's estimate is priced from these (input
  // tokens default to the input's bytes / 4, a common rule of thumb).
  std::optional<int64_t> input_tokens;
  std::optional<int64_t> max_output_tokens;
  std::string parent_span_id;
  std::string request_id;
  // Same key, same call: Begin with the key of a call begun before (waiting
  // for approval, in flight, ended, denied or rejected; in this process or,
  // with GuardOptions::calls_path, before a restart) returns that call again
  // (BeginResult::resumed, ::state) instead of checking and recording anew,
  // so a re-executed step is never charged or recorded twice. An ended call
  // is kept for GuardOptions::idempotency_retention_ns. A key reused for a
  // different call (another hook, tool, operation, resource, agent or model)
  // is InvalidArgument. "" = no key (nothing is kept).
  std::string idempotency_key;
};

// Where a call stands, as its idempotency key finds it.
enum class CallPhase : uint8_t {
  kAwaitingApproval,  // require_approval: Approve resolves it
  kInFlight,          // allowed, or approved: End it after the call
  kAwaitingReview,    // ended; an after_* policy holds its output (ReviewOutput)
  kEnded,             // ended (its output shown, withheld, or reviewed)
  kDenied,            // denied at Begin: nothing ran
  kRejected,          // a human rejected it: nothing ran
};
// "awaiting_approval", "in_flight", "awaiting_review", "ended", "denied",
// "rejected".
std::string_view CallPhaseName(CallPhase phase);

struct EndResult {
  Decision decision;   // the after_* hook's
  // After redactions; the withheld text when denied or held for review.
  std::string output;
  bool withheld = false;
  // The after_* hook asked for approval: the output is held (held_output, after
  // redactions) until ReviewOutput releases or rejects it.
  bool awaiting_approval = false;
  std::string held_output;
  std::optional<int64_t> cost_nanousd;  // unset: unpriced or no usage
  bool unpriced = false;
  int64_t overshoot_nanousd = 0;
  std::vector<AlertEvent> budget_alerts;
  std::vector<SloEvent> slo_events;
  uint64_t record_seq = 0;
};

struct BeginResult {
  uint64_t call_id = 0;
  Decision decision;
  bool resumed = false;  // an existing call returned for its idempotency_key
  // What to call: the model after any downgrade (policy, SLO, budget), and the
  // input after redactions.
  std::string model;
  std::string input;
  std::string trace_id, span_id;
  int64_t estimate_nanousd = 0;
  std::vector<AlertEvent> budget_alerts;
  uint64_t record_seq = 0;  // the decision record; 0 without a ledger
  // Where the call stands now. A resumed call's decision, model, input, ids,
  // estimate and record_seq are those it was begun with (its decision as
  // resolved once approved or rejected); budget_alerts are not repeated.
  CallPhase state = CallPhase::kInFlight;
  // What Remember kept for the call's key, if anything.
  std::optional<std::string> memo;
  // The call ended (kAwaitingReview, kEnded): its end as End returned it;
  // once reviewed, `output` is what ReviewOutput returned and
  // awaiting_approval is false. budget_alerts and slo_events are not kept.
  std::optional<EndResult> ended;
};

struct CallOutcome {
  std::string output;
  std::optional<Usage> usage;  // tool calls usually have none
  bool ok = true;              // false: the call itself failed
  std::string error_class;     // when !ok, e.g. "timeout", "upstream_5xx"
  std::optional<int64_t> latency_ns;  // default: since Begin
  // Kept with a keyed call as Remember keeps it, in the same journal write
  // as the end (so a crash never leaves an ended call without its memo).
  // FailedPrecondition on a call without an idempotency key.
  std::optional<std::string> memo;
};

struct ChunkResult {
  bool stop = false;         // a policy denied: stop streaming
  // The text released by this call, as it may be shown (redacted): raw text
  // the hold rule released, which may be more or less than the chunk.
  std::string text;
  // This evaluation's (its redactions are offsets into the window); on a
  // stream stopped earlier, a deny with the stop's reasons.
  Decision decision;
  size_t held_bytes = 0;     // raw bytes received and not released yet
};

class Guard {
 public:
  // InvalidArgument naming the file (and line) of a bad configuration; the
  // ledger's and the state store's errors as they open.
  static Result<std::unique_ptr<Guard>> Open(GuardOptions options);
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

  // Checks one call and records the decision. Errors only when the guard
  // cannot do its job (e.g. the ledger failed): the caller must not proceed.
  Result<BeginResult> Begin(CallRequest request);

  // A streamed piece of output of a begun call (docs/policies.md#streamed-output).
  // The on_chunk policies evaluate the window: the text not released yet
  // with `text` appended, after at most chunk_context_bytes of released
  // text (chunk_window_bytes in all). A deny stops the stream: stop is set, nothing of this
  // chunk or of the held text is released, and every later Chunk and
  // FinishStream returns stop with no text and evaluates nothing; the
  // outcome record says where and why it stopped. Otherwise the text is
  // released up to the hold rule's cut, with the window's redactions:
  //   - held: the trailing word (a maximal run of ASCII bytes that are not
  //     whitespace), extended across single spaces (or tabs) after words
  //     ending in an ASCII digit, upper-case letter or ')' ("4111 1111",
  //     "+1 415 555", "DE89 3704 ..."), at most stream_hold_bytes of it;
  //   - a redaction that reaches the held text, or that only whitespace
  //     with a line break separates from it (a private key line by line),
  //     may still grow: it is held whole (until more than
  //     chunk_window_bytes would be pending), so a match is released once,
  //     redacted;
  //   - never inside a UTF-8 sequence.
  // So after a chunk ending "... to alice" everything before "alice" is out.
  // Without a policy bundle every chunk is released whole at once.
  // NotFound (not in flight); FailedPrecondition while the call awaits
  // approval, after its End held its output, or after FinishStream.
  // Chunks of one call must come in order from one producer; calls stream
  // concurrently (the guard's lock is held only to find the call).
  Result<ChunkResult> Chunk(uint64_t call_id, std::string_view text);

  // The stream ended normally: the on_chunk policies evaluate the window once
  // more with chunk.final = true, and all held text is released (redacted),
  // or a deny stops the stream as in Chunk. A second FinishStream, or a Chunk
  // after it, is FailedPrecondition; on a stopped stream it returns stop.
  // Call it before End: End records the output the caller passes and the
  // held bytes never released (stream_unreleased_bytes), it does not release
  // them.
  Result<ChunkResult> FinishStream(uint64_t call_id);

  // Ends a begun call that was allowed (or approved). A call denied at Begin
  // or rejected at approval is over already: NotFound, as for an unknown or
  // already ended call; FailedPrecondition while it awaits approval.
  Result<EndResult> End(uint64_t call_id, const CallOutcome& outcome);

  // Resolves a require_approval call: records who decided, and either makes it
  // allowed (End it as usual after the call) or ends it as rejected (its
  // reservation released). NotFound / FailedPrecondition (not awaiting approval).
  Result<BeginResult> Approve(uint64_t call_id, bool approved, const std::string& approved_by,
                              const std::string& reason);

  // Resolves a call whose output an after_* policy held for review (End said
  // awaiting_approval): records who decided, and returns the output to show
  // (the held output when approved, a withheld notice when rejected).
  // NotFound / FailedPrecondition (its output is not awaiting review);
  // InvalidArgument without `reviewed_by`.
  Result<std::string> ReviewOutput(uint64_t call_id, bool approved, const std::string& reviewed_by,
                                   const std::string& reason);
  // The call begun with this idempotency key and not ended (or ended with its
  // output awaiting review), or NotFound.
  Result<uint64_t> FindByKey(const std::string& idempotency_key);

  // Keeps `memo` (opaque to the guard: e.g. the serialized result a
  // re-executed step returns without running the tool again) with a keyed
  // call, replacing an earlier memo; Begin with the key returns it
  // (BeginResult::memo) for as long as the call is kept, after a restart too.
  // Written before it returns (as durable as the call's journal entry).
  // NotFound: no call with that key is kept (or, by id, the call is unknown
  // to this process); FailedPrecondition: the call has no idempotency key.
  Status Remember(uint64_t call_id, std::string memo);
  Status Remember(const std::string& idempotency_key, std::string memo);

  // Appends a free-standing record (e.g. a run start) with the guard's policy
  // version filled in.
  Result<uint64_t> AppendRecord(bastion::Record record);

  // Totals since Open per stage and phase, in pipeline order; empty unless
  // GuardOptions::time_stages.
  std::vector<StageTiming> StageTimings() const;

  PolicyEngine* policies() { return engine_.get(); }
  // The BudgetSet of budgets_file (null with another budget backend).
  BudgetSet* budgets() { return budgets_.get(); }
  BudgetBackend* budget_backend() { return budget_backend_.get(); }
  SloMonitor* slos() { return slos_.get(); }
  const PricingTable& pricing() const { return *pricing_; }
  Ledger* ledger() { return ledger_.get(); }
  std::shared_ptr<BudgetSet> shared_budgets() { return budgets_; }
  std::shared_ptr<SloMonitor> shared_slos() { return slos_; }
  std::shared_ptr<const PricingTable> shared_pricing() { return pricing_; }

  // Flushes the ledger and budget state, then closes them. Idempotent.
  Status Close();

  class Impl;

 private:
  explicit Guard(GuardOptions options);
  Status Restore(std::vector<std::unique_ptr<guard::CallState>> kept);
  struct KeyHold;
  Result<std::optional<BeginResult>> Resume(const CallRequest& request, KeyHold* hold);
  Status Journal(guard::CallState& call, Durability durability,
                 const std::optional<std::string>& memo = std::nullopt);

  GuardOptions options_;
  std::shared_ptr<const Clock> clock_;
  std::unique_ptr<PolicyEngine> engine_;
  std::shared_ptr<const PricingTable> pricing_;
  std::shared_ptr<BudgetSet> budgets_;
  std::shared_ptr<BudgetBackend> budget_backend_;
  std::shared_ptr<SloMonitor> slos_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bastion

#endif  // BASTION_GUARD_H_
