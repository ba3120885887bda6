// Guard: the lifecycle of one guarded model or tool call.
//
// Calls in flight live in one map under one mutex, held only to find, insert
// or remove an entry: policy evaluation, pricing, budgets, SLOs and ledger
// appends all run outside it.
#include "bastion/guard.h"

#include <chrono>
#include <mutex>
#include <random>
#include <unordered_map>

#include <fmt/format.h>

#include "bastion/policy_state.h"
#include "util/path_arg.h"

namespace bastion {

namespace {

bool IsModelHook(Hook h) { return h == Hook::kBeforeModel; }

// 64 random bits per call, from a per-thread generator seeded once.
uint64_t RandomBits() {
  thread_local std::mt19937_64 rng([] {
    std::random_device rd;
    return (uint64_t{rd()} << 32) ^ rd();
  }());
  return rng();
}

std::string NewTraceId() { return fmt::format("{:016x}{:016x}", RandomBits(), RandomBits()); }
std::string NewSpanId() { return fmt::format("{:016x}", RandomBits()); }

// At most `max` bytes, cut at a UTF-8 character boundary, marked when cut.
std::string Summary(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return fmt::format("{}...[{} bytes]", text.substr(0, cut), text.size());
}

bool HighRisk(const CallInfo& call, const Decision& d) {
  if (d.risk_level == "high" || d.risk_level == "critical") return true;
  const bool tool = call.hook == Hook::kBeforeTool || call.hook == Hook::kAfterTool;
  return tool && !call.operation.empty() && call.operation != "read";
}

// Makes `d` a denial by `policy_id` for `message`, keeping the explain trail.
void Deny(Decision* d, const std::string& policy_id, const std::string& message) {
  d->effect = Effect::kDeny;
  d->reasons = {Reason{policy_id, message}};
  d->redactions.clear();
  d->model_downgrade.reset();
  PolicyOutcome& o = d->explain.emplace_back();
  o.policy_id = policy_id;
  o.effect = Effect::kDeny;
  o.message = message;
  o.applied = true;
}

// Adds a modification by a stage after the policies (SLO, budget downgrades).
void Modify(Decision* d, const std::string& policy_id, const std::string& message) {
  if (d->effect == Effect::kAllow) {
    d->effect = Effect::kModify;
    d->reasons.clear();
  }
  if (d->effect == Effect::kModify) d->reasons.push_back(Reason{policy_id, message});
  PolicyOutcome& o = d->explain.emplace_back();
  o.policy_id = policy_id;
  o.effect = Effect::kModify;
  o.message = message;
  o.applied = true;
}

TokenUsage RecordTokens(const Usage& u) {
  TokenUsage t;
  t.input = static_cast<uint64_t>(u.input);
  t.output = static_cast<uint64_t>(u.output);
  t.cache_read = static_cast<uint64_t>(u.cached_input);
  t.cache_write = static_cast<uint64_t>(u.cache_write_5m + u.cache_write_1h);
  t.reasoning = static_cast<uint64_t>(u.reasoning);
  return t;
}

}  // namespace

class Guard::Impl {
 public:
  struct InFlight {
    CallRequest request;  // request.call carries the trace and span ids
    BeginResult begun;
    BudgetHold hold;
    bool awaiting_approval = false;
    std::chrono::steady_clock::time_point started;
    std::string chunk_window;
    // Ended, with its output held for review (an after_* require_approval):
    // what an approval releases, and the context of the verdict's record.
    bool output_held = false;
    std::string held_output;
    std::string after_policy_version;
  };

