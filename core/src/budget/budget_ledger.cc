// BudgetLedger: reserve before a call, settle after it.
//
// State, per budget (one mutex each): per key, the spend and outstanding
// reservations of each calendar window that still matters (the current one and
// older ones with reservations not yet settled), or for rolling windows a
// time-ordered list of settled amounts; the outstanding reservations by id;
// lifetime statistics. All of it is plain values, so a Snapshot()/Restore()
// for persistence is a copy of these maps.
#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "bastion/budget.h"
#include "bastion/slo.h"
#include "bastion/cost.h"
#include "budget/budget_match.h"
#include "budget/civil.h"

namespace bastion {

namespace {

std::string FormatLocal(int64_t utc_ns, const TimeZone* zone) {
  const int64_t off_s = zone ? zone->OffsetSecondsAt(utc_ns) : 0;
  const int64_t local_s = FloorDiv(utc_ns, kNanosPerSecond) + off_s;
  const int64_t day = FloorDiv(local_s, 86'400);
  const int64_t sec = local_s - day * 86'400;
  CivilDate d = CivilFromDays(day);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}", d.year, d.month, d.day, sec / 3600,
                     (sec / 60) % 60, sec % 60, zone ? zone->Name() : "UTC");
}

}  // namespace

std::string DescribeWindow(const Window& w, const WindowBounds& b) {
  switch (w.kind) {
    case Window::Kind::kPerRun:
    case Window::Kind::kRolling:
      return w.ToString();
    default:
      return fmt::format("{} [{}, {})", w.ToString(), FormatLocal(b.start_ns, w.zone.get()),
                         FormatLocal(b.end_ns, w.zone.get()));
  }
}

namespace {

// a + b + c <= limit, without overflow.
bool FitsWithin(int64_t a, int64_t b, int64_t c, int64_t limit) {
  return static_cast<__int128>(a) + b + c <= limit;
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}


}  // namespace

struct BudgetLedger::Budget {
  struct WindowState {
    int64_t spent = 0;
    int64_t reserved = 0;
  };
  struct AlertState {
    bool fired = false;
    int64_t last_fired_ns = 0;
    int64_t window_start_ns = 0;
  };
  struct KeyState {
    std::map<int64_t, WindowState> windows;  // calendar / per-run, by start
    std::multimap<int64_t, int64_t> rolling;  // rolling: dated settled amounts
    int64_t rolling_spent = 0;     // sum of `rolling` (after pruning)
    int64_t rolling_reserved = 0;  // outstanding estimates
    std::vector<AlertState> alerts;  // one per spec.thresholds entry
  };
  struct Outstanding {
    std::string key;
    int64_t estimate = 0;
    int64_t reserved_at = 0;
    WindowBounds window;
  };

  explicit Budget(BudgetSpec s) : spec(std::move(s)), admissible(spec.AdmissibleNanousd()) {}

  bool rolling() const { return spec.window.kind == Window::Kind::kRolling; }

  KeyState& Key(const std::string& key) {
    KeyState& k = keys[key];
    if (k.alerts.size() != spec.thresholds.size()) k.alerts.resize(spec.thresholds.size());
    return k;
  }

  // The spend and reservations that count in window `b` at `now`. For
  // calendar windows also forgets older windows with nothing outstanding.
  WindowState Committed(KeyState& k, const WindowBounds& b, int64_t now) {
    if (rolling()) {
      auto end = k.rolling.lower_bound(b.start_ns);
      for (auto it = k.rolling.begin(); it != end; ++it) k.rolling_spent -= it->second;
      k.rolling.erase(k.rolling.begin(), end);
      return {k.rolling_spent, k.rolling_reserved};
    }
    for (auto it = k.windows.begin(); it != k.windows.end();) {
      if (it->first < b.start_ns && it->second.reserved == 0) {
        it = k.windows.erase(it);
      } else {
        ++it;
      }
    }
    return k.windows[b.start_ns];
  }

