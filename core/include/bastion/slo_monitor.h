// SLOs as configured: which calls each objective covers, the state it keeps
// per subject (per model, per agent, ...), the signals it raises when an
// objective is breached, and the responses those signals switch on.
//
//   auto specs = bastion::LoadSloYamlFile("slos.yaml");   // errors name file:line:col
//   if (!specs.ok()) return specs.status();
//   bastion::SloMonitor::Options options;
//   options.on_escalate = [](const bastion::SloEvent& e) { page_someone(e); };
//   auto monitor = bastion::SloMonitor::Create(*specs, options);
//   if (!monitor.ok()) return monitor.status();
//
//   bastion::SloCall call{"model", "support-bot", "gpt-4o", ""};
//   bastion::Admission a = (*monitor)->Admit(call);      // before the call
//   if (!a.allowed) return refuse(a.reason);            // names the SLO and why
//   if (a.downgrade_model) call.model = *a.downgrade_model;
//   ... make the call ...
//   bastion::SloOutcome outcome;
//   outcome.success = ok; outcome.error_class = ok ? "" : "rate_limited";
//   outcome.latency_ns = elapsed_ns; outcome.cost_nanousd = cost;
//   for (const auto& e : (*monitor)->Record(call, outcome)) log(e);   // after it
//
// The YAML format:
//
//   version: 1
//   time_zone: Asia/Seoul          # calendar windows and per-day cost; default UTC
//   slos:
//     - id: support-model
//       match: {kind: model, agent: "support-*", model: "*"}   # kind: model | tool | "*"
//       group_by: [model]          # one series per model; omit for one series
//       time_zone: "+09:00"        # optional, overrides the file's
//       max_series: 1000           # optional cap on distinct subjects
//       latency: {p50: 800ms, p95: 2s, p99: 5s, timeout: 30s, window: 1h}
//       success:
//         target: 99.5%
//         window: 30d              # rolling; or calendar_day | calendar_week | calendar_month
//         bucket: 1m
//         exclude: [client_cancelled]
//         alerts: default          # or a list of {name, long, short, burn_rate, severity}
//       cost: {max_per_request_usd: 0.50, p95_per_request_usd: 0.10, per_day_usd: 100, window: 1h}
//       circuit_breaker: {failure_rate: 50%, slow_call: 5s, slow_call_rate: 100%,
//                         minimum_calls: 20, window: 100, open_for: 30s, half_open_probes: 5}
//       on_breach:
//         - {when: page, action: downgrade, model: gpt-4o-mini}
//         - {when: ticket, action: rate_limit, rate: 10/s}
//         - {when: breaker_open, action: escalate}
//
// Signals (SloEvent::signal) and what raises them, judged at each evaluation:
//   "burn_rate:<rule>"      a burn-rate rule of the success objective fires
//                           (BurnRateAlerter); severity: the rule's. Judged
//                           over whole buckets (the windows end with the last
//                           complete bucket), so it changes at most once per
//                           bucket instead of flapping with the partly filled
//                           current one.
//   "latency_p50" / "latency_p95" / "latency_p99"
//                           the quantile over latency.window_ns is above its
//                           target; severity "ticket".
//   "cost_per_request"      a call in cost.window_ns cost more than
//                           max_per_request; severity "ticket".
//   "cost_p95_per_request"  the p95 cost per priced call over cost.window_ns is
//                           above p95_per_request; severity "ticket".
//   "cost_per_day"          spend since local midnight is above per_day;
//                           severity "ticket". Clears when the day rolls over.
//   "breaker"               the circuit breaker is open; severity "page".
//
// Breach actions (BreachAction::when) select signals:
//   "page" / "ticket"  burn-rate signals whose rule has that severity;
//   a rule name        that burn-rate rule's signal;
//   "latency"          any latency signal;  "cost"  any cost signal;
//   "breaker_open"     the breaker signal;  "any"   every signal.
// An action is active for a series exactly while at least one signal it
// selects is firing for that series (as of the last evaluation).
//
// Time: every timestamp is UTC wall time in nanoseconds since the Unix epoch
// (calendar days need it). Tests inject a ManualClock and run days of traffic
// in milliseconds.
//
// Thread safety: SloMonitor is thread-safe; Admit, Record, Evaluate, Status and
// Get may be called from any number of threads. Specs and events are values.
#ifndef BASTION_SLO_MONITOR_H_
#define BASTION_SLO_MONITOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/budget.h"
#include "bastion/slo.h"
#include "bastion/status.h"
#include "bastion/time_zone.h"

