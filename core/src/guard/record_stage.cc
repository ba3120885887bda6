// The record stage: a call's ledger records (decision, outcome, verdicts,
// budget alerts, SLO breaches), each with the durability its risk needs.
#include <algorithm>

#include <fmt/format.h>

#include "guard/stage.h"
#include "guard/stream.h"

namespace bastion::guard {

namespace {

// At most `max` bytes, cut at a UTF-8 character boundary, marked when cut.
std::string Summary(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return fmt::format("{}...[{} bytes]", text.substr(0, cut), text.size());
}

const char* Action(const CallState& call) { return call.model_call ? "model_call" : "tool_call"; }

// The record of a human's verdict on a call, on its trace and span.
Record VerdictRecord(const CallState& call, const std::string& policy_version, bool approved,
                     const std::string& by) {
  Record r = CallRecord(call.request.call, "approval", call.request, policy_version);
  r.span_id = call.span_id;
  r.approval_status = approved ? "approved" : "rejected";
  r.approved_by = by;
  SetAttribute(&r, "phase", "approval");
  SetAttribute(&r, "call", Action(call));
  return r;
}

// A record of something that happened to a call (an alert, a breach): the
// call's context without its content or effect.
Record EventRecord(const Record& call, const char* action) {
  Record r = call;
  r.action = action;
  r.input_summary.clear();
  r.output_summary.clear();
  r.effect.clear();
  return r;
}

Record AlertRecord(const AlertEvent& a, const Record& call) {
  Record r = EventRecord(call, "budget_alert");
  r.reasons = {Reason{"budget:" + a.budget_id,
                      fmt::format("{}% of {} reached ({} committed): {}", a.percent,
                                  FormatUsd(a.limit_nanousd), FormatUsd(a.committed_nanousd),
                                  AlertActionName(a.action))}};
  r.risk_level = a.level == AlertLevel::kCritical ? "high" : "";
  r.attributes = {{"phase", "budget_alert"},
                  {"budget", a.budget_id},
                  {"key", a.key},
                  {"level", AlertLevelName(a.level)},
                  {"action", AlertActionName(a.action)},
                  {"percent", std::to_string(a.percent)}};
  return r;
}

// What happened to the budget store (it became unreachable and calls are
// admitted locally; it came back), in the context of the call that saw it.
Record StoreRecord(const StoreEvent& e, const Record& call) {
  Record r = EventRecord(call, e.kind.c_str());
  r.timestamp_ns = e.at_ns;
  r.reasons = {Reason{"store:" + e.store, e.detail}};
  r.attributes = {{"phase", e.kind}, {"store", e.store}, {"detail", e.detail}};
  return r;
}

Record BreachRecord(const SloEvent& e, const Record& call) {
  Record r = EventRecord(call, "slo_breach");
  r.reasons = {Reason{"slo:" + e.slo_id, e.detail}};
  r.risk_level = e.severity == "page" ? "high" : "";
  r.attributes = {{"phase", "slo_breach"}, {"slo", e.slo_id},
                  {"subject", e.subject},  {"signal", e.signal},
                  {"firing", e.firing ? "true" : "false"}, {"severity", e.severity},
                  {"action", e.action}};
  return r;
}

// The stream summary of a streamed call's outcome record; where and why it
// stopped, if it did (then the record's effect is deny, and the denying
// votes join its reasons). Returns whether it stopped.
bool AddStream(const StreamReport& s, Record* r) {
  SetAttribute(r, "stream_chunks", std::to_string(s.chunks));
  SetAttribute(r, "stream_released_bytes", std::to_string(s.released_bytes));
  SetAttribute(r, "stream_redacted_chunks", std::to_string(s.redacted));
  if (s.unreleased_bytes > 0) {
    SetAttribute(r, "stream_unreleased_bytes", std::to_string(s.unreleased_bytes));
  }
  if (!s.stopped) return false;
  SetAttribute(r, "stream_stop_chunk", std::to_string(s.stop_chunk));
  SetAttribute(r, "stream_stop_byte", std::to_string(s.stop_byte));
  if (s.stop_at_finish) SetAttribute(r, "stream_stop_at", "finish");
  std::string ids;
  for (size_t i = 0; i < s.stop_reasons.size(); ++i) {
    const std::string& id = s.stop_reasons[i].policy_id;
    bool seen = false;
    for (size_t j = 0; j < i && !seen; ++j) seen = s.stop_reasons[j].policy_id == id;
    if (!seen) ids += ids.empty() ? id : "," + id;
  }
  SetAttribute(r, "stream_stop_policies", ids);
  // Deny wins (bastion/decision.h): its votes are the reasons (the end's
  // decision already carries them when the policies stage folded the stop in).
  const std::string deny(EffectName(Effect::kDeny));
  if (r->effect != deny) r->reasons.clear();
  r->effect = deny;
  for (const Reason& reason : s.stop_reasons) {
    if (std::find(r->reasons.begin(), r->reasons.end(), reason) == r->reasons.end()) {
      r->reasons.push_back(reason);
    }
  }
  return true;
}

class RecordStage final : public Stage {
 public:
  explicit RecordStage(const StageContext& ctx) : ctx_(ctx) {}
  std::string_view name() const override { return "record"; }

