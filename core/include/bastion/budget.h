// Budgets: spend limits that hold under concurrency.
//
// A proxy that checks "spent < limit" before a model call and adds the cost
// after it overshoots as soon as calls overlap: N calls all see the same
// remaining money. Bastion instead RESERVES an estimate before the call and
// SETTLES the actual cost after it, so the admitted reservations can never add
// up to more than what remains.
//
//   bastion::BudgetSpec spec;
//   spec.id = "support-daily";
//   spec.scope = {bastion::Scope::Kind::kUser, ""};      // one counter per user
//   spec.limit_nanousd = 5'000'000'000;                   // $5
//   spec.window = bastion::Window::Daily(bastion::FixedOffset::Hours(9));  // +09:00
//   spec.reserve_percent = 10;                            // admit up to $4.50
//   spec.thresholds = {{80, bastion::AlertLevel::kWarning, bastion::AlertAction::kNotify, 0}};
//
//   bastion::BudgetLedger ledger;                         // system clock
//   if (auto s = ledger.AddBudget(spec); !s.ok()) report(s);   // names the field
//
//   auto r = ledger.Reserve("support-daily", "alice", estimate_nanousd);
//   if (!r.ok()) return r.status();     // FailedPrecondition: over budget
//   for (auto& a : r->alerts) emit(a);
//   bool call_ok = CallModel(...);
//   if (call_ok) {
//     auto s = ledger.Settle(*r, actual_nanousd);   // s->overshoot_nanousd
//   } else {
//     ledger.Release(*r);                           // the money comes back
//   }
//
// Money is int64 nano-USD (see cost.h); no floating point anywhere. Times are
// int64 nanoseconds since the Unix epoch, UTC.
//
// Thread safety: BudgetLedger is thread-safe; every method may be called from
// any number of threads. Each budget has its own mutex, so budgets never
// contend with each other. Specs, windows and time zones are immutable values.
#ifndef BASTION_BUDGET_H_
#define BASTION_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bastion/status.h"
#include "bastion/time_zone.h"

namespace bastion {

// --- time zones ---

// TimeZone, FixedOffset and TimeZone::Load live in bastion/time_zone.h.
// Calendar windows (daily, weekly, monthly) start at local midnight of their
// zone. Zones may be fixed offsets or IANA zones with daylight-saving time
// ("America/New_York"), so a local day may last 23 or 25 hours (or be skipped
// entirely); see Window for where such a day starts.

// --- windows ---

// [start_ns, end_ns): the span of time whose spend counts against the limit.
struct WindowBounds {
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  bool operator==(const WindowBounds&) const = default;
};

// When a budget's spend resets.
//   kPerRun   never: the budget covers one run (or the budget's whole life).
//   kRolling  sliding: spend of the last `duration_ns` counts.
//   kDaily    at local midnight.
//   kWeekly   at local midnight starting Monday (ISO weeks).
//   kMonthly  at local midnight of the 1st.
// Calendar windows use `zone` (null means UTC). A window starts at the first
// instant at which the zone's clock reads its first day's midnight or later
// (TimeZone::FirstInstantAtOrAfterLocal): if clocks are turned back so that
// midnight shows twice, the earlier one; if a transition skips midnight, the
// transition instant. A window ends where the next one starts, so a daily
// window with a spring-forward lasts 23 hours and one with a fall-back 25,
// and a local day that never shows on the clock has no window.
struct Window {
  enum class Kind : unsigned char { kPerRun, kRolling, kDaily, kWeekly, kMonthly };
  Kind kind = Kind::kPerRun;
  int64_t duration_ns = 0;  // kRolling only; must be > 0 there and 0 elsewhere
  std::shared_ptr<const TimeZone> zone;  // calendar kinds only; null = UTC

  static Window PerRun() { return {}; }
  static Window Rolling(int64_t duration_ns) { return {Kind::kRolling, duration_ns, nullptr}; }
  static Window Daily(std::shared_ptr<const TimeZone> zone = nullptr) {
    return {Kind::kDaily, 0, std::move(zone)};
  }
  static Window Weekly(std::shared_ptr<const TimeZone> zone = nullptr) {
    return {Kind::kWeekly, 0, std::move(zone)};
  }
  static Window Monthly(std::shared_ptr<const TimeZone> zone = nullptr) {
    return {Kind::kMonthly, 0, std::move(zone)};
  }