  std::mutex mu;
  std::unordered_map<uint64_t, InFlight> calls;        // GUARDED_BY(mu)
  std::unordered_map<std::string, uint64_t> by_key;    // GUARDED_BY(mu)
  std::atomic<uint64_t> next_id{1};
  bool closed = false;  // GUARDED_BY(mu)
};

Guard::Guard(GuardOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

Guard::~Guard() { (void)Close(); }

Result<std::unique_ptr<Guard>> Guard::Open(GuardOptions options) {
  auto guard = std::unique_ptr<Guard>(new Guard(std::move(options)));
  const GuardOptions& o = guard->options_;
  for (const auto& [path, name] : {std::pair{&o.policy_dir, "policy_dir"},
                                   {&o.budgets_file, "budgets_file"},
                                   {&o.slos_file, "slos_file"},
                                   {&o.ledger_path, "ledger_path"},
                                   {&o.state_path, "state_path"}}) {
    BASTION_RETURN_IF_ERROR(CheckPathArgument(*path, name, /*allow_empty=*/true));
  }
  for (size_t i = 0; i < o.pricing_files.size(); ++i) {
    BASTION_RETURN_IF_ERROR(CheckPathArgument(o.pricing_files[i],
                                              fmt::format("pricing_files[{}]", i)));
  }
  guard->clock_ = o.clock ? o.clock : std::make_shared<WallClock>();
  auto clock = guard->clock_;

  if (!o.policy_dir.empty()) {
    auto engine = PolicyEngine::Load(o.policy_dir);
    if (!engine.ok()) return engine.status();
    guard->engine_ = std::move(*engine);
  }

  auto pricing = std::make_shared<PricingTable>();
  for (const std::string& file : o.pricing_files) {
    auto table = PricingTable::FromYamlFile(file);
    if (!table.ok()) return table.status();
    pricing->MergeFrom(*table);
  }
  guard->pricing_ = pricing;

  if (!o.budgets_file.empty()) {
    auto config = LoadBudgetYamlFile(o.budgets_file);
    if (!config.ok()) return config.status();
    BudgetSet::Options bo;
    bo.clock = [clock] { return clock->NowNs(); };
    bo.state_path = o.state_path;
    bo.flush_interval_ns = o.budget_flush_interval_ns;
    auto set = BudgetSet::Open(std::move(*config), bo);
    if (!set.ok()) return set.status();
    guard->budgets_ = std::move(*set);
  }

  if (!o.slos_file.empty()) {
    auto specs = LoadSloYamlFile(o.slos_file);
    if (!specs.ok()) return specs.status();
    SloMonitor::Options so;
    so.clock = clock;
    auto monitor = SloMonitor::Create(std::move(*specs), so);
    if (!monitor.ok()) return monitor.status();
    guard->slos_ = std::move(*monitor);
  }

  if (!o.ledger_path.empty()) {
    auto ledger = Ledger::Open(o.ledger_path, o.ledger);
    if (!ledger.ok()) return ledger.status();
    guard->ledger_ = std::move(*ledger);
  }

  if (guard->engine_) {
    guard->engine_->SetState(
        std::make_shared<LivePolicyState>(guard->pricing_, guard->budgets_, guard->slos_));
  }
  return guard;
}

Result<uint64_t> Guard::Append(bastion::Record record, bool high_risk) {
  if (!ledger_) return uint64_t{0};
  if (record.timestamp_ns == 0) record.timestamp_ns = clock_->NowNs();
  return ledger_->Append(std::move(record),
                         high_risk ? options_.high_risk_durability : options_.durability);
}

Result<uint64_t> Guard::AppendDecision(bastion::Record record, bool high_risk) {
  // A low-risk decision is queued without waiting or waking the writer: the
  // writer writes records in sequence order, so the outcome record's write at
  // End covers it too (and the writer writes it within group_sync_interval
  // if the call runs longer).
  if (!high_risk && ledger_ && options_.durability != Durability::kSync) {
    if (record.timestamp_ns == 0) record.timestamp_ns = clock_->NowNs();
    return ledger_->AppendDeferred(std::move(record));
  }
  return Append(std::move(record), high_risk);
}

Result<uint64_t> Guard::AppendRecord(bastion::Record record) {
  if (record.policy_version.empty() && engine_) record.policy_version = engine_->version();
  return Append(std::move(record), false);
}

namespace {

// Sets attribute `key`, replacing a value the call brought under that key.
void SetAttribute(Record* r, std::string key, std::string value) {
  for (auto& [k, v] : r->attributes) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  r->attributes.emplace_back(std::move(key), std::move(value));
}

// The fields every record of a call shares, with the call's own attributes.
Record CallRecord(const CallInfo& c, const std::string& action, const CallRequest& req,
                  const std::string& policy_version) {
  Record r = RecordFromCall(c, action);
  r.parent_span_id = req.parent_span_id;
  r.request_id = req.request_id;
  r.policy_version = policy_version;
  return r;
}

// The record of a human's verdict on an in-flight call, on its trace and span.
Record VerdictRecord(const Guard::Impl::InFlight& f, const std::string& policy_version,
                     bool approved, const std::string& by) {
  const CallInfo& c = f.request.call;
  Record r = CallRecord(c, "approval", f.request, policy_version);
  r.model = f.begun.model;
  r.span_id = f.begun.span_id;
  r.approval_status = approved ? "approved" : "rejected";
  r.approved_by = by;
  SetAttribute(&r, "phase", "approval");
  SetAttribute(&r, "call", IsModelHook(c.hook) ? "model_call" : "tool_call");
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

}  // namespace

Result<BeginResult> Guard::Begin(CallRequest request) {
  CallInfo& c = request.call;
  if (c.hook != Hook::kBeforeModel && c.hook != Hook::kBeforeTool) {
    return Status::InvalidArgument("Begin takes a before_model or before_tool call");
  }
  const bool model_call = IsModelHook(c.hook);
  if (!request.idempotency_key.empty()) {
    std::lock_guard lock(impl_->mu);
    if (auto it = impl_->by_key.find(request.idempotency_key); it != impl_->by_key.end()) {
      const Impl::InFlight& f = impl_->calls.at(it->second);
      const CallInfo& was = f.request.call;
      if (was.hook != c.hook || was.tool != c.tool || was.operation != c.operation ||
          was.resource_id != c.resource_id || was.agent_id != c.agent_id ||
          (c.hook == Hook::kBeforeModel && was.model != c.model && f.begun.model != c.model)) {
        return Status::InvalidArgument(fmt::format(
            "idempotency key '{}' belongs to call {} ({} '{}'), not to this {} call",
            request.idempotency_key, it->second, was.hook == Hook::kBeforeTool ? "tool" : "model",
            was.hook == Hook::kBeforeTool ? was.tool : was.model,
            c.hook == Hook::kBeforeTool ? "tool" : "model"));
      }
      BeginResult again = f.begun;
      again.resumed = true;
      return again;
    }
  }
  if (c.trace_id.empty()) c.trace_id = NewTraceId();
  const std::string span_id = NewSpanId();

  BeginResult out;
  out.call_id = impl_->next_id.fetch_add(1, std::memory_order_relaxed);
  out.trace_id = c.trace_id;
  out.span_id = span_id;
  out.decision = engine_ ? engine_->Evaluate(c) : Decision{};
  Decision& d = out.decision;
  out.input = ApplyRedactions(c.input, d.redactions, "input");
  out.model = c.model;
  if (d.model_downgrade) out.model = *d.model_downgrade;

  const char* kind = model_call ? "model" : "tool";
  bool slo_admitted = false;
  if (d.effect != Effect::kDeny && slos_) {
    const Admission a = slos_->Admit(SloCall{kind, c.agent_id, out.model, c.tool});
    if (!a.allowed) {
      Deny(&d, "slo:" + a.slo_id, a.reason);
    } else {
      slo_admitted = true;
      if (a.downgrade_model && *a.downgrade_model != out.model) {
        out.model = *a.downgrade_model;
        Modify(&d, "slo:" + a.slo_id, a.reason);
      }
    }
  }

  BudgetHold hold;
  if (d.effect != Effect::kDeny && model_call && budgets_) {
    BudgetSubject subject = BudgetSubjectOf(c);
    subject.model = out.model;
    // Priced before knowing whether a budget covers the call: Reserve finds
    // the covering budgets itself, and an uncovered call holds nothing.
    Usage estimate_usage;
    estimate_usage.input =
        request.input_tokens.value_or(static_cast<int64_t>(c.input.size() / 4 + 1));
    estimate_usage.output = request.max_output_tokens.value_or(options_.default_max_output_tokens);
    int64_t estimate = 0;
    auto priced = PriceCall(*pricing_, out.model, estimate_usage);
    if (priced.ok()) {
      estimate = priced->total_nanousd;
    } else if (const std::vector<std::string> covering = budgets_->CoveringBudgets(subject);
               !covering.empty()) {  // only a budget needs the price
      if (!priced.status().IsNotFound()) {
        Deny(&d, "budget", priced.status().message());
      } else if (options_.deny_unpriced_budgeted_calls) {
        Deny(&d, "budget:" + covering.front(),
             fmt::format("model '{}' has no price, so budget '{}' cannot be enforced", out.model,
                         covering.front()));
      }
    }
    if (d.effect != Effect::kDeny) {
      std::string refused_by;
      auto held = budgets_->Reserve(subject, estimate, &refused_by);
      if (!held.ok()) {
        if (!held.status().IsFailedPrecondition()) return held.status();
        out.estimate_nanousd = estimate;  // what the refusing budget could not hold
        Deny(&d, "budget:" + refused_by, held.status().message());
      } else if (!held->reservations.empty()) {
        hold = std::move(*held);
        out.estimate_nanousd = estimate;
        out.budget_alerts = hold.alerts;
        if (hold.downgrade_model && *hold.downgrade_model != out.model) {
          Modify(&d, "budget:" + hold.downgrade_budget,
                 fmt::format("downgraded from '{}' to '{}': budget '{}' is running low",
                             out.model, *hold.downgrade_model, hold.downgrade_budget));
          out.model = *hold.downgrade_model;
        }
      }
    }
  }

  // Refused after the SLO admission (budget): the call will not be made, so
  // it gives back the half-open probe slot it may hold.
  if (slo_admitted && d.effect == Effect::kDeny) {
    slos_->Release(SloCall{kind, c.agent_id, out.model, c.tool});
  }

  // The decision record: written before the call may run.
  c.model = out.model;
  Record r = CallRecord(c, model_call ? "model_call" : "tool_call", request, d.policy_version);
  r.span_id = span_id;
  r.input_summary = Summary(out.input, options_.summary_bytes);
  r.effect = std::string(EffectName(d.effect));
  r.reasons = d.reasons;
  r.risk_level = d.risk_level;
  if (d.effect == Effect::kRequireApproval) r.approval_status = "pending";
  SetAttribute(&r, "phase", "decision");
  if (out.estimate_nanousd > 0) SetAttribute(&r, "estimate_usd", FormatUsd(out.estimate_nanousd));
  for (const PolicyError& e : d.errors) {
    SetAttribute(&r, "policy_error:" + e.policy_id, Summary(e.kind + ": " + e.message, 512));
  }
  // Alert records share the decision's context (copied only when needed).
  std::optional<Record> base;
  if (!out.budget_alerts.empty()) base = r;
  // Only calls that will End may leave their decision record to End's wait;
  // denials and approvals pending are waited for here.
  const bool ends = d.effect == Effect::kAllow || d.effect == Effect::kModify;
  auto seq = ends ? AppendDecision(std::move(r), HighRisk(c, d)) : Append(std::move(r), HighRisk(c, d));
  if (!seq.ok()) {
    for (const Reservation& res : hold.reservations) (void)budgets_->ledger().Release(res);
    return seq.status();
  }
  out.record_seq = *seq;
  for (const AlertEvent& a : out.budget_alerts) {
    BASTION_RETURN_IF_ERROR(Append(AlertRecord(a, *base), false).status());
  }

  if (d.effect != Effect::kDeny) {
    Impl::InFlight f;
    f.request = std::move(request);
    f.request.call.trace_id = out.trace_id;
    f.begun = out;
    f.hold = std::move(hold);
    f.awaiting_approval = d.effect == Effect::kRequireApproval;
    f.started = std::chrono::steady_clock::now();
    std::lock_guard lock(impl_->mu);
    if (!f.request.idempotency_key.empty()) {
      impl_->by_key.emplace(f.request.idempotency_key, out.call_id);
    }
    impl_->calls.emplace(out.call_id, std::move(f));
  }
  return out;
}

Result<ChunkResult> Guard::Chunk(uint64_t call_id, std::string_view text) {
  CallInfo c;
  size_t prefix = 0;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->calls.find(call_id);
    if (it == impl_->calls.end()) {
      return Status::NotFound(fmt::format("call {} is not in flight", call_id));
    }
    std::string& window = it->second.chunk_window;
    window.append(text);
    if (window.size() > options_.chunk_window_bytes + text.size()) {
      size_t cut = window.size() - options_.chunk_window_bytes - text.size();
      while (cut < window.size() && (static_cast<unsigned char>(window[cut]) & 0xC0) == 0x80) ++cut;
      window.erase(0, cut);
    }
    prefix = window.size() - text.size();
    c = it->second.request.call;
    c.chunk = window;
  }
  c.hook = Hook::kOnChunk;
  ChunkResult out;
  out.decision = engine_ ? engine_->Evaluate(c) : Decision{};
  if (out.decision.effect == Effect::kDeny) {
    out.stop = true;
    return out;
  }
  // Redactions of the window, clipped to the new text.
  std::vector<Redaction> mine;
  for (const Redaction& red : out.decision.redactions) {
    if (red.target != "chunk" || red.end <= prefix) continue;
    Redaction r = red;
    r.start = red.start > prefix ? red.start - prefix : 0;
    r.end = red.end - prefix;
    mine.push_back(std::move(r));
  }
  out.text = ApplyRedactions(text, mine, "chunk");
  return out;
}

Result<EndResult> Guard::End(uint64_t call_id, const CallOutcome& outcome) {
  Impl::InFlight f;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->calls.find(call_id);
    if (it == impl_->calls.end()) {
      return Status::NotFound(fmt::format("call {} is not in flight (ended, or denied at begin)",
                                          call_id));
    }
    if (it->second.awaiting_approval) {
      return Status::FailedPrecondition(
          fmt::format("call {} is awaiting approval; Approve it first", call_id));
    }
    if (it->second.output_held) {
      return Status::FailedPrecondition(fmt::format(
          "call {} has ended; its output awaits review (ReviewOutput)", call_id));
    }
    f = std::move(it->second);
    impl_->calls.erase(it);
    if (!f.request.idempotency_key.empty()) impl_->by_key.erase(f.request.idempotency_key);
  }
  const bool model_call = IsModelHook(f.request.call.hook);
  CallInfo c = std::move(f.request.call);
  c.hook = model_call ? Hook::kAfterModel : Hook::kAfterTool;
  c.model = f.begun.model;
  c.input = f.begun.input;
  c.output = outcome.output;
  if (outcome.usage) c.tokens = RecordTokens(*outcome.usage);

  EndResult out;
  if (outcome.ok && engine_) {
    out.decision = engine_->Evaluate(c);
  } else {
    out.decision.policy_version = f.begun.decision.policy_version;
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

  // Cost, and the reservation settled or released.
  if (outcome.usage) {
    auto cost = PriceCall(*pricing_, c.model, *outcome.usage);
    if (cost.ok()) {
      out.cost_nanousd = cost->total_nanousd;
    } else if (cost.status().IsNotFound()) {
      out.unpriced = model_call;
    } else {
      return cost.status();
    }
  }
  if (!f.hold.reservations.empty()) {
    if (!outcome.ok && !outcome.usage) {
      BASTION_RETURN_IF_ERROR(budgets_->Release(f.hold));
    } else {
      // Without a priced usage the estimate is charged: never less than was
      // reserved for a call that ran.
      const int64_t charge = out.cost_nanousd.value_or(f.begun.estimate_nanousd);
      auto settled = budgets_->Settle(f.hold, charge);
      if (!settled.ok()) return settled.status();
      out.overshoot_nanousd = settled->overshoot_nanousd;
      out.budget_alerts = settled->alerts;
    }
  }

  const int64_t latency =
      outcome.latency_ns.value_or(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::steady_clock::now() - f.started)
                                      .count());
  if (slos_) {
    SloOutcome so;
    so.success = outcome.ok;
    so.error_class = outcome.error_class;
    so.latency_ns = latency;
    so.cost_nanousd = out.cost_nanousd;
    out.slo_events = slos_->Record(SloCall{model_call ? "model" : "tool", c.agent_id, c.model,
                                           c.tool},
                                   so);
  }

  Record r = CallRecord(c, model_call ? "model_call" : "tool_call", f.request,
                        f.begun.decision.policy_version);
  r.span_id = f.begun.span_id;
  // A held output is recorded as produced (after redactions): the review is
  // about it.
  r.output_summary =
      Summary(out.awaiting_approval ? out.held_output : out.output, options_.summary_bytes);
  if (out.awaiting_approval) r.approval_status = "pending";
  if (outcome.usage) r.tokens = RecordTokens(*outcome.usage);
  if (out.cost_nanousd) r.cost_nanousd = *out.cost_nanousd;
  r.effect = std::string(EffectName(d.effect));
  r.reasons = d.reasons;
  r.risk_level = d.risk_level;
  r.duration_ns = latency;
  SetAttribute(&r, "phase", "outcome");
  if (!outcome.ok) {
    SetAttribute(&r, "error", outcome.error_class.empty() ? "error" : outcome.error_class);
  }
  if (out.unpriced) SetAttribute(&r, "cost", "unpriced");
  if (outcome.usage && !out.cost_nanousd && !model_call) SetAttribute(&r, "cost", "none");
  if (out.overshoot_nanousd > 0) {
    SetAttribute(&r, "overshoot_usd", FormatUsd(out.overshoot_nanousd));
  }
  // Alert and breach records share the outcome's context.
  std::optional<Record> base;
  if (!out.budget_alerts.empty() || !out.slo_events.empty()) base = r;
  auto seq = Append(std::move(r), false);
  if (!seq.ok()) return seq.status();
  out.record_seq = *seq;
  for (const AlertEvent& a : out.budget_alerts) {
    BASTION_RETURN_IF_ERROR(Append(AlertRecord(a, *base), false).status());
  }
  for (const SloEvent& e : out.slo_events) {
    BASTION_RETURN_IF_ERROR(Append(BreachRecord(e, *base), e.severity == "page").status());
  }
  if (out.awaiting_approval) {
    // Kept (its budget settled, its SLO recorded) until ReviewOutput; a Begin
    // with its idempotency key finds it as begun.
    c.hook = model_call ? Hook::kBeforeModel : Hook::kBeforeTool;
    f.request.call = std::move(c);
    f.hold = BudgetHold{};
    f.output_held = true;
    f.held_output = out.held_output;
    f.after_policy_version = d.policy_version;
    std::lock_guard lock(impl_->mu);
    if (!f.request.idempotency_key.empty()) {
      impl_->by_key.emplace(f.request.idempotency_key, call_id);
    }
    impl_->calls.emplace(call_id, std::move(f));
  }
  return out;
}

Result<std::string> Guard::ReviewOutput(uint64_t call_id, bool approved,
                                        const std::string& reviewed_by,
                                        const std::string& reason) {
  if (reviewed_by.empty()) {
    return Status::InvalidArgument("a review must name who decided (approved_by)");
  }
  Impl::InFlight f;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->calls.find(call_id);
    if (it == impl_->calls.end()) {
      return Status::NotFound(fmt::format("call {} is not in flight", call_id));
    }
    if (!it->second.output_held) {
      return Status::FailedPrecondition(
          fmt::format("call {}'s output is not awaiting review", call_id));
    }
    f = std::move(it->second);
    impl_->calls.erase(it);
    if (!f.request.idempotency_key.empty()) impl_->by_key.erase(f.request.idempotency_key);
  }
  const std::string who = reason.empty() ? reviewed_by : reviewed_by + ": " + reason;
  Record r = VerdictRecord(f, f.after_policy_version, approved, reviewed_by);
  r.effect = approved ? "allow" : "deny";
  r.reasons = {Reason{"approval",
                      fmt::format("output {} by {}", approved ? "approved" : "rejected", who)}};
  SetAttribute(&r, "stage", "output");
  BASTION_RETURN_IF_ERROR(Append(std::move(r), true).status());
  if (approved) return std::move(f.held_output);
  return fmt::format("[withheld: output rejected by {}]", who);
}

