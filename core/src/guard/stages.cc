// The permissions, policies, slo and budget stages, and the pipeline.
#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bastion/policy_state.h"
#include "guard/stage.h"
#include "guard/stream.h"

namespace bastion::guard {

void CallState::SetModel(std::string model) {
  if (!requested_model) requested_model = request.call.model;
  request.call.model = std::move(model);
}

bool CallState::high_risk() const {
  if (decision.risk_level == "high" || decision.risk_level == "critical") return true;
  return !model_call && !request.call.operation.empty() && request.call.operation != "read";
}

namespace {

bool HasTarget(const std::vector<Redaction>& redactions, std::string_view target) {
  for (const Redaction& r : redactions) {
    if (r.target == target) return true;
  }
  return false;
}

// The bundle's declarative permissions (permissions.yaml) on tool calls: the
// grant, its rate limits (a token taken is not given back: a rate limit
// counts attempts), requires_approval.
class PermissionsStage final : public Stage {
 public:
  explicit PermissionsStage(const StageContext& ctx) : ctx_(ctx) {}
  std::string_view name() const override { return "permissions"; }

  Status Admit(CallState& call) override {
    if (ctx_.engine == nullptr || call.model_call) return Status::OK();
    Decision d = ctx_.engine->CheckPermissions(call.request.call);
    // The fleet's rate limits could not be asked: the guard cannot do its job.
    for (const PolicyError& e : d.errors) {
      if (e.kind == "store_unavailable") return Status::Unavailable(e.message);
    }
    call.decision.Merge(std::move(d));
    return Status::OK();
  }

 private:
  const StageContext& ctx_;
};

// The bundle's Lua policies: before_* at Admit (redactions of the input, a
// model downgrade), after_* at Settle (output guardrails).
class PoliciesStage final : public Stage {
 public:
  explicit PoliciesStage(const StageContext& ctx) : ctx_(ctx) {}
  std::string_view name() const override { return "policies"; }

  Status Admit(CallState& call) override {
    if (ctx_.engine == nullptr) return Status::OK();
    call.decision.Merge(ctx_.engine->EvaluatePolicies(call.request.call));
    // Applied on a denial too: the record keeps the input as redacted.
    const Decision& d = call.decision;
    if (HasTarget(d.redactions, "input")) {
      call.redacted_input = ApplyRedactions(call.request.call.input, d.redactions, "input");
    }
    if (d.model_downgrade && *d.model_downgrade != call.model()) {
      call.SetModel(*d.model_downgrade);
    }
    return Status::OK();
  }

  Status Settle(CallState& call, const CallOutcome& outcome) override {
    CallInfo& c = call.request.call;
    c.hook = call.model_call ? Hook::kAfterModel : Hook::kAfterTool;
    if (call.redacted_input) c.input = std::move(*call.redacted_input);
    call.redacted_input.reset();
    c.output = outcome.output;
    if (outcome.usage) c.tokens = RecordTokens(*outcome.usage);

    EndResult& out = call.ended;
    out.decision = Decision::DefaultAllow();  // a failed call's output is not checked
    out.decision.policy_version = call.policy_version;
    if (call.stream) {
      // A stream a policy stopped is denied whole: what the caller passes
      // as its output is not shown, whatever the after_* hook would say.
      StreamReport stream = call.stream->Report();
      if (stream.stopped) {
        out.decision.effect = Effect::kDeny;
        out.decision.reasons = std::move(stream.stop_reasons);
        out.withheld = true;
        out.output = fmt::format("[withheld by policy: {}]",
                                 out.decision.reasons.empty()
                                     ? std::string("the stream was stopped")
                                     : out.decision.reasons[0].message);
        return Status::OK();
      }
    }
    if (outcome.ok && ctx_.engine != nullptr) {
      out.decision.Merge(ctx_.engine->EvaluatePolicies(c));
    }
    const Decision& d = out.decision;
    if (d.effect == Effect::kDeny) {
      out.withheld = true;
      out.output = fmt::format("[withheld by policy: {}]",
                               d.reasons.empty() ? std::string("denied") : d.reasons[0].message);
    } else if (d.effect == Effect::kRequireApproval) {
      // Held, not shown: ReviewOutput releases it (redacted) or keeps it back.
      out.awaiting_approval = true;
      out.withheld = true;
      out.held_output = ApplyRedactions(outcome.output, d.redactions, "output");
      out.output = fmt::format("[withheld pending approval: {}]",
                               d.reasons.empty() ? std::string("review") : d.reasons[0].message);
    } else {
      out.output = ApplyRedactions(outcome.output, d.redactions, "output");
    }
    return Status::OK();
  }

