// SLOs: latency quantiles, error budgets, burn-rate alerts and a circuit
// breaker, all driven by an explicit "now" so tests control time.
//
//   bastion::SystemClock clock;                  // or ManualClock in tests
//
//   // Latency: p99 within 1% relative error, in bounded memory.
//   bastion::LatencySketch latency;              // a = 0.01, 2048 buckets
//   latency.Add(elapsed_ns);
//   double p99_ns = latency.Quantile(0.99);
//
//   // Availability: 99.9% over 30 days, 1-minute buckets.
//   bastion::SloOptions slo;                     // those are the defaults
//   slo.excluded_error_classes = {"client_cancelled"};
//   auto budget = bastion::ErrorBudget::Create(slo);
//   if (!budget.ok()) return budget.status();    // names the bad field
//   (*budget)->Record(ok, ok ? "" : "timeout", clock.NowNs());
//   double left = (*budget)->BudgetRemaining(clock.NowNs());   // 1.0 = untouched
//
//   // Alerts: the SRE workbook's multi-window multi-burn-rate rules.
//   auto alerter = bastion::BurnRateAlerter::Create(budget->get(),
//                                                   bastion::DefaultBurnRateRules());
//   for (const auto& a : alerter->Evaluate(clock.NowNs())) page_or_ticket(a);
//
//   // Protecting a dependency.
//   auto breaker = bastion::CircuitBreaker::Create({});
//   if ((*breaker)->Allow(clock.NowNs())) {
//     bool ok = call();
//     (*breaker)->Record(ok, call_ns, clock.NowNs());
//   } else { fail_fast(); }
//
// Time. Every timestamp is int64 nanoseconds from an arbitrary epoch that must
// be the same for all calls on one object (SystemClock uses a monotonic clock;
// wall time jumps must not move SLO windows). Nothing here reads a clock by
// itself: callers pass `now_ns`, typically from an injected Clock.
//
// Configuration structs (SloOptions, BurnRateRule, SketchOptions,
// CircuitBreakerOptions) carry a default on every field and a Validate() that
// returns InvalidArgument naming the field; the Create factories call it.
#ifndef BASTION_SLO_H_
#define BASTION_SLO_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/clock.h"
#include "bastion/status.h"

namespace bastion {

// --- time: Clock, WallClock, SystemClock, ManualClock (bastion/clock.h) ---

// --- latency quantiles ---

struct SketchOptions {
  // Relative accuracy a, in (0, 1): a quantile is reported within a factor
  // (1 ± a) of the true value. Buckets are log-spaced by gamma = (1+a)/(1-a).
  double relative_accuracy = 0.01;
  // The most buckets kept, in [1, 1'000'000]: memory is about 8 bytes each.
  // With a = 0.01 one bucket spans 2%, so 2048 buckets cover a ratio of
  // max/min of about 6e17 (1 ns to 19 years): collapsing never happens for
  // real latencies unless max_buckets is lowered.
  int32_t max_buckets = 2048;

  Status Validate() const;
};

// A DDSketch-style quantile sketch (Masson et al., VLDB 2019) for durations in
// nanoseconds. Add is O(1) amortized; Quantile is O(buckets).
//
// Accuracy contract: for any q, Quantile(q) is within relative error a of the
// exact lower quantile x[floor(q * (Count() - 1))] of the values added
// (sorted ascending), provided that value lies in the uncollapsed range.
//
// Bounded memory: when the values span more than max_buckets buckets, the
// LOWEST buckets are collapsed into the lowest kept one (collapsed() becomes
// true). Quantiles landing in the collapsed range are then over-estimated (they
// report the lowest kept bucket's value, at most Max()); quantiles above it keep
// the full accuracy. For latency SLOs the tail is what matters, so the head is
// what gets sacrificed.
//
// Values <= 0 count as 0 (a zero bucket, reported exactly); NaN and infinities
// are ignored. Min() and Max() are exact. Not thread-safe: a sketch is a value;
// share it behind a mutex or keep one per thread and Merge.
class LatencySketch {
 public:
  LatencySketch();  // default SketchOptions
  static Result<LatencySketch> Create(const SketchOptions& options);

  void Add(double value_ns);
  // Adds `other` into this sketch, as if every value added to `other` had been
  // added here. InvalidArgument (and no change) unless both have the same
  // relative_accuracy; the result keeps this sketch's max_buckets.
  Status Merge(const LatencySketch& other);

  // q is clamped to [0, 1]; an empty sketch returns 0. The result is clamped to
  // [Min(), Max()], which only brings it closer to the truth.
  double Quantile(double q) const;
  uint64_t Count() const { return count_; }
  double Min() const { return count_ ? min_ : 0; }  // 0 when empty
  double Max() const { return count_ ? max_ : 0; }  // 0 when empty

  // Buckets in use (<= max_buckets) and whether any were collapsed.
  int32_t NumBuckets() const { return static_cast<int32_t>(counts_.size()); }
  bool collapsed() const { return collapsed_; }
  const SketchOptions& options() const { return options_; }