  // The decision record. Durable before Begin returns only when the call may
  // run and is high-risk: a decision that lets nothing run (a denial, an
  // approval still pending) is queued, as is a low-risk call's, which its
  // outcome record's wait covers.
  Status Admit(CallState& call) override {
    const Decision& d = call.decision;
    Record r = CallRecord(call.request.call, Action(call), call.request, d.policy_version);
    r.span_id = call.span_id;
    r.input_summary = Summary(call.input(), ctx_.options->summary_bytes);
    r.effect = std::string(EffectName(d.effect));
    r.reasons = d.reasons;
    r.risk_level = d.risk_level;
    if (d.effect == Effect::kRequireApproval) r.approval_status = "pending";
    SetAttribute(&r, "phase", "decision");
    BASTION_RETURN_IF_ERROR(AppendStoreEvents(r));
    if (call.estimate_nanousd > 0) {
      SetAttribute(&r, "estimate_usd", FormatUsd(call.estimate_nanousd));
    }
    for (const PolicyError& e : d.errors) {
      SetAttribute(&r, "policy_error:" + e.policy_id, Summary(e.kind + ": " + e.message, 512));
    }
    // Alert records share the decision's context (copied only when needed).
    std::optional<Record> base;
    if (!call.hold.alerts.empty()) base = r;
    const bool runs = d.effect == Effect::kAllow || d.effect == Effect::kModify;
    // Waited for: a high-risk call that runs (its record reaches disk before
    // the side effect), and a journaled call that does not run (denied, or
    // awaiting approval: the journal keeps it, and Begin with its key returns
    // it without recording again, so its record must not be lost). A
    // journaled call that runs is queued like any other: a guard reopened
    // after a crash forgets a kept call whose record never reached the
    // ledger (Guard::Restore).
    const Durability durability =
        (runs && call.high_risk()) || (call.journaled && d.effect == Effect::kRequireApproval)
            ? ctx_.options->high_risk_durability
            : ctx_.options->durability;
    const bool wait = (runs && call.high_risk()) || (call.journaled && !runs);
    auto seq = wait ? Append(std::move(r), durability) : Queue(std::move(r));
    if (!seq.ok()) return seq.status();
    call.record_seq = *seq;
    for (const AlertEvent& a : call.hold.alerts) {
      BASTION_RETURN_IF_ERROR(Append(AlertRecord(a, *base), ctx_.options->durability).status());
    }
    return Status::OK();
  }