  std::vector<AlertEvent> EvaluateAlerts(KeyState& k, const std::string& key,
                                         const WindowState& c, const WindowBounds& b,
                                         int64_t now) {
    std::vector<AlertEvent> out;
    const __int128 committed = static_cast<__int128>(c.spent) + c.reserved;
    for (size_t i = 0; i < spec.thresholds.size(); ++i) {
      const AlertThreshold& t = spec.thresholds[i];
      if (committed * 100 < static_cast<__int128>(spec.limit_nanousd) * t.percent) continue;
      AlertState& a = k.alerts[i];
      bool eligible = !a.fired ||
                      (t.cooldown_ns > 0 ? now - a.last_fired_ns >= t.cooldown_ns
                                         : a.window_start_ns != b.start_ns);
      if (!eligible) continue;
      a = {true, now, b.start_ns};
      out.push_back({spec.id, key, t.percent, t.level, t.action,
                     static_cast<int64_t>(committed), spec.limit_nanousd, b, now});
    }
    stats.alerts_fired += static_cast<int64_t>(out.size());
    return out;
  }

  const BudgetSpec spec;
  const int64_t admissible;
  std::mutex mu;
  std::unordered_map<std::string, KeyState> keys;          // GUARDED_BY(mu)
  std::unordered_map<uint64_t, Outstanding> outstanding;   // GUARDED_BY(mu)
  BudgetStats stats;                                       // GUARDED_BY(mu)
  // DescribeWindow of the window `described` (a calendar window's text
  // changes once per window, and budget.remaining reads it on every call).
  WindowBounds described{INT64_MIN, INT64_MIN};            // GUARDED_BY(mu)
  std::string description;                                 // GUARDED_BY(mu)

  // Requires mu.
  const std::string& Describe(const WindowBounds& bounds) {
    if (!(bounds == described)) {
      description = DescribeWindow(spec.window, bounds);
      described = bounds;
    }
    return description;
  }

  // Removes and returns an outstanding reservation; a second settle or
  // release of the same one fails here, so nothing is ever counted twice.
  // Requires mu.
  Result<Outstanding> Take(const Reservation& r) {
    auto it = outstanding.find(r.id);
    if (it == outstanding.end()) {
      return Status::FailedPrecondition(fmt::format(
          "budget '{}': reservation {} is not outstanding (already settled or released)", spec.id,
          r.id));
    }
    Outstanding o = std::move(it->second);
    outstanding.erase(it);
    return o;
  }
};

namespace {

Result<std::string> EffectiveKey(const BudgetSpec& spec, std::string_view key) {
  if (spec.scope.kind == Scope::Kind::kGlobal) return std::string();
  if (spec.scope.key.empty()) return std::string(key);
  if (!key.empty() && key != spec.scope.key) {
    return Status::InvalidArgument(fmt::format("budget '{}' covers only key '{}', not '{}'",
                                               spec.id, spec.scope.key, key));
  }
  return spec.scope.key;
}

}  // namespace

BudgetLedger::BudgetLedger() : BudgetLedger(Clock(WallNowNs)) {}
BudgetLedger::BudgetLedger(Clock clock) : clock_(std::move(clock)) {}
BudgetLedger::~BudgetLedger() = default;

Status BudgetLedger::AddBudget(const BudgetSpec& spec) {
  BASTION_RETURN_IF_ERROR(ValidateBudgetSpec(spec));
  std::unique_lock lock(budgets_mu_);
  if (budgets_.count(spec.id)) {
    return Status::InvalidArgument(fmt::format("budget '{}': id already exists", spec.id));
  }
  budgets_.emplace(spec.id, std::make_unique<Budget>(spec));
  return Status::OK();
}

Result<BudgetLedger::Budget*> BudgetLedger::Find(std::string_view budget_id) {
  std::shared_lock lock(budgets_mu_);
  auto it = budgets_.find(std::string(budget_id));
  if (it == budgets_.end()) {
    return Status::NotFound(fmt::format("budget '{}' does not exist", budget_id));
  }
  return it->second.get();
}