namespace bastion {

class BreakerStore;  // bastion/fleet_limits.h
class RateLimits;    // bastion/permissions.h

namespace slo_internal {
struct Series;
struct Slo;
class Router;
}  // namespace slo_internal

// --- specs ---

// Latency quantile targets over a trailing window. Every set target must be
// > 0, and set targets must not decrease with the quantile (p50 <= p95 <= p99).
struct LatencyObjective {
  std::optional<int64_t> p50_ns, p95_ns, p99_ns;
  // A call taking longer than this is a failure of class "timeout" for the
  // success objective and the circuit breaker, whatever its outcome said.
  std::optional<int64_t> timeout_ns;
  // Quantiles cover the calls of the last `window_ns` (kept as 12 interval
  // sketches of window_ns / 12, so the oldest interval drops out as a whole:
  // the covered span is between 11/12 and all of the window). >= 12 ns.
  int64_t window_ns = kNsPerHour;
};

// A success-rate objective with burn-rate alerts.
struct SuccessObjective {
  double target = 0.999;  // in (0, 1)
  // kRolling: the trailing `window_ns`, a positive multiple of bucket_ns.
  // kDaily / kWeekly / kMonthly: the events since the current calendar period
  // started (local midnight in the SLO's zone); window_ns is ignored.
  // kPerRun is not allowed.
  Window::Kind window_kind = Window::Kind::kRolling;
  int64_t window_ns = 30 * kNsPerDay;
  int64_t bucket_ns = kNsPerMinute;
  // Failures of these classes are not part of the SLI (see SloOptions).
  std::vector<std::string> excluded_error_classes;
  // Rule names must be unique and may not be one of the `when` keywords. Long
  // windows must fit the SLO window (calendar: 31 days).
  std::vector<BurnRateRule> alerts = DefaultBurnRateRules();
};

// Cost targets in nano-USD (> 0 each; at least one set). Calls without a
// price (SloOutcome::cost_nanousd unset) do not count.
struct CostObjective {
  std::optional<int64_t> max_per_request_nanousd;
  std::optional<int64_t> p95_per_request_nanousd;
  std::optional<int64_t> per_day_nanousd;  // per local calendar day
  // The trailing window of the per-request checks (12 intervals, as latency).
  int64_t window_ns = kNsPerHour;
};

struct BreachAction {
  // Which signals switch the action on (see the top of this file).
  std::string when;
  enum class Kind : unsigned char { kLog, kDowngrade, kDisable, kRateLimit, kEscalate };
  Kind kind = Kind::kLog;
  std::string model;           // kDowngrade only: the model to use instead
  double rate_per_second = 0;  // kRateLimit only: calls admitted per second (> 0);
                               // the burst is max(1, rate_per_second)
};
// "log", "downgrade", "disable", "rate_limit", "escalate".
const char* BreachActionKindName(BreachAction::Kind kind);
// An action in force as status reports show it: its kind name, with the model
// of a downgrade ("downgrade:gpt-4o-mini") or the rate of a rate limit
// ("rate_limit:0.5/s").
std::string BreachActionText(const BreachAction& action);

struct SloSpec {
  std::string id;  // unique, non-empty, no control characters
  // Which calls the SLO covers: all of kind, agents, models and tools must
  // match. kind: "model", "tool" or "*". The others are globs (bastion/glob.h),
  // a call field matching when one pattern of the list does; a lone "*" matches
  // any value, including ones with '/' ("openai/gpt-4o") and empty ones.
  std::string kind = "*";
  std::vector<std::string> agents{"*"};
  std::vector<std::string> models{"*"};
  std::vector<std::string> tools{"*"};
  // Distinct subsets of {"agent", "model", "tool"}: one series per distinct
  // tuple of those call fields, its subject "model=gpt-4o" or
  // "agent=a,model=m" (in group_by order; each value cut to its first 128
  // bytes). Empty: one series, subject "".
  std::vector<std::string> group_by;
  // Calendar windows and per-day cost; null = SloMonitor::Options::zone.
  std::shared_ptr<const TimeZone> zone;
  // At most this many series; calls of further subjects all go to one more
  // series, subject "(other)". 0 = SloMonitor::Options::max_series_per_slo.
  int64_t max_series = 0;

