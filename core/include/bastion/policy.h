// The policy engine: Lua policies that decide on every model and tool call.
//
//   auto engine = bastion::PolicyEngine::Load("policies/default");
//   if (!engine.ok()) { /* names file:line of the first broken policy */ }
//
//   bastion::CallInfo call;
//   call.hook = bastion::Hook::kBeforeTool;
//   call.agent_id = "support-bot";
//   call.agent_role = "support";
//   call.tool = "issue_refund";
//   call.operation = "write";
//   bastion::Decision d = (*engine)->Evaluate(call);
//   if (d.effect == bastion::Effect::kRequireApproval) ask_a_human(d.reasons);
//
// A policy bundle is a folder of .lua files, each returning a policy table
// (id, scope, hooks), plus optional bundle.yaml (limits, fail_open, data) and
// permissions.yaml (declarative grants). docs/policies.md is the full guide.
//
// Thread safety: Evaluate may be called from any number of threads at once;
// each evaluation borrows a Lua state from the engine's pool (never shared by
// two evaluations at once, reused across threads). Reload swaps the bundle
// atomically: evaluations already running finish on the version they began
// with. Evaluation never throws; policy failures become part of the Decision.
#ifndef BASTION_POLICY_H_
#define BASTION_POLICY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bastion/call.h"
#include "bastion/clock.h"
#include "bastion/decision.h"
#include "bastion/record.h"
#include "bastion/status.h"
#include "bastion/value.h"

namespace bastion {

class RateLimits;  // bastion/permissions.h

// Applies the redactions aimed at `target` to `text` (spans may overlap; they
// are merged). Returns the redacted text.
std::string ApplyRedactions(std::string_view text, const std::vector<Redaction>& redactions,
                            std::string_view target);

struct PolicyLimits {
  // VM instructions one policy may run per evaluation; pattern matching
  // (string.find, match, gmatch, gsub) is charged to the same budget.
  int64_t instructions = 1'000'000;
  // Bytes one policy may allocate per evaluation, beyond what its state holds;
  // new counter keys are charged to it too.
  size_t memory_bytes = 8 << 20;
  // counter.add: live keys per policy, bytes per key, and bytes of counter
  // state all policies of an engine hold together (keys plus bookkeeping).
  size_t counter_keys = 10'000;
  size_t counter_key_bytes = 256;
  size_t counter_memory_bytes = 16 << 20;
};

class Permissions;

// Cost, budget and SLO state as policies read it, through the `budget`, `slo`
// and `cost` helper libraries (docs/policies.md). Implementations must be
// thread-safe: every evaluating thread calls them. An error becomes a Lua
// error in the calling policy, which then fails as configured (closed by
// default), so a policy asking for a budget that does not exist never passes.
class PolicyState {
 public:
  virtual ~PolicyState() = default;

  struct BudgetView {
    std::string key;     // the key the numbers are for
    std::string window;  // "daily UTC [2026-11-21T00:00:00UTC, 2026-11-22T00:00:00UTC)"
    int64_t limit_nanousd = 0;
    int64_t admissible_nanousd = 0;
    int64_t spent_nanousd = 0;
    int64_t reserved_nanousd = 0;
    int64_t remaining_nanousd = 0;
  };
  // `key` empty: the key the budget's scope gives `call` (its user, agent...).
  virtual Result<BudgetView> Budget(std::string_view budget_id, std::string_view key,
                                    const CallInfo& call) const = 0;

  struct SloView {
    std::string subject;
    uint64_t calls = 0;
    double success_rate = 1;  // over the SLO window
    double target = 0;
    double error_budget_remaining = 1;
    double p50_ns = 0, p95_ns = 0, p99_ns = 0;
    std::string breaker;              // "closed", "open", "half-open", "" (none)
    std::vector<std::string> firing;  // signals breaching now
    int64_t cost_today_nanousd = 0;
  };
  // `subject` empty: the series `call` belongs to.
  virtual Result<SloView> Slo(std::string_view slo_id, std::string_view subject,
                              const CallInfo& call) const = 0;
  virtual Result<double> BurnRate(std::string_view slo_id, std::string_view subject,
                                  int64_t window_ns, const CallInfo& call) const = 0;
  // The cost of `input_tokens` + `output_tokens` on `model`, in nano-USD;
  // NotFound when the model has no price.
  virtual Result<int64_t> Price(std::string_view model, int64_t input_tokens,
                                int64_t output_tokens) const = 0;
};

class PolicyEngine {
 public:
  // Compiles the bundle in `dir`. Errors name the file and line, e.g.
  // "policies/x.lua:12: unexpected symbol near 'end'".
  static Result<std::unique_ptr<PolicyEngine>> Load(const std::string& dir);
  // A bundle from in-memory sources: (file name, Lua source) pairs.
  static Result<std::unique_ptr<PolicyEngine>> FromSources(
      std::vector<std::pair<std::string, std::string>> sources, std::string bundle_yaml = "",
      std::string permissions_yaml = "");
  ~PolicyEngine();

  // Replaces the bundle with the one in `dir` (or `sources`), atomically. On
  // error the previous bundle stays in force and the error says why.
  Status Reload(const std::string& dir);
  Status ReloadSources(std::vector<std::pair<std::string, std::string>> sources,
                       std::string bundle_yaml = "", std::string permissions_yaml = "");

  // The bundle's decision on `call`: its permissions (CheckPermissions), then
  // its policies (EvaluatePolicies), combined (bastion/decision.h). Policies
  // that do not object allow: the engine starts from an explicit allow.
  Decision Evaluate(const CallInfo& call) const;
  // The bundle's declarative permissions alone. A before_tool call gets the
  // "permissions" vote (deny naming the missing grant or the exceeded rate
  // limit, require_approval, or allow) and takes a token from every rate
  // limit of the grants admitting it; any other call, or a bundle without
  // permissions.yaml, gets an allow without a vote.
  Decision CheckPermissions(const CallInfo& call) const;
  // The Lua policies alone, without the permissions check: for a caller that
  // checks permissions itself (the guard's permissions stage). Evaluate =
  // CheckPermissions + EvaluatePolicies, each checked once.
  Decision EvaluatePolicies(const CallInfo& call) const;

  // The content hash of the bundle in force (hex SHA-256 of every file).
  std::string version() const;
  // Ids of the bundle's policies, in evaluation order.
  std::vector<std::string> policy_ids() const;
  // The compiled permissions of the bundle in force (nullptr if none).
  std::shared_ptr<const Permissions> permissions() const;

  // What the `budget`, `slo` and `cost` helpers read (nullptr: none, and
  // those helpers raise "no ... attached"). Safe while evaluations run; each
  // helper call sees either the old or the new state.
  void SetState(std::shared_ptr<const PolicyState> state);
  // "now" of the permissions' rate limits and the policies' counter windows
  // (counter.add, rate helpers); UTC wall time (WallClock) by default. Safe
  // while evaluations run: each check reads the old or the new clock.
  void SetClock(std::shared_ptr<const Clock> clock);
  // Where the permissions' rate limits take their tokens; null (the default)
  // = this engine's own RateLimiter. A fleet passes SharedRateLimits
  // (bastion/fleet_limits.h). When the limits cannot be asked, the tool call
  // is denied (fail closed) and the decision carries an error of kind
  // "store_unavailable" (policy "permissions") with the store's message; the
  // guard turns it into Unavailable. Set it before the first evaluation.
  void SetRateLimits(std::shared_ptr<RateLimits> limits);

  class Impl;

 private:
  explicit PolicyEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bastion

#endif  // BASTION_POLICY_H_