  // The window containing `now_ns`: start_ns <= now_ns < end_ns (for calendar
  // windows, bounds that would leave the int64 range are clamped to it).
  // Allocation-free. kPerRun: [INT64_MIN, INT64_MAX).
  // kRolling: (now - duration, now], reported as [now - duration + 1, now + 1).
  WindowBounds BoundsAt(int64_t now_ns) const;
  // "per-run", "rolling 3600s", "daily +09:00", "weekly UTC", "monthly -05:00",
  // "daily America/New_York".
  std::string ToString() const;
};

// --- specs ---

// Whose spend a budget counts. `key` empty: one counter per distinct key the
// caller passes to Reserve (e.g. per user). `key` set: the budget covers that
// one subject only (Reserve's key must be empty or equal). kGlobal has no key.
struct Scope {
  enum class Kind : unsigned char { kRun, kAgent, kUser, kTenant, kTag, kGlobal };
  Kind kind = Kind::kGlobal;
  std::string key;
};

enum class AlertLevel : unsigned char { kInfo, kWarning, kCritical };
enum class AlertAction : unsigned char { kLog, kNotify, kThrottle, kDowngrade, kHalt };
const char* AlertLevelName(AlertLevel level);
const char* AlertActionName(AlertAction action);

// An alert when committed spend (spent + reserved in the window) reaches
// `percent` of limit_nanousd (the full limit, not the admissible one).
//
// Firing rule: a threshold fires on a Reserve or Settle that leaves committed
// spend at or above it, provided
//   - cooldown_ns == 0: it has not fired yet in this window (once per window);
//   - cooldown_ns > 0: it has not fired in the last cooldown_ns (so at most once
//     per cooldown, repeating while spend stays above it, across windows too).
// Rolling windows have no "this window", so they require cooldown_ns > 0.
// The ledger only reports alerts; acting on `action` is the caller's job.
struct AlertThreshold {
  int percent = 0;  // 1..1000 (above 100 is useful for soft limits)
  AlertLevel level = AlertLevel::kWarning;
  AlertAction action = AlertAction::kLog;
  int64_t cooldown_ns = 0;
};

struct BudgetSpec {
  // Unique within a ledger; non-empty.
  std::string id;
  Scope scope;
  // > 0.
  int64_t limit_nanousd = 0;
  Window window;
  // 0..100: headroom kept back. Reserve admits only up to
  // floor(limit * (100 - reserve_percent) / 100), the "admissible limit".
  int reserve_percent = 0;
  // kHard: Reserve refuses past the admissible limit. kSoft: Reserve always
  // admits; the budget only tracks spend and raises alerts.
  enum class Enforcement : unsigned char { kHard, kSoft };
  Enforcement enforcement = Enforcement::kHard;
  std::vector<AlertThreshold> thresholds;

  // The admissible limit (see reserve_percent).
  int64_t AdmissibleNanousd() const;
};

// InvalidArgument naming the budget and the field ("budget 'b':
// thresholds[1].percent must be in 1..1000 (got 0)") for the first problem.
Status ValidateBudgetSpec(const BudgetSpec& spec);

// --- the ledger ---

struct AlertEvent {
  std::string budget_id;
  std::string key;
  int percent = 0;
  AlertLevel level = AlertLevel::kWarning;
  AlertAction action = AlertAction::kLog;
  int64_t committed_nanousd = 0;  // spent + reserved when it fired
  int64_t limit_nanousd = 0;
  WindowBounds window;
  int64_t at_ns = 0;
};

// A handle to admitted money. Copyable plain data; the ledger keeps the
// authoritative state, so settling or releasing a copy twice is still caught.
struct Reservation {
  uint64_t id = 0;  // unique within the ledger, never 0 for a real reservation
  std::string budget_id;
  std::string key;  // the effective key (the scope's key when it pins one)
  int64_t estimate_nanousd = 0;
  int64_t reserved_at_ns = 0;
  WindowBounds window;  // the window this reservation counts (and settles) in
  // Spent + reserved in that window for the key right after admitting this
  // reservation, and the budget's full limit: what in-force responses (e.g. a
  // downgrade above 90%) are judged on.
  int64_t committed_nanousd = 0;
  int64_t limit_nanousd = 0;
  std::vector<AlertEvent> alerts;  // fired by this Reserve
};

struct Settlement {
  int64_t estimate_nanousd = 0;
  int64_t actual_nanousd = 0;
  // actual - estimate when positive, else 0.
  int64_t overshoot_nanousd = 0;
  std::vector<AlertEvent> alerts;  // fired by this Settle
};

// Lifetime counters of one budget (all keys, all windows).
struct BudgetStats {
  int64_t admitted = 0;  // Reserve calls that succeeded
  int64_t refused = 0;   // Reserve calls refused for lack of money
  int64_t settled = 0;
  int64_t released = 0;
  int64_t outstanding = 0;  // reservations neither settled nor released
  int64_t reserved_nanousd = 0;  // sum of outstanding estimates
  int64_t spent_nanousd = 0;     // sum of settled actual costs
  int64_t overshoot_count = 0;   // settlements whose actual exceeded the estimate
  int64_t overshoot_nanousd = 0;  // sum of those overshoots
  int64_t max_overshoot_nanousd = 0;
  int64_t alerts_fired = 0;
};

// The whole state of one budget as plain values, for persistence (a store can
// serialize it however it likes; nothing here depends on RocksDB). Reserved
// totals are not stored: they are recomputed from `outstanding` on Restore.
struct BudgetSnapshot {
  struct WindowSpend {  // calendar and per-run windows
    std::string key;
    int64_t start_ns = 0;
    int64_t spent_nanousd = 0;
  };
  struct RollingSpend {  // rolling windows: one settled amount, dated
    std::string key;
    int64_t at_ns = 0;
    int64_t amount_nanousd = 0;
  };
  struct AlertMark {  // when a threshold last fired for a key
    std::string key;
    size_t threshold_index = 0;
    int64_t last_fired_ns = 0;
    int64_t window_start_ns = 0;
  };
  struct OutstandingReservation {
    uint64_t id = 0;
    std::string key;
    int64_t estimate_nanousd = 0;
    int64_t reserved_at_ns = 0;
    WindowBounds window;
  };
  std::string budget_id;
  std::vector<WindowSpend> windows;
  std::vector<RollingSpend> rolling;
  std::vector<AlertMark> alerts;
  std::vector<OutstandingReservation> outstanding;
  BudgetStats stats;
};

class BudgetLedger {
 public:
  // Returns "now" in UTC nanoseconds since the epoch. Tests inject a fake.
  using Clock = std::function<int64_t()>;