  std::optional<LatencyObjective> latency;
  std::optional<SuccessObjective> success;
  std::optional<CostObjective> cost;
  std::optional<CircuitBreakerOptions> breaker;
  std::vector<BreachAction> on_breach;
};

// OK, or InvalidArgument "slo 'id': field: what" for the first problem, the
// field named as in the struct ("success.alerts[1].short_window_ns",
// "on_breach[0].when"). At least one of latency, success, cost and breaker
// must be set; `when` must select something the spec has (a "latency" action
// needs a latency target, a "page" one a page rule, ...).
Status ValidateSloSpec(const SloSpec& spec);

// Parses the YAML format above; every spec is validated. InvalidArgument
// "source:line:col: slos[i].field: what" for malformed YAML, unknown keys
// (with a "did you mean"), bad values, duplicate ids (naming the first one's
// line), unknown time zones and failed validations (at the offending key's
// line, or its nearest enclosing one written in the file).
Result<std::vector<SloSpec>> ParseSloYaml(std::string_view yaml, const std::string& source_name);
// Reads and parses a file; NotFound / IOError when it cannot be read.
Result<std::vector<SloSpec>> LoadSloYamlFile(const std::string& path);
// The specs in the format above (one SLO per list item, every field written,
// each zone by name), such that ParseSloYaml reads back the same specs.
std::string FormatSloYaml(const std::vector<SloSpec>& specs);

// --- the monitor ---

// A call as the monitor sees it. kind: "model" or "tool". Fields may be empty.
struct SloCall {
  std::string_view kind, agent, model, tool;
};

struct SloOutcome {
  bool success = true;
  std::string_view error_class;  // failures only; "" is a class like any other
  int64_t latency_ns = 0;
  std::optional<int64_t> cost_nanousd;  // unset = unpriced
};

struct Admission {
  bool allowed = true;
  // The series that refused or downgraded the call ("" when neither happened),
  // and why: "slo 'x' [model=gpt-4o]: circuit breaker open until
  // 2024-05-01T12:00:30Z".
  std::string slo_id, subject, reason;
  std::optional<std::string> downgrade_model;
  // Not OK (Unavailable) when the fleet's shared state could not be asked
  // (Options::breakers, Options::rate_limits): the call is refused
  // (allowed false) and the caller should report the error, not a denial.
  Status status;
};

// A signal of one series that started or stopped firing.
struct SloEvent {
  std::string slo_id, subject;
  std::string signal;    // see the top of this file
  bool firing = false;   // true: started; false: cleared
  std::string severity;  // "page" or "ticket"
  // The kinds of the actions this signal selects, comma-separated in on_breach
  // order ("downgrade,escalate"); "" when none.
  std::string action;
  // The measurement: "burn rate 20.0x over 1h, 20.0x over 5m (fires above
  // 14.4x)", "p99 5.31s over the last 1h (target 5.00s, 812 calls)".
  std::string detail;
  int64_t at_ns = 0;     // the evaluation time
};

// Burn rates as the signal judges them: windows ending with the last complete
// bucket.
struct BurnRateStatus {
  std::string rule, severity;
  double threshold = 0;
  int64_t long_window_ns = 0, short_window_ns = 0;
  double long_burn_rate = 0, short_burn_rate = 0;
  bool firing = false;  // at the last evaluation
};

// One series at one instant. Measurements are taken when the status is asked
// for; `firing` and `active_actions` are as of the last evaluation.
struct SeriesStatus {
  std::string slo_id, subject;
  int64_t at_ns = 0;
  uint64_t calls = 0;  // recorded into this series since it was created