 private:
  const StageContext& ctx_;
};

// The SLO monitor: admission (circuit breakers, disabled subjects, rate
// limits, downgrades) before the call, its outcome after.
class SloStage final : public Stage {
 public:
  explicit SloStage(const StageContext& ctx) : ctx_(ctx) {}
  std::string_view name() const override { return "slo"; }

  Status Admit(CallState& call) override {
    if (ctx_.slos == nullptr) return Status::OK();
    const Admission a = ctx_.slos->Admit(call.slo_call());
    if (!a.status.ok()) return a.status;  // the fleet's state could not be asked
    if (!a.allowed) {
      call.decision.Vote(Effect::kDeny, "slo:" + a.slo_id, a.reason);
      return Status::OK();
    }
    call.slo_admitted = true;
    if (a.downgrade_model && *a.downgrade_model != call.model()) {
      call.SetModel(*a.downgrade_model);
      call.decision.Vote(Effect::kModify, "slo:" + a.slo_id, a.reason);
    }
    return Status::OK();
  }

  // Gives back the half-open probe slot the admission may hold.
  Status Undo(CallState& call) override {
    if (call.slo_admitted) ctx_.slos->Release(call.slo_call());
    call.slo_admitted = false;
    return Status::OK();
  }

  Status Settle(CallState& call, const CallOutcome& outcome) override {
    if (ctx_.slos == nullptr) return Status::OK();
    SloOutcome so;
    so.success = outcome.ok;
    so.error_class = outcome.error_class;
    so.latency_ns = call.latency_ns;
    so.cost_nanousd = call.ended.cost_nanousd;
    call.ended.slo_events = ctx_.slos->Record(call.slo_call(), so);
    call.slo_admitted = false;
    return Status::OK();
  }

 private:
  const StageContext& ctx_;
};

// The budget backend: a model call's estimate reserved before the call (or
// the call denied), its cost charged after (or the hold released).
class BudgetStage final : public Stage {
 public:
  explicit BudgetStage(const StageContext& ctx) : ctx_(ctx) {}
  std::string_view name() const override { return "budget"; }

  Status Admit(CallState& call) override {
    if (ctx_.budgets == nullptr || !call.model_call) return Status::OK();
    const CallInfo& c = call.request.call;
    const BudgetSubject subject = BudgetSubjectOf(c);
    // Priced before knowing whether a budget covers the call: Reserve finds
    // the covering budgets itself, and an uncovered call holds nothing.
    Usage estimate_usage;
    estimate_usage.input =
        call.request.input_tokens.value_or(static_cast<int64_t>(c.input.size() / 4 + 1));
    estimate_usage.output =
        call.request.max_output_tokens.value_or(ctx_.options->default_max_output_tokens);
    int64_t estimate = 0;
    auto priced = PriceCall(*ctx_.pricing, c.model, estimate_usage);
    if (priced.ok()) {
      estimate = priced->total_nanousd;
    } else if (const std::vector<std::string> covering = ctx_.budgets->CoveringBudgets(subject);
               !covering.empty()) {  // only a budget needs the price
      if (!priced.status().IsNotFound()) {
        call.decision.Vote(Effect::kDeny, "budget", std::string(priced.status().message()));
        return Status::OK();
      }
      if (ctx_.options->deny_unpriced_budgeted_calls) {
        call.decision.Vote(Effect::kDeny, "budget:" + covering.front(),
                           fmt::format("model '{}' has no price, so budget '{}' cannot be "
                                       "enforced",
                                       c.model, covering.front()));
        return Status::OK();
      }
    }
    std::string refused_by;
    auto held = ctx_.budgets->Reserve(subject, estimate, &refused_by);
    if (!held.ok()) {
      if (!held.status().IsFailedPrecondition()) return held.status();
      call.estimate_nanousd = estimate;  // what the refusing budget could not hold
      call.decision.Vote(Effect::kDeny, "budget:" + refused_by,
                         std::string(held.status().message()));
      return Status::OK();
    }
    if (held->reservations.empty()) return Status::OK();
    call.hold = std::move(*held);
    call.estimate_nanousd = estimate;
    if (call.hold.downgrade_model && *call.hold.downgrade_model != c.model) {
      std::string message =
          fmt::format("downgraded from '{}' to '{}': budget '{}' is running low", c.model,
                      *call.hold.downgrade_model, call.hold.downgrade_budget);
      call.SetModel(*call.hold.downgrade_model);
      call.decision.Vote(Effect::kModify, "budget:" + call.hold.downgrade_budget,
                         std::move(message));
    }
    return Status::OK();
  }