  // Uses the system clock.
  BudgetLedger();
  explicit BudgetLedger(Clock clock);
  ~BudgetLedger();
  BudgetLedger(const BudgetLedger&) = delete;
  BudgetLedger& operator=(const BudgetLedger&) = delete;

  // Registers a budget. InvalidArgument from ValidateBudgetSpec, or when a
  // budget with that id already exists.
  Status AddBudget(const BudgetSpec& spec);

  // Admits `estimate_nanousd` (>= 0) against the budget's current window for
  // `key` iff spent + reserved + estimate <= admissible limit (hard budgets;
  // soft budgets always admit). Errors:
  //   NotFound            no such budget;
  //   InvalidArgument     negative estimate; a key that contradicts a scope
  //                       that pins one;
  //   FailedPrecondition  over budget; the message names the budget, key,
  //                       window, spent, reserved, estimate and limits.
  // A refused Reserve changes nothing but the `refused` counter.
  Result<Reservation> Reserve(std::string_view budget_id, std::string_view key,
                              int64_t estimate_nanousd);

  // Turns the reservation into spend of `actual_nanousd` (>= 0; it may exceed
  // the estimate, and the overshoot is reported and counted). The spend goes
  // to the window the reservation was made in, even if that window has since
  // ended: the current window is never charged for an older reservation, so
  // its cap holds; the old window's total may then exceed its cap by the
  // overshoot, which is what the overshoot statistics are for. For rolling
  // windows the spend is dated at reservation time.
  // FailedPrecondition when the reservation was already settled or released
  // (nothing is counted twice); NotFound for an unknown budget.
  Result<Settlement> Settle(const Reservation& reservation, int64_t actual_nanousd);

  // Gives the reserved money back (the call failed or was not made). Same
  // errors as Settle.
  Status Release(const Reservation& reservation);

  // Admissible limit - spent - reserved in the current window for `key`,
  // never below 0. NotFound / InvalidArgument as Reserve.
  Result<int64_t> Remaining(std::string_view budget_id, std::string_view key);

  // One key of a budget in its current window.
  struct KeyUsage {
    std::string key;  // the effective key
    WindowBounds window;
    std::string window_description;  // "daily +09:00 [2026-11-21T00:00:00+09:00, ...)"
    int64_t spent_nanousd = 0;
    int64_t reserved_nanousd = 0;
    int64_t remaining_nanousd = 0;  // as Remaining()
  };
  // NotFound / InvalidArgument as Reserve.
  Result<KeyUsage> Usage(std::string_view budget_id, std::string_view key);
  // The keys the budget holds state for, sorted. NotFound for an unknown budget.
  Result<std::vector<std::string>> Keys(std::string_view budget_id);

  // NotFound for an unknown budget.
  Result<BudgetStats> Stats(std::string_view budget_id);

  // A consistent copy of one budget's state (taken under its lock).
  // NotFound for an unknown budget.
  Result<BudgetSnapshot> Snapshot(std::string_view budget_id);

  // Replaces the state of budget `snapshot.budget_id`, which must already be
  // registered (AddBudget with the same spec). Reservations in the snapshot
  // keep their ids and can be settled or released as before; new ids are
  // issued above them. NotFound for an unknown budget; InvalidArgument (state
  // unchanged) for a threshold index the spec does not have, a negative
  // amount, or a duplicate reservation id.
  Status Restore(const BudgetSnapshot& snapshot);

 private:
  struct Budget;
  Result<Budget*> Find(std::string_view budget_id);

  Clock clock_;
  std::atomic<uint64_t> next_id_{1};
  std::shared_mutex budgets_mu_;
  // Budgets are never removed, so a Budget* stays valid for the ledger's life.
  std::unordered_map<std::string, std::unique_ptr<Budget>> budgets_;  // GUARDED_BY(budgets_mu_)
};

}  // namespace bastion

#endif  // BASTION_BUDGET_H_