 private:
  explicit LatencySketch(const SketchOptions& options);
  int32_t IndexOf(double v) const;
  double ValueOf(int32_t index) const;
  void AddToIndex(int32_t index, uint64_t n);

  SketchOptions options_;
  double gamma_;
  double log_gamma_;
  std::vector<uint64_t> counts_;  // counts_[i] is bucket index offset_ + i
  int32_t offset_ = 0;
  uint64_t zero_count_ = 0;
  uint64_t count_ = 0;
  double min_ = 0;
  double max_ = 0;
  bool collapsed_ = false;
};

// --- error budgets ---

struct SloOptions {
  // The success-rate objective, in (0, 1): 0.999 allows 0.1% of events to fail.
  double target = 0.999;
  // The rolling SLO window; a positive multiple of bucket_ns.
  int64_t window_ns = 30 * kNsPerDay;
  // Time resolution: events are counted per bucket, windows are whole buckets.
  // window_ns / bucket_ns buckets are kept (24 bytes each), at most 10'000'000.
  int64_t bucket_ns = kNsPerMinute;
  // Failures with these classes are not part of the SLI at all: they count
  // neither as events nor as errors (e.g. "client_cancelled", "bad_request"),
  // only in Totals::excluded. No class may be empty.
  std::vector<std::string> excluded_error_classes;

  Status Validate() const;
};

// Event counts over a trailing window.
struct Totals {
  uint64_t events = 0;    // counted events (successes + errors)
  uint64_t errors = 0;
  uint64_t excluded = 0;  // failures with an excluded class (not in events)
  // errors / events, 0 when there were no events.
  double ErrorRate() const { return events ? static_cast<double>(errors) / events : 0.0; }
};

// A success-rate SLO over a rolling window, kept as a ring buffer of
// fixed-size time buckets: Record is O(1), a query over w is O(w / bucket_ns).
//
// Windows. The bucket holding t is floor(t / bucket_ns). A trailing window of
// length w at `now` is the bucket holding `now` plus the ceil(w / bucket_ns) - 1
// before it (w is clamped to [bucket_ns, window_ns]); so it includes the
// current, partly elapsed bucket, and the window edge moves in bucket steps.
//
// Late events: an event for a bucket older than the newest one recorded is
// still counted while its bucket is within the ring; older ones are dropped.
//
// Thread-safe: every method takes an internal mutex.
class ErrorBudget {
 public:
  static Result<std::unique_ptr<ErrorBudget>> Create(const SloOptions& options);

  // One event. error_class is ignored when success is true.
  void Record(bool success, std::string_view error_class, int64_t now_ns);
  // `successes` successful and `errors` failed events of one class at once.
  void RecordMany(uint64_t successes, uint64_t errors, std::string_view error_class,
                  int64_t now_ns);

  // Counts over the trailing window of length w_ns (see "Windows").
  Totals Window(int64_t w_ns, int64_t now_ns) const;
  // Window(w).ErrorRate() / (1 - target): 1.0 spends the budget exactly over
  // the SLO window, 14.4 spends a 30-day budget in ~2 days.
  double BurnRate(int64_t w_ns, int64_t now_ns) const;
  // Over the whole SLO window: 1 - errors / ((1 - target) * events). 1.0 when
  // nothing failed (or nothing happened), 0 when exactly spent, negative when
  // overspent (-1.0 = twice the allowed errors).
  double BudgetRemaining(int64_t now_ns) const;

  const SloOptions& options() const { return options_; }

 private:
  struct Bucket {
    int64_t index = INT64_MIN;  // which time bucket this slot holds
    uint64_t events = 0;
    uint64_t errors = 0;
    uint64_t excluded = 0;
  };
  explicit ErrorBudget(const SloOptions& options);
  int64_t BucketIndex(int64_t now_ns) const;
  Totals WindowLocked(int64_t w_ns, int64_t now_ns) const;

  const SloOptions options_;
  const std::set<std::string, std::less<>> excluded_;
  mutable std::mutex mu_;
  std::vector<Bucket> ring_;  // guarded by mu_
};

// --- burn-rate alerts ---

enum class AlertSeverity : unsigned char { kPage, kTicket };
const char* AlertSeverityName(AlertSeverity s);  // "page", "ticket"

// Fires when the burn rate over BOTH windows is strictly above burn_rate. The
// long window says the problem is big enough to matter; the short one says it
// is still happening, so the alert clears soon after the errors stop.
struct BurnRateRule {
  std::string name;               // non-empty, e.g. "page-1h"
  int64_t long_window_ns = kNsPerHour;      // <= the SLO window
  int64_t short_window_ns = 5 * kNsPerMinute;  // in [bucket, long_window)
  double burn_rate = 14.4;        // > 0
  AlertSeverity severity = AlertSeverity::kPage;