Result<BeginResult> Guard::Approve(uint64_t call_id, bool approved, const std::string& approved_by,
                                   const std::string& reason) {
  Impl::InFlight copy;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->calls.find(call_id);
    if (it == impl_->calls.end()) {
      return Status::NotFound(fmt::format("call {} is not in flight", call_id));
    }
    if (!it->second.awaiting_approval) {
      return Status::FailedPrecondition(fmt::format(
          "call {} is not awaiting approval{}", call_id,
          it->second.output_held ? " (its output awaits review: ReviewOutput)" : ""));
    }
    Impl::InFlight& f = it->second;
    Decision& d = f.begun.decision;
    const std::string message =
        fmt::format("{} by {}{}{}", approved ? "approved" : "rejected", approved_by,
                    reason.empty() ? "" : ": ", reason);
    if (approved) {
      f.awaiting_approval = false;
      d.effect = d.redactions.empty() && !d.model_downgrade ? Effect::kAllow : Effect::kModify;
      d.reasons = {Reason{"approval", message}};
      copy.request = f.request;
      copy.begun = f.begun;
    } else {
      d.effect = Effect::kDeny;
      d.reasons = {Reason{"approval", message}};
      copy = std::move(f);
      impl_->calls.erase(it);
      if (!copy.request.idempotency_key.empty()) {
        impl_->by_key.erase(copy.request.idempotency_key);
      }
    }
  }
  if (!approved && slos_) {
    const CallInfo& c = copy.request.call;
    slos_->Release(SloCall{IsModelHook(c.hook) ? "model" : "tool", c.agent_id, copy.begun.model,
                           c.tool});
  }
  if (!approved && !copy.hold.reservations.empty()) {
    BASTION_RETURN_IF_ERROR(budgets_->Release(copy.hold));
  }
  Record r = VerdictRecord(copy, copy.begun.decision.policy_version, approved, approved_by);
  r.effect = std::string(EffectName(copy.begun.decision.effect));
  r.reasons = copy.begun.decision.reasons;
  auto seq = Append(std::move(r), true);
  if (!seq.ok()) return seq.status();
  BeginResult out = copy.begun;
  out.record_seq = *seq;
  return out;
}

Result<uint64_t> Guard::FindByKey(const std::string& idempotency_key) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->by_key.find(idempotency_key);
  if (it == impl_->by_key.end()) {
    return Status::NotFound(fmt::format("no call in flight with key '{}'", idempotency_key));
  }
  return it->second;
}

Status Guard::Close() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->closed) return Status::OK();
    impl_->closed = true;
  }
  Status result;
  if (budgets_) result = budgets_->Close();
  if (ledger_) {
    Status s = ledger_->Close();
    if (result.ok()) result = s;
  }
  return result;
}

}  // namespace bastion