  // Latency over latency.window_ns (zeros without a latency objective).
  uint64_t latency_calls = 0;
  double latency_p50_ns = 0, latency_p95_ns = 0, latency_p99_ns = 0;
  std::optional<int64_t> latency_p50_target_ns, latency_p95_target_ns, latency_p99_target_ns;

  // Success over the SLO window (has_success false without the objective).
  bool has_success = false;
  double target = 0;
  uint64_t events = 0, errors = 0;
  double success_rate = 1;  // 1 when there were no events
  // 1 - errors / ((1 - target) * events): 1 untouched, 0 spent, < 0 overspent.
  double error_budget_remaining = 1;
  std::vector<BurnRateStatus> burn_rates;  // one per alert rule, in rule order

  std::vector<std::string> firing;  // signals firing, in the order listed at the top
  std::string breaker_state;        // "closed", "open", "half-open"; "" without a breaker

  // Cost (zeros without a cost objective).
  int64_t cost_today_nanousd = 0;            // since local midnight
  int64_t cost_p95_per_request_nanousd = 0;  // over cost.window_ns
  int64_t cost_max_per_request_nanousd = 0;  // over cost.window_ns
  uint64_t priced_calls = 0;                 // over cost.window_ns

  std::vector<BreachAction> active_actions;  // in on_breach order
};

class SloMonitor {
 public:
  struct Options {
    // UTC wall time in ns since the Unix epoch; null = the system wall clock.
    std::shared_ptr<const Clock> clock;
    // Record evaluates (see Evaluate) when this long has passed since the last
    // evaluation. 0 = never: the caller calls Evaluate. An evaluation costs
    // time in proportion to the number of series, paid by the Record that
    // triggers it; with many series, set 0 and evaluate from a thread of your
    // own.
    int64_t evaluate_every_ns = kNsPerSecond;
    // Called once for every firing event whose signal selects an escalate
    // action, after Evaluate has released its locks (so it may call back into
    // the monitor), on the thread that evaluated. Must be thread-safe when
    // several threads may evaluate.
    std::function<void(const SloEvent&)> on_escalate;
    // Calendar SLO windows and per-day cost of specs without a zone; null = UTC.
    std::shared_ptr<const TimeZone> zone;
    // The default SloSpec::max_series. Memory per series is about
    // 24 bytes x success window / bucket (30d / 1m: 1 MB) plus the latency and
    // cost sketches (typically a few KB each), so choose it with that in mind.
    int64_t max_series_per_slo = 10'000;
    // Distinct call tuples (kind, agent, model, tool) remembered with the
    // series they map to (0 = none). Beyond it, and for tuples over 1 KB, calls
    // are still routed correctly, just by matching globs on every call.
    int64_t max_cached_tuples = 100'000;

    // --- the fleet (bastion/fleet_limits.h); null = this process alone ---
    // Where the rate_limit responses take their tokens: a response of r
    // calls/s is a bucket of max(1, floor(r)) tokens refilled at r/s, keyed
    // "slo\x1f<id>\x1f<subject>", shared by every worker in which the
    // response is active. Null: an in-process bucket per series. A shared
    // token is not given back when a later check refuses the call.
    std::shared_ptr<RateLimits> rate_limits;
    // The breakers and disable responses of series whose SLO has a breaker or
    // a disable action, shared with every worker: a breaker that opens here
    // is published, and Admit honours what the fleet published (within the
    // store's staleness bound), taking half-open probe slots on the store.
    // Admit refuses with Admission::status Unavailable when the store cannot
    // be asked (unless it degrades to local state).
    std::shared_ptr<BreakerStore> breakers;
  };

  // InvalidArgument for an invalid spec (ValidateSloSpec), a duplicate id, or
  // bad options (a negative evaluate_every_ns or max_cached_tuples, a
  // max_series_per_slo below 1). Ungrouped SLOs get
  // their single series at once; grouped ones when a subject first appears.
  static Result<std::unique_ptr<SloMonitor>> Create(std::vector<SloSpec> specs, Options options);
  ~SloMonitor();
  SloMonitor(const SloMonitor&) = delete;
  SloMonitor& operator=(const SloMonitor&) = delete;