Result<Reservation> BudgetLedger::Reserve(std::string_view budget_id, std::string_view key,
                                          int64_t estimate_nanousd) {
  auto found = Find(budget_id);
  if (!found.ok()) return found.status();
  Budget& b = **found;
  if (estimate_nanousd < 0) {
    return Status::InvalidArgument(
        fmt::format("budget '{}': estimate must be >= $0 (got {})", b.spec.id,
                    FormatUsd(estimate_nanousd)));
  }
  auto k = EffectiveKey(b.spec, key);
  if (!k.ok()) return k.status();

  std::lock_guard lock(b.mu);
  const int64_t now = clock_();
  const WindowBounds bounds = b.spec.window.BoundsAt(now);
  Budget::KeyState& ks = b.Key(*k);
  const Budget::WindowState c = b.Committed(ks, bounds, now);
  if (b.spec.enforcement == BudgetSpec::Enforcement::kHard &&
      !FitsWithin(c.spent, c.reserved, estimate_nanousd, b.admissible)) {
    ++b.stats.refused;
    return Status::FailedPrecondition(fmt::format(
        "budget '{}' key '{}' window {}: estimate {} refused: spent {} + reserved {} + "
        "estimate would exceed admissible {} (limit {}, reserve {}%)",
        b.spec.id, *k, DescribeWindow(b.spec.window, bounds), FormatUsd(estimate_nanousd),
        FormatUsd(c.spent), FormatUsd(c.reserved), FormatUsd(b.admissible),
        FormatUsd(b.spec.limit_nanousd), b.spec.reserve_percent));
  }

  Reservation r;
  r.id = next_id_.fetch_add(1, std::memory_order_relaxed);
  r.budget_id = b.spec.id;
  r.key = *k;
  r.estimate_nanousd = estimate_nanousd;
  r.reserved_at_ns = now;
  r.window = bounds;
  Budget::WindowState after = c;
  if (b.rolling()) {
    ks.rolling_reserved = SaturatingAdd(ks.rolling_reserved, estimate_nanousd);
    after.reserved = ks.rolling_reserved;
  } else {
    Budget::WindowState& w = ks.windows[bounds.start_ns];
    w.reserved = SaturatingAdd(w.reserved, estimate_nanousd);
    after = w;
  }
  b.outstanding.emplace(r.id, Budget::Outstanding{*k, estimate_nanousd, now, bounds});
  ++b.stats.admitted;
  ++b.stats.outstanding;
  b.stats.reserved_nanousd = SaturatingAdd(b.stats.reserved_nanousd, estimate_nanousd);
  r.committed_nanousd = SaturatingAdd(after.spent, after.reserved);
  r.limit_nanousd = b.spec.limit_nanousd;
  r.alerts = b.EvaluateAlerts(ks, *k, after, bounds, now);
  return r;
}