  // `slo` gives the bounds on the windows.
  Status Validate(const SloOptions& slo) const;
};

// The SRE workbook's rules for a 30-day SLO (chapter 5, "Multiwindow,
// multi-burn-rate alerts"): 14.4x over 1h and 5m (page; 2% of the budget in an
// hour), 6x over 6h and 30m (page; 5% in 6 hours), 3x over 1d and 2h (ticket;
// 10% in a day), 1x over 3d and 6h (ticket).
std::vector<BurnRateRule> DefaultBurnRateRules();

struct FiringAlert {
  size_t rule_index = 0;  // into the rules given to Create
  std::string name;
  AlertSeverity severity = AlertSeverity::kPage;
  double long_burn_rate = 0;
  double short_burn_rate = 0;
};

// Evaluates rules against one ErrorBudget, which must outlive the alerter.
// Stateless: an alert fires exactly while both windows are above the
// threshold, so it clears at the first evaluation where either is not.
// Thread-safe (reads the budget under its mutex).
class BurnRateAlerter {
 public:
  // InvalidArgument naming "rules[i].field" when a rule is invalid for the
  // budget's SloOptions, or when budget is null.
  static Result<BurnRateAlerter> Create(const ErrorBudget* budget,
                                        std::vector<BurnRateRule> rules);

  // The rules firing at now_ns, in rule order.
  std::vector<FiringAlert> Evaluate(int64_t now_ns) const;
  const std::vector<BurnRateRule>& rules() const { return rules_; }

 private:
  BurnRateAlerter(const ErrorBudget* budget, std::vector<BurnRateRule> rules)
      : budget_(budget), rules_(std::move(rules)) {}
  const ErrorBudget* budget_;
  std::vector<BurnRateRule> rules_;
};

// --- circuit breaker ---

struct CircuitBreakerOptions {
  // Open when at least this % of the calls in the window failed, in (0, 100].
  double failure_rate_threshold_pct = 50;
  // A call taking at least this long is slow; > 0.
  int64_t slow_call_duration_ns = 5 * kNsPerSecond;
  // Open when at least this % of the calls in the window were slow, in (0, 100].
  double slow_call_rate_threshold_pct = 100;
  // Rates are not judged before this many calls are in the window;
  // in [1, window_size].
  int32_t minimum_calls = 20;
  // The sliding window: the last window_size calls; in [1, 1'000'000].
  int32_t window_size = 100;
  // How long to stay open before letting probes through; > 0.
  int64_t open_duration_ns = 30 * kNsPerSecond;
  // Calls let through while half-open; >= 1.
  int32_t half_open_probes = 5;

  Status Validate() const;
};

// closed -> open      when, with >= minimum_calls in the window, the failure
//                     rate or the slow-call rate reaches its threshold.
// open -> half-open   at the first Allow/state query >= open_duration later.
// half-open -> open   at the first failed probe, or when all probes are in and
//                     the slow rate among them reaches its threshold.
// half-open -> closed when all half_open_probes probes are in without that.
// Entering closed or open empties the window.
//
// Allow is true when closed, false when open, and in half-open true for the
// first half_open_probes calls only. A Record arriving while open (a call let
// through before it opened) is ignored; one arriving in half-open counts as a
// probe result. Thread-safe: one internal mutex, held for O(1) work per call.
class CircuitBreaker {
 public:
  enum class State : unsigned char { kClosed, kOpen, kHalfOpen };
  static const char* StateName(State s);  // "closed", "open", "half-open"

  static Result<std::unique_ptr<CircuitBreaker>> Create(const CircuitBreakerOptions& options);

  bool Allow(int64_t now_ns);
  void Record(bool success, int64_t duration_ns, int64_t now_ns);
  // Gives back a call that Allow admitted but that will not be made after all
  // (so it will never be Recorded): in half-open its probe slot is freed, so a
  // call refused elsewhere cannot leave the breaker waiting for a result that
  // never comes. In other states there is nothing to give back.
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kHalfOpen && probes_allowed_ > probes_done_) --probes_allowed_;
  }
  // The state at now_ns (applies the open -> half-open timeout).
  State state(int64_t now_ns);
  // Back to closed with an empty window: once a fleet's shared state owns an
  // open breaker (bastion/fleet_limits.h), this worker's starts counting anew.
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    ToClosedLocked();
  }

 private:
  explicit CircuitBreaker(const CircuitBreakerOptions& options);
  void MaybeHalfOpenLocked(int64_t now_ns);
  void ToClosedLocked();
  void ToOpenLocked(int64_t now_ns);

  const CircuitBreakerOptions options_;
  std::mutex mu_;
  // All below guarded by mu_.
  State state_ = State::kClosed;
  int64_t opened_at_ns_ = 0;
  // The closed-state window: a ring of the last window_size calls.
  std::vector<unsigned char> calls_;  // bit 0: failed, bit 1: slow
  int32_t next_ = 0;
  int32_t filled_ = 0;
  int32_t failures_ = 0;
  int32_t slow_ = 0;
  // Half-open bookkeeping.
  int32_t probes_allowed_ = 0;
  int32_t probes_done_ = 0;
  int32_t probes_slow_ = 0;
};

}  // namespace bastion

#endif  // BASTION_SLO_H_