  // Before a call. First the model: when a series the call falls under has an
  // active downgrade, the call is to be made with that model instead (the
  // first such series in spec order; downgrades of the downgraded call are not
  // followed). Then the call that will actually be made is judged against every
  // series it falls under: refused when one is disabled, its circuit breaker is
  // open (the reason says until when) or half-open with every probe in flight,
  // or its active rate limit has no token left. A refused call takes nothing
  // (no token, no probe slot). An admitted call may hold a half-open breaker's
  // probe slot until it is Recorded, so record every admitted call.
  Admission Admit(const SloCall& call);

  // Gives back what an admitted call took when it will not be made after all
  // (refused by a later check, or rejected by a human): the half-open probe
  // slots of the series `call` falls under. `call` is the call as admitted
  // (with Admission::downgrade_model applied). Record is not to be called for
  // it.
  void Release(const SloCall& call);

  // After a call: counts it in every matching series (latency, success, cost,
  // breaker). Does not allocate for a call tuple seen before, unless a sketch
  // grows or an evaluation is due: when evaluate_every_ns has passed since the
  // last evaluation, evaluates and returns its events (otherwise none).
  std::vector<SloEvent> Record(const SloCall& call, const SloOutcome& outcome);

  // Judges every series now (see the signals at the top of this file) and
  // returns the transitions since the previous evaluation, ordered by SLO id,
  // subject, then signal (in the order listed at the top of this file); starts
  // and stops the actions they select; calls on_escalate for new firings that
  // select an escalate action. One evaluation runs at a time.
  std::vector<SloEvent> Evaluate();

  // Every series, ordered by SLO id then subject.
  std::vector<SeriesStatus> Status();
  // One series; NotFound "slo 'x' has no series 'model=m'" or "no slo 'x'".
  Result<SeriesStatus> Get(std::string_view slo_id, std::string_view subject = "");

  // The series `call` falls under in SLO `slo_id`, made as Record would make
  // it when new (so a subject never called yet reads as healthy). NotFound for
  // an unknown SLO, or one whose match the call does not fall under.
  Result<SeriesStatus> GetFor(std::string_view slo_id, const SloCall& call);

  // The error budget's burn rate of one series over the trailing window_ns
  // (clamped to [bucket, SLO window]). NotFound as Get / GetFor;
  // FailedPrecondition when the SLO has no success objective.
  Result<double> BurnRate(std::string_view slo_id, std::string_view subject, int64_t window_ns);
  Result<double> BurnRateFor(std::string_view slo_id, const SloCall& call, int64_t window_ns);

  const std::vector<SloSpec>& specs() const { return specs_; }

 private:
  using Series = slo_internal::Series;
  using Slo = slo_internal::Slo;

  SloMonitor(std::vector<SloSpec> specs, Options options);
  // The series `call` falls under, in spec order: a cached list, or (when the
  // cache is full) one built into *scratch.
  const std::vector<Series*>& Route(const SloCall& call, std::vector<Series*>* scratch);
  Series* SeriesFor(Slo& slo, const SloCall& call);
  // Phases of Admit for the call that will actually be made.
  Admission Judge(const std::vector<Series*>& route, int64_t now_ns);
  std::vector<Series*> AllSeriesSorted();
  SeriesStatus StatusOf(Series& series, int64_t now_ns);
  Result<Slo*> FindSlo(std::string_view slo_id);
  Result<Series*> FindSeries(std::string_view slo_id, std::string_view subject);
  Result<Series*> SeriesOfCall(std::string_view slo_id, const SloCall& call);
  Result<double> BurnRateOf(const Series& series, int64_t window_ns);

  const std::vector<SloSpec> specs_;
  const Options options_;
  std::shared_ptr<const Clock> clock_;
  std::vector<std::unique_ptr<Slo>> slos_;  // in spec order
  std::vector<Slo*> slos_by_id_;            // sorted by id
  std::unique_ptr<slo_internal::Router> router_;
  std::mutex evaluate_mu_;                  // one evaluation at a time
  std::atomic<int64_t> next_evaluation_ns_{0};
};

}  // namespace bastion

#endif  // BASTION_SLO_MONITOR_H_