Result<Settlement> BudgetLedger::Settle(const Reservation& reservation, int64_t actual_nanousd) {
  auto found = Find(reservation.budget_id);
  if (!found.ok()) return found.status();
  Budget& b = **found;
  if (actual_nanousd < 0) {
    return Status::InvalidArgument(fmt::format("budget '{}': actual cost must be >= 0 (got {})",
                                               b.spec.id, actual_nanousd));
  }
  std::lock_guard lock(b.mu);
  auto taken = b.Take(reservation);
  if (!taken.ok()) return taken.status();
  const Budget::Outstanding o = std::move(*taken);
  const int64_t now = clock_();
  Budget::KeyState& ks = b.Key(o.key);

  Settlement s;
  s.estimate_nanousd = o.estimate;
  s.actual_nanousd = actual_nanousd;
  s.overshoot_nanousd = actual_nanousd > o.estimate ? actual_nanousd - o.estimate : 0;

  WindowBounds alert_window = o.window;
  Budget::WindowState after;
  if (b.rolling()) {
    ks.rolling_reserved -= o.estimate;
    // Dated at reservation time; an amount already outside the window
    // counts only in the lifetime statistics.
    alert_window = b.spec.window.BoundsAt(now);
    if (o.reserved_at >= alert_window.start_ns) {
      ks.rolling.emplace(o.reserved_at, actual_nanousd);
      ks.rolling_spent = SaturatingAdd(ks.rolling_spent, actual_nanousd);
    }
    after = b.Committed(ks, alert_window, now);
  } else {
    Budget::WindowState& w = ks.windows[o.window.start_ns];
    w.reserved -= o.estimate;
    w.spent = SaturatingAdd(w.spent, actual_nanousd);
    after = w;
  }

  ++b.stats.settled;
  --b.stats.outstanding;
  b.stats.reserved_nanousd -= o.estimate;
  b.stats.spent_nanousd = SaturatingAdd(b.stats.spent_nanousd, actual_nanousd);
  if (s.overshoot_nanousd > 0) {
    ++b.stats.overshoot_count;
    b.stats.overshoot_nanousd = SaturatingAdd(b.stats.overshoot_nanousd, s.overshoot_nanousd);
    b.stats.max_overshoot_nanousd = std::max(b.stats.max_overshoot_nanousd, s.overshoot_nanousd);
  }
  s.alerts = b.EvaluateAlerts(ks, o.key, after, alert_window, now);
  return s;
}

Status BudgetLedger::Release(const Reservation& reservation) {
  auto found = Find(reservation.budget_id);
  if (!found.ok()) return found.status();
  Budget& b = **found;
  std::lock_guard lock(b.mu);
  auto taken = b.Take(reservation);
  if (!taken.ok()) return taken.status();
  const Budget::Outstanding o = std::move(*taken);
  Budget::KeyState& ks = b.Key(o.key);
  if (b.rolling()) {
    ks.rolling_reserved -= o.estimate;
  } else {
    ks.windows[o.window.start_ns].reserved -= o.estimate;
  }
  ++b.stats.released;
  --b.stats.outstanding;
  b.stats.reserved_nanousd -= o.estimate;
  return Status::OK();
}

Result<int64_t> BudgetLedger::Remaining(std::string_view budget_id, std::string_view key) {
  auto usage = Usage(budget_id, key);
  if (!usage.ok()) return usage.status();
  return usage->remaining_nanousd;
}

Result<BudgetLedger::KeyUsage> BudgetLedger::Usage(std::string_view budget_id,
                                                   std::string_view key) {
  auto found = Find(budget_id);
  if (!found.ok()) return found.status();
  Budget& b = **found;
  auto k = EffectiveKey(b.spec, key);
  if (!k.ok()) return k.status();
  std::lock_guard lock(b.mu);
  const int64_t now = clock_();
  KeyUsage u;
  u.key = *k;
  u.window = b.spec.window.BoundsAt(now);
  u.window_description = b.Describe(u.window);
  const Budget::WindowState c = b.Committed(b.Key(*k), u.window, now);
  u.spent_nanousd = c.spent;
  u.reserved_nanousd = c.reserved;
  __int128 left = static_cast<__int128>(b.admissible) - c.spent - c.reserved;
  u.remaining_nanousd = static_cast<int64_t>(left < 0 ? 0 : left);
  return u;
}

Result<std::vector<std::string>> BudgetLedger::Keys(std::string_view budget_id) {
  auto found = Find(budget_id);
  if (!found.ok()) return found.status();
  std::lock_guard lock((*found)->mu);
  std::vector<std::string> keys;
  for (const auto& [key, state] : (*found)->keys) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  return keys;
}

Result<BudgetStats> BudgetLedger::Stats(std::string_view budget_id) {
  auto found = Find(budget_id);
  if (!found.ok()) return found.status();
  std::lock_guard lock((*found)->mu);
  return (*found)->stats;
}