  Status Undo(CallState& call) override {
    if (call.hold.reservations.empty()) return Status::OK();
    Status s = ctx_.budgets->Release(call.hold);
    call.hold = BudgetHold{};
    return s;
  }

  Status Settle(CallState& call, const CallOutcome& outcome) override {
    if (call.hold.reservations.empty()) return Status::OK();
    const BudgetHold hold = std::move(call.hold);
    call.hold = BudgetHold{};
    if (!outcome.ok && !outcome.usage) return ctx_.budgets->Release(hold);
    // Without a priced usage the estimate is charged: never less than was
    // reserved for a call that ran.
    const int64_t charge = call.ended.cost_nanousd.value_or(call.estimate_nanousd);
    auto settled = ctx_.budgets->Settle(hold, charge);
    if (!settled.ok()) return settled.status();
    call.ended.overshoot_nanousd = settled->overshoot_nanousd;
    call.ended.budget_alerts = std::move(settled->alerts);
    return Status::OK();
  }

 private:
  const StageContext& ctx_;
};

}  // namespace

std::unique_ptr<Stage> MakePermissionsStage(const StageContext& ctx) {
  return std::make_unique<PermissionsStage>(ctx);
}
std::unique_ptr<Stage> MakePoliciesStage(const StageContext& ctx) {
  return std::make_unique<PoliciesStage>(ctx);
}
std::unique_ptr<Stage> MakeSloStage(const StageContext& ctx) {
  return std::make_unique<SloStage>(ctx);
}
std::unique_ptr<Stage> MakeBudgetStage(const StageContext& ctx) {
  return std::make_unique<BudgetStage>(ctx);
}

Status ValidateStageNames(const std::vector<std::string>& names) {
  const std::string known = fmt::format("{}", fmt::join(kStageNames, ", "));
  for (size_t i = 0; i < names.size(); ++i) {
    if (std::find(kStageNames.begin(), kStageNames.end(), names[i]) == kStageNames.end()) {
      return Status::InvalidArgument(fmt::format(
          "GuardOptions::stages[{}]: unknown stage '{}' (the stages are {})", i, names[i], known));
    }
    for (size_t j = 0; j < i; ++j) {
      if (names[j] == names[i]) {
        return Status::InvalidArgument(fmt::format(
            "GuardOptions::stages[{}]: stage '{}' is listed twice (also at [{}])", i, names[i], j));
      }
    }
  }
  for (std::string_view name : kStageNames) {
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      return Status::InvalidArgument(fmt::format(
          "GuardOptions::stages: stage '{}' is missing (every one of {} runs once)", name, known));
    }
  }
  if (names.back() != "record") {
    return Status::InvalidArgument(fmt::format(
        "GuardOptions::stages: 'record' must come last (it records what the stages before it "
        "decided), not '{}'",
        names.back()));
  }
  return Status::OK();
}