  // The outcome record, and a record for every budget alert and SLO event
  // the call fired.
  Status Settle(CallState& call, const CallOutcome& outcome) override {
    const EndResult& out = call.ended;
    const Decision& d = out.decision;
    Record r = CallRecord(call.request.call, Action(call), call.request, call.policy_version);
    r.span_id = call.span_id;
    // A held output is recorded as produced (after redactions): the review is
    // about it.
    r.output_summary =
        Summary(out.awaiting_approval ? out.held_output : out.output, ctx_.options->summary_bytes);
    if (out.awaiting_approval) r.approval_status = "pending";
    if (outcome.usage) r.tokens = RecordTokens(*outcome.usage);
    if (out.cost_nanousd) r.cost_nanousd = *out.cost_nanousd;
    r.effect = std::string(EffectName(d.effect));
    r.reasons = d.reasons;
    r.risk_level = d.risk_level;
    r.duration_ns = call.latency_ns;
    SetAttribute(&r, "phase", "outcome");
    BASTION_RETURN_IF_ERROR(AppendStoreEvents(r));
    const bool stopped = call.stream && AddStream(call.stream->Report(), &r);
    if (!outcome.ok || stopped) {
      // A stopped stream reads as failed, under the caller's error class if
      // it gave one.
      SetAttribute(&r, "error", !outcome.ok && !outcome.error_class.empty() ? outcome.error_class
                                : stopped                                   ? "stream_stopped"
                                                                            : "error");
    }
    if (out.unpriced) SetAttribute(&r, "cost", "unpriced");
    if (outcome.usage && !out.cost_nanousd && !call.model_call) SetAttribute(&r, "cost", "none");
    if (out.overshoot_nanousd > 0) {
      SetAttribute(&r, "overshoot_usd", FormatUsd(out.overshoot_nanousd));
    }
    // Alert and breach records share the outcome's context.
    std::optional<Record> base;
    if (!out.budget_alerts.empty() || !out.slo_events.empty()) base = r;
    auto seq = Append(std::move(r), ctx_.options->durability);
    if (!seq.ok()) return seq.status();
    call.ended.record_seq = *seq;
    for (const AlertEvent& a : out.budget_alerts) {
      BASTION_RETURN_IF_ERROR(Append(AlertRecord(a, *base), ctx_.options->durability).status());
    }
    for (const SloEvent& e : out.slo_events) {
      const Durability durability = e.severity == "page" ? ctx_.options->high_risk_durability
                                                         : ctx_.options->durability;
      BASTION_RETURN_IF_ERROR(Append(BreachRecord(e, *base), durability).status());
    }
    return Status::OK();
  }

  // A verdict record is durable before the verdict takes effect: an approved
  // call may run once Approve returns.
  Status Resolve(CallState& call, const Verdict& verdict) override {
    Record r;
    if (verdict.on_output) {
      r = VerdictRecord(call, call.after_policy_version, verdict.approved, verdict.by);
      r.effect = verdict.approved ? "allow" : "deny";
      r.reasons = {Reason{"approval", verdict.message}};
      SetAttribute(&r, "stage", "output");
    } else {
      r = VerdictRecord(call, call.decision.policy_version, verdict.approved, verdict.by);
      r.effect = std::string(EffectName(call.decision.effect));
      r.reasons = call.decision.reasons;
    }
    auto seq = Append(std::move(r), ctx_.options->high_risk_durability);
    if (!seq.ok()) return seq.status();
    call.verdict_seq = *seq;
    return Status::OK();
  }

 private:
  Status AppendStoreEvents(const Record& call) {
    if (!ctx_.take_store_events) return Status::OK();
    for (const StoreEvent& e : ctx_.take_store_events()) {
      BASTION_RETURN_IF_ERROR(Append(StoreRecord(e, call), ctx_.options->durability).status());
    }
    return Status::OK();
  }

  Result<uint64_t> Append(Record record, Durability durability) {
    if (ctx_.ledger == nullptr) return uint64_t{0};
    if (record.timestamp_ns == 0) record.timestamp_ns = ctx_.clock->NowNs();
    return ctx_.ledger->Append(std::move(record), durability);
  }

  // Queued without waiting or waking the writer (Ledger::AppendDeferred):
  // the writer writes records in sequence order, so any later waited append
  // covers it, and it is written within group_sync_interval otherwise.
  // durability kSync waits for every record.
  Result<uint64_t> Queue(Record record) {
    if (ctx_.ledger == nullptr) return uint64_t{0};
    if (ctx_.options->durability == Durability::kSync) {
      return Append(std::move(record), Durability::kSync);
    }
    if (record.timestamp_ns == 0) record.timestamp_ns = ctx_.clock->NowNs();
    return ctx_.ledger->AppendDeferred(std::move(record));
  }

  const StageContext& ctx_;
};

}  // namespace

std::unique_ptr<Stage> MakeRecordStage(const StageContext& ctx) {
  return std::make_unique<RecordStage>(ctx);
}

}  // namespace bastion::guard