Result<BudgetSnapshot> BudgetLedger::Snapshot(std::string_view budget_id) {
  auto found = Find(budget_id);
  if (!found.ok()) return found.status();
  Budget& b = **found;
  std::lock_guard lock(b.mu);
  BudgetSnapshot snap;
  snap.budget_id = b.spec.id;
  for (const auto& [key, ks] : b.keys) {
    for (const auto& [start, w] : ks.windows) snap.windows.push_back({key, start, w.spent});
    for (const auto& [at, amount] : ks.rolling) snap.rolling.push_back({key, at, amount});
    for (size_t i = 0; i < ks.alerts.size(); ++i) {
      const Budget::AlertState& a = ks.alerts[i];
      if (a.fired) snap.alerts.push_back({key, i, a.last_fired_ns, a.window_start_ns});
    }
  }
  for (const auto& [id, o] : b.outstanding) {
    snap.outstanding.push_back({id, o.key, o.estimate, o.reserved_at, o.window});
  }
  snap.stats = b.stats;
  return snap;
}

Status BudgetLedger::Restore(const BudgetSnapshot& snap) {
  auto found = Find(snap.budget_id);
  if (!found.ok()) return found.status();
  Budget& b = **found;
  auto bad = [&](const std::string& what) {
    return Status::InvalidArgument(fmt::format("budget '{}' snapshot: {}", b.spec.id, what));
  };
  // Built aside and swapped in, so a bad snapshot leaves the budget unchanged.
  std::unordered_map<std::string, Budget::KeyState> keys;
  std::unordered_map<uint64_t, Budget::Outstanding> outstanding;
  auto key_state = [&](const std::string& key) -> Budget::KeyState& {
    Budget::KeyState& k = keys[key];
    k.alerts.resize(b.spec.thresholds.size());
    return k;
  };
  for (const auto& w : snap.windows) {
    if (w.spent_nanousd < 0) return bad(fmt::format("windows: negative spend for '{}'", w.key));
    key_state(w.key).windows[w.start_ns].spent = w.spent_nanousd;
  }
  for (const auto& r : snap.rolling) {
    if (r.amount_nanousd < 0) return bad(fmt::format("rolling: negative amount for '{}'", r.key));
    Budget::KeyState& k = key_state(r.key);
    k.rolling.emplace(r.at_ns, r.amount_nanousd);
    k.rolling_spent = SaturatingAdd(k.rolling_spent, r.amount_nanousd);
  }
  for (const auto& a : snap.alerts) {
    if (a.threshold_index >= b.spec.thresholds.size()) {
      return bad(fmt::format("alerts: threshold index {} but the spec has {} thresholds",
                             a.threshold_index, b.spec.thresholds.size()));
    }
    key_state(a.key).alerts[a.threshold_index] = {true, a.last_fired_ns, a.window_start_ns};
  }
  uint64_t max_id = 0;
  for (const auto& o : snap.outstanding) {
    if (o.estimate_nanousd < 0) return bad(fmt::format("reservation {}: negative estimate", o.id));
    if (!outstanding.emplace(o.id, Budget::Outstanding{o.key, o.estimate_nanousd,
                                                        o.reserved_at_ns, o.window})
             .second) {
      return bad(fmt::format("reservation {} appears twice", o.id));
    }
    Budget::KeyState& k = key_state(o.key);
    if (b.rolling()) {
      k.rolling_reserved = SaturatingAdd(k.rolling_reserved, o.estimate_nanousd);
    } else {
      Budget::WindowState& w = k.windows[o.window.start_ns];
      w.reserved = SaturatingAdd(w.reserved, o.estimate_nanousd);
    }
    max_id = std::max(max_id, o.id);
  }
  uint64_t next = next_id_.load();
  while (next <= max_id && !next_id_.compare_exchange_weak(next, max_id + 1)) {
  }
  std::lock_guard lock(b.mu);
  b.keys = std::move(keys);
  b.outstanding = std::move(outstanding);
  b.stats = snap.stats;
  return Status::OK();
}

}  // namespace bastion