Result<std::unique_ptr<Pipeline>> Pipeline::Build(const std::vector<std::string>& names,
                                                  const StageContext& ctx, bool timed) {
  BASTION_RETURN_IF_ERROR(ValidateStageNames(names));
  auto p = std::unique_ptr<Pipeline>(new Pipeline());
  for (const std::string& name : names) {
    p->stages_.push_back(name == "permissions" ? MakePermissionsStage(ctx)
                         : name == "policies"  ? MakePoliciesStage(ctx)
                         : name == "slo"       ? MakeSloStage(ctx)
                         : name == "budget"    ? MakeBudgetStage(ctx)
                                               : MakeRecordStage(ctx));
  }
  p->timed_ = timed;
  if (timed) p->meters_ = std::make_unique<std::array<Meter, kPhases>[]>(names.size());
  return p;
}

template <typename F>
Status Pipeline::Timed(size_t stage, Phase phase, F&& run) {
  if (!timed_) return run();
  const auto t0 = std::chrono::steady_clock::now();
  Status s = run();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
  Meter& m = meters_[stage][phase];
  m.calls.fetch_add(1, std::memory_order_relaxed);
  m.total_ns.fetch_add(ns, std::memory_order_relaxed);
  return s;
}

Status Pipeline::Admit(CallState& call) {
  const size_t record = stages_.size() - 1;  // validated: "record" is last
  call.admitted = 0;
  for (size_t i = 0; i < record; ++i) {
    Status s = Timed(i, kAdmit, [&] { return stages_[i]->Admit(call); });
    if (!s.ok()) {
      (void)Undo(call);
      return s;
    }
    if (call.decision.effect == Effect::kDeny) break;  // the denying stage took nothing
    call.admitted = i + 1;
  }
  const bool denied = call.decision.effect == Effect::kDeny;
  Status undone = denied ? Undo(call) : Status::OK();
  Status recorded = Timed(record, kAdmit, [&] { return stages_[record]->Admit(call); });
  if (!recorded.ok()) {
    (void)Undo(call);
    return recorded;
  }
  if (!denied) call.admitted = stages_.size();
  return undone;
}

Status Pipeline::Undo(CallState& call) {
  Status first;
  for (size_t i = call.admitted; i-- > 0;) {
    Status s = Timed(i, kUndo, [&] { return stages_[i]->Undo(call); });
    if (first.ok()) first = std::move(s);
  }
  call.admitted = 0;
  return first;
}

Status Pipeline::Settle(CallState& call, const CallOutcome& outcome) {
  for (size_t i = 0; i < stages_.size(); ++i) {
    BASTION_RETURN_IF_ERROR(Timed(i, kSettle, [&] { return stages_[i]->Settle(call, outcome); }));
  }
  return Status::OK();
}

Status Pipeline::Resolve(CallState& call, const Verdict& verdict) {
  Status undone;
  if (!verdict.on_output && !verdict.approved) undone = Undo(call);
  for (size_t i = 0; i < stages_.size(); ++i) {
    BASTION_RETURN_IF_ERROR(Timed(i, kResolve, [&] { return stages_[i]->Resolve(call, verdict); }));
  }
  return undone;
}

std::vector<StageTiming> Pipeline::Timings() const {
  static constexpr std::array<std::string_view, kPhases> kPhaseNames = {"admit", "undo", "settle",
                                                                        "resolve"};
  std::vector<StageTiming> out;
  if (!timed_) return out;
  for (size_t i = 0; i < stages_.size(); ++i) {
    for (size_t p = 0; p < kPhases; ++p) {
      const Meter& m = meters_[i][p];
      const uint64_t calls = m.calls.load(std::memory_order_relaxed);
      if (calls == 0) continue;
      out.push_back(StageTiming{std::string(stages_[i]->name()), std::string(kPhaseNames[p]),
                                calls, m.total_ns.load(std::memory_order_relaxed)});
    }
  }
  return out;
}

}  // namespace bastion::guard
