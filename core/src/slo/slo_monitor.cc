// SloMonitor: call outcomes -> per-series SLO state -> signals -> responses.
// See bastion/slo_monitor.h for the contract.
//
// Layout. Each spec becomes an Slo (its compiled matchers, signal definitions
// and its series by subject). A call tuple (kind, agent, model, tool) is routed
// to its series once, by glob matching, and the route is cached in a sharded
// hash map keyed by the tuple, so Record's steady state is one hash, one
// shared lock, and per series one mutex plus the budget's and breaker's own.
// Cached routes are never erased (the cache stops growing at its cap instead),
// so a route pointer stays valid without holding the cache lock.
#include "bastion/slo_monitor.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <shared_mutex>
#include <tuple>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "bastion/fleet_limits.h"
#include "bastion/glob.h"
#include "bastion/money.h"
#include "budget/civil.h"
#include "util/yaml_reader.h"

namespace bastion {
namespace slo_internal {
namespace {

constexpr int kRingSlots = 12;
constexpr std::string_view kOtherSubject = "(other)";
// Subjects quote at most this much of each call field, so a caller with huge
// names cannot make subjects (or reasons) huge.
constexpr size_t kMaxSubjectValue = 128;
// Tuples longer than this are routed without being cached.
constexpr size_t kMaxCachedTupleBytes = 1024;

int64_t Mod(int64_t a, int64_t n) { return ((a % n) + n) % n; }

std::string_view Clip(std::string_view s) {
  if (s.size() <= kMaxSubjectValue) return s;
  size_t cut = kMaxSubjectValue;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

// "2024-05-01T12:00:30Z", with milliseconds when there are any.
std::string FormatTime(int64_t ns) {
  const int64_t day = FloorDiv(ns, kNanosPerDay);
  const int64_t in_day = ns - day * kNanosPerDay;
  const CivilDate d = CivilFromDays(day);
  const int64_t s = in_day / kNanosPerSecond;
  const int64_t ms = in_day % kNanosPerSecond / 1'000'000;
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", d.year, d.month, d.day,
                                s / 3600, s / 60 % 60, s % 60);
  if (ms != 0) out += fmt::format(".{:03}", ms);
  return out + "Z";
}

std::string FormatSpan(int64_t ns) { return yaml::FormatDuration(ns); }

// A measured duration: "5.31s", "812.0ms", "40.2us", "12ns".
std::string FormatLatency(double ns) {
  if (ns >= 1e9) return fmt::format("{:.2f}s", ns / 1e9);
  if (ns >= 1e6) return fmt::format("{:.1f}ms", ns / 1e6);
  if (ns >= 1e3) return fmt::format("{:.1f}us", ns / 1e3);
  return fmt::format("{:.0f}ns", ns);
}

// A cost sketch's value (nano-USD as a double) as an amount, through the one
// double -> nano-USD conversion. Sketch values are finite and far inside the
// range; an impossible one saturates rather than failing a status read.
NanoUsd SketchedNanoUsd(double nanousd) {
  const Result<NanoUsd> v = NanoUsdFromDouble(nanousd / static_cast<double>(kNanoUsdPerUsd));
  return v.ok() ? *v : std::numeric_limits<NanoUsd>::max();
}

std::string FormatRate(double per_second) { return fmt::format("{:g}/s", per_second); }

bool AnyMatch(const std::vector<std::string>& patterns, std::string_view value) {
  for (const std::string& p : patterns) {
    if (p == "*" || GlobMatch(p, value)) return true;
  }
  return false;
}

// The history a calendar window needs: its longest period plus DST slack.
int64_t CalendarSpanNs(Window::Kind kind) {
  switch (kind) {
    case Window::Kind::kDaily: return 26 * kNsPerHour;
    case Window::Kind::kWeekly: return 7 * kNsPerDay + 2 * kNsPerHour;
    default: return 31 * kNsPerDay + 2 * kNsPerHour;
  }
}

}  // namespace

// Latency (or cost) values of a trailing window, as kRingSlots interval
// sketches: adding is O(1) into the current interval, and the oldest interval
// falls out whole when its slot is reused.
class SketchRing {
 public:
  explicit SketchRing(int64_t window_ns)
      : interval_ns_(std::max<int64_t>(1, (window_ns + kRingSlots - 1) / kRingSlots)) {}

  void Add(double value, int64_t now_ns) {
    const int64_t index = FloorDiv(now_ns, interval_ns_);
    Slot& slot = slots_[static_cast<size_t>(Mod(index, kRingSlots))];
    if (slot.index > index) return;  // late, and its interval's slot was reused
    if (slot.index < index) {
      slot.index = index;
      slot.sketch = LatencySketch();
    }
    slot.sketch.Add(value);
  }

  LatencySketch Merged(int64_t now_ns) const {
    const int64_t current = FloorDiv(now_ns, interval_ns_);
    LatencySketch merged;
    for (const Slot& slot : slots_) {
      if (slot.index > current - kRingSlots && slot.index <= current) {
        (void)merged.Merge(slot.sketch);  // same options: cannot fail
      }
    }
    return merged;
  }

 private:
  struct Slot {
    int64_t index = std::numeric_limits<int64_t>::min();
    LatencySketch sketch;
  };
  int64_t interval_ns_;
  std::array<Slot, kRingSlots> slots_;
};

enum class SignalKind : unsigned char { kBurnRate, kLatency, kCostMax, kCostP95, kCostDay, kBreaker };

// A signal a spec can raise, with the actions it selects.
struct SignalDef {
  SignalKind kind = SignalKind::kBurnRate;
  size_t rule = 0;      // kBurnRate: index into success.alerts
  double quantile = 0;  // kLatency
  int64_t target = 0;   // kLatency: ns; kCost*: nano-USD
  std::string name, severity;
  std::vector<size_t> actions;  // indices into on_breach
  std::string action_kinds;     // "downgrade,escalate"
  bool escalates = false;
};

struct Series {
  Slo* slo = nullptr;
  std::string subject;
  // Set at creation, then used through their own locks.
  std::unique_ptr<ErrorBudget> budget;
  std::optional<BurnRateAlerter> alerter;
  std::unique_ptr<CircuitBreaker> breaker;

  // Whether any of disabled / rate / downgrade_model is set, so Admit skips
  // the lock of series that are not responding to anything.
  std::atomic<bool> responding{false};

  std::mutex mu;
  // All below GUARDED_BY(mu).
  uint64_t calls = 0;
  std::optional<SketchRing> latency;
  std::optional<SketchRing> cost;  // max / p95 per request
  int64_t day_start_ns = 0;
  int64_t day_end_ns = std::numeric_limits<int64_t>::min();
  int64_t day_cost_nanousd = 0;
  // When the breaker last opened, as far as Records saw it (the breaker does
  // not say), for "open until" in refusals.
  bool breaker_open = false;
  int64_t breaker_opened_ns = 0;
  // As of the last evaluation.
  std::vector<char> firing;  // per signal
  std::vector<char> active;  // per on_breach action
  bool disabled = false;
  std::string disabled_by;  // the firing signals behind it, for reasons
  double rate = 0;          // calls per second; 0 = not limited
  std::string rate_by;
  double tokens = 0;
  int64_t tokens_ns = 0;
  std::string downgrade_model;
  std::string downgrade_by;

  // The fleet (Options::breakers). Set at creation: the series' key in the
  // shared store, "" when its SLO has neither a breaker nor a disable action.
  std::string shared_key;
  int shared_probes = 0;         // GUARDED_BY(mu): fleet probe slots this worker holds
  bool shared_disabled = false;  // GUARDED_BY(mu): our disable, as last published
};

struct Slo {
  const SloSpec* spec = nullptr;
  std::shared_ptr<const TimeZone> zone;  // null = UTC
  int64_t max_series = 0;
  std::vector<int> group;  // 0 agent, 1 model, 2 tool; in group_by order
  // Burn-rate signals first, in rule order, so signal i is rule i.
  std::vector<SignalDef> signals;
  int64_t success_ring_ns = 0;  // the ErrorBudget's window
  bool calendar = false;
  BreakerStore* fleet = nullptr;  // SloMonitor::Options::breakers

  std::mutex mu;
  std::map<std::string, std::unique_ptr<Series>, std::less<>> series;  // GUARDED_BY(mu)
  int64_t regular_series = 0;  // GUARDED_BY(mu): all but "(other)"
};

namespace {

struct TupleKey {
  std::string kind, agent, model, tool;
  size_t hash = 0;
};
struct TupleView {
  std::string_view kind, agent, model, tool;
  size_t hash = 0;
};
struct TupleHash {
  using is_transparent = void;
  size_t operator()(const TupleKey& k) const noexcept { return k.hash; }
  size_t operator()(const TupleView& v) const noexcept { return v.hash; }
};
struct TupleEq {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const noexcept {
    return a.hash == b.hash && std::string_view(a.kind) == std::string_view(b.kind) &&
           std::string_view(a.agent) == std::string_view(b.agent) &&
           std::string_view(a.model) == std::string_view(b.model) &&
           std::string_view(a.tool) == std::string_view(b.tool);
  }
};

TupleView ViewOf(const SloCall& call) {
  const std::hash<std::string_view> h;
  size_t x = h(call.kind);
  for (std::string_view s : {call.agent, call.model, call.tool}) {
    x ^= h(s) + 0x9e3779b97f4a7c15ULL + (x << 6) + (x >> 2);
  }
  return {call.kind, call.agent, call.model, call.tool, x};
}

}  // namespace

// Call tuple -> the series it falls under.
class Router {
 public:
  explicit Router(int64_t max_tuples)
      : per_shard_(static_cast<size_t>((max_tuples + kShards - 1) / kShards)) {}

  const std::vector<Series*>* Find(const TupleView& v) {
    Shard& shard = ShardOf(v);
    std::shared_lock<std::shared_mutex> lock(shard.mu);
    auto it = shard.routes.find(v);
    return it == shard.routes.end() ? nullptr : &it->second;
  }

  // The cached route for `v` (an existing one if another thread got there
  // first), or null when the cache is full or the tuple too long to keep.
  const std::vector<Series*>* Insert(const TupleView& v, const std::vector<Series*>& route) {
    if (v.kind.size() + v.agent.size() + v.model.size() + v.tool.size() > kMaxCachedTupleBytes) {
      return nullptr;
    }
    Shard& shard = ShardOf(v);
    std::unique_lock<std::shared_mutex> lock(shard.mu);
    if (auto it = shard.routes.find(v); it != shard.routes.end()) return &it->second;
    if (shard.routes.size() >= per_shard_) return nullptr;
    TupleKey key{std::string(v.kind), std::string(v.agent), std::string(v.model),
                 std::string(v.tool), v.hash};
    return &shard.routes.emplace(std::move(key), route).first->second;
  }

 private:
  static constexpr int64_t kShards = 16;
  struct Shard {
    std::shared_mutex mu;
    // Entries are never erased: pointers to routes stay valid.
    std::unordered_map<TupleKey, std::vector<Series*>, TupleHash, TupleEq> routes;
  };
  Shard& ShardOf(const TupleView& v) {
    // The high bits: the map's buckets use the low ones.
    return shards_[(v.hash * 0x9e3779b97f4a7c15ULL) >> 60];
  }

  const size_t per_shard_;
  std::array<Shard, kShards> shards_;
};

namespace {

bool Selects(std::string_view when, const SignalDef& def, const SloSpec& spec) {
  if (when == "any") return true;
  if (when == "latency") return def.kind == SignalKind::kLatency;
  if (when == "cost") {
    return def.kind == SignalKind::kCostMax || def.kind == SignalKind::kCostP95 ||
           def.kind == SignalKind::kCostDay;
  }
  if (when == "breaker_open") return def.kind == SignalKind::kBreaker;
  if (def.kind != SignalKind::kBurnRate) return false;
  if (when == "page" || when == "ticket") return def.severity == when;
  return spec.success->alerts[def.rule].name == when;
}

std::vector<SignalDef> SignalsOf(const SloSpec& spec) {
  std::vector<SignalDef> defs;
  if (spec.success) {
    for (size_t i = 0; i < spec.success->alerts.size(); ++i) {
      const BurnRateRule& r = spec.success->alerts[i];
      SignalDef d;
      d.kind = SignalKind::kBurnRate;
      d.rule = i;
      d.name = "burn_rate:" + r.name;
      d.severity = AlertSeverityName(r.severity);
      defs.push_back(std::move(d));
    }
  }
  auto add = [&](SignalKind kind, const char* name, const char* severity,
                 std::optional<int64_t> target, double quantile = 0) {
    if (!target) return;
    SignalDef d;
    d.kind = kind;
    d.name = name;
    d.severity = severity;
    d.target = *target;
    d.quantile = quantile;
    defs.push_back(std::move(d));
  };
  if (spec.latency) {
    add(SignalKind::kLatency, "latency_p50", "ticket", spec.latency->p50_ns, 0.50);
    add(SignalKind::kLatency, "latency_p95", "ticket", spec.latency->p95_ns, 0.95);
    add(SignalKind::kLatency, "latency_p99", "ticket", spec.latency->p99_ns, 0.99);
  }
  if (spec.cost) {
    add(SignalKind::kCostMax, "cost_per_request", "ticket", spec.cost->max_per_request_nanousd);
    add(SignalKind::kCostP95, "cost_p95_per_request", "ticket",
        spec.cost->p95_per_request_nanousd);
    add(SignalKind::kCostDay, "cost_per_day", "ticket", spec.cost->per_day_nanousd);
  }
  if (spec.breaker) add(SignalKind::kBreaker, "breaker", "page", int64_t{0});
  for (SignalDef& d : defs) {
    for (size_t a = 0; a < spec.on_breach.size(); ++a) {
      const BreachAction& action = spec.on_breach[a];
      if (!Selects(action.when, d, spec)) continue;
      d.actions.push_back(a);
      if (!d.action_kinds.empty()) d.action_kinds += ',';
      d.action_kinds += BreachActionKindName(action.kind);
      d.escalates = d.escalates || action.kind == BreachAction::Kind::kEscalate;
    }
  }
  return defs;
}

Result<std::unique_ptr<Series>> NewSeries(Slo& slo, std::string subject) {
  const SloSpec& spec = *slo.spec;
  auto s = std::make_unique<Series>();
  s->slo = &slo;
  s->subject = std::move(subject);
  if (spec.success) {
    SloOptions o;
    o.target = spec.success->target;
    o.window_ns = slo.success_ring_ns;
    o.bucket_ns = spec.success->bucket_ns;
    o.excluded_error_classes = spec.success->excluded_error_classes;
    auto budget = ErrorBudget::Create(o);
    if (!budget.ok()) return budget.status();
    s->budget = std::move(*budget);
    auto alerter = BurnRateAlerter::Create(s->budget.get(), spec.success->alerts);
    if (!alerter.ok()) return alerter.status();
    s->alerter.emplace(std::move(*alerter));
  }
  if (spec.breaker) {
    auto breaker = CircuitBreaker::Create(*spec.breaker);
    if (!breaker.ok()) return breaker.status();
    s->breaker = std::move(*breaker);
  }
  if (spec.latency) s->latency.emplace(spec.latency->window_ns);
  if (spec.cost && (spec.cost->max_per_request_nanousd || spec.cost->p95_per_request_nanousd)) {
    s->cost.emplace(spec.cost->window_ns);
  }
  s->firing.assign(slo.signals.size(), 0);
  s->active.assign(spec.on_breach.size(), 0);
  bool disables = false;
  for (const BreachAction& a : spec.on_breach) disables |= a.kind == BreachAction::Kind::kDisable;
  if (spec.breaker || disables) s->shared_key = fmt::format("{}\x1f{}", spec.id, s->subject);
  return s;
}

std::string Describe(const Series& s) {
  if (s.subject.empty()) return fmt::format("slo '{}'", s.slo->spec->id);
  return fmt::format("slo '{}' [{}]", s.slo->spec->id, s.subject);
}

// The store could not be asked: refused, with the error.
Admission Unavailable(const Series& s, const ::bastion::Status& error) {
  Admission a;
  a.allowed = false;
  a.slo_id = s.slo->spec->id;
  a.subject = s.subject;
  a.reason = fmt::format("{}: {}", Describe(s), error.message());
  a.status = ::bastion::Status::Unavailable(a.reason);
  return a;
}

// A rate_limit response of r calls/s as a token bucket of the shared store:
// max(1, floor(r)) tokens refilled at r/s.
RateLimit SharedRateOf(double per_second) {
  RateLimit l;
  l.count = static_cast<uint32_t>(std::clamp(std::floor(per_second), 1.0, 1'000'000.0));
  l.period_ns = std::max<int64_t>(1000, std::llround(l.count * 1e9 / per_second));
  return l;
}

Admission Refuse(const Series& s, std::string_view why) {
  Admission a;
  a.allowed = false;
  a.slo_id = s.slo->spec->id;
  a.subject = s.subject;
  a.reason = fmt::format("{}: {}", Describe(s), why);
  return a;
}

// Tops up the token bucket. Caller holds s.mu.
void Refill(Series& s, int64_t now_ns) {
  const double burst = std::max(1.0, s.rate);
  if (now_ns > s.tokens_ns) {
    s.tokens = std::min(burst, s.tokens + static_cast<double>(now_ns - s.tokens_ns) * s.rate / 1e9);
    s.tokens_ns = now_ns;
  }
}

std::string BreakerOpenReason(Series& s, int64_t now_ns) {
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.breaker_open) return "circuit breaker open";
  const int64_t until = s.breaker_opened_ns + s.slo->spec->breaker->open_duration_ns;
  return fmt::format("circuit breaker open until {} ({} from now)", FormatTime(until),
                     FormatLatency(static_cast<double>(std::max<int64_t>(0, until - now_ns))));
}

// What one evaluation measures of a series.
struct Measurement {
  std::vector<FiringAlert> burning;  // firing burn-rate rules
  uint64_t latency_calls = 0;
  double latency_q[3] = {0, 0, 0};  // p50, p95, p99
  uint64_t priced = 0;
  NanoUsd cost_p95 = 0, cost_max = 0;
  NanoUsd cost_today = 0;
  CircuitBreaker::State breaker = CircuitBreaker::State::kClosed;
  bool breaker_open_known = false;
  int64_t breaker_until_ns = 0;
};

int QuantileSlot(double q) { return q < 0.9 ? 0 : q < 0.98 ? 1 : 2; }

// Burn rates are judged over whole buckets: at the last instant of the bucket
// before the current one. The current bucket is only partly filled, and its
// few calls would otherwise swing both windows from one evaluation to the
// next, so a rule near its threshold would fire and clear every second; this
// way a burn-rate signal changes at most once per bucket.
int64_t BurnJudgedAt(const Series& s, int64_t now_ns) {
  const int64_t bucket = s.slo->spec->success->bucket_ns;
  return FloorDiv(now_ns, bucket) * bucket - 1;
}

Measurement Measure(Series& s, int64_t now_ns) {
  Measurement m;
  if (s.alerter) m.burning = s.alerter->Evaluate(BurnJudgedAt(s, now_ns));
  if (s.breaker) m.breaker = s.breaker->state(now_ns);
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.latency) {
    const LatencySketch merged = s.latency->Merged(now_ns);
    m.latency_calls = merged.Count();
    m.latency_q[0] = merged.Quantile(0.50);
    m.latency_q[1] = merged.Quantile(0.95);
    m.latency_q[2] = merged.Quantile(0.99);
  }
  if (s.cost) {
    const LatencySketch merged = s.cost->Merged(now_ns);
    m.priced = merged.Count();
    m.cost_p95 = SketchedNanoUsd(merged.Quantile(0.95));
    m.cost_max = SketchedNanoUsd(merged.Max());
  }
  if (now_ns >= s.day_start_ns && now_ns < s.day_end_ns) m.cost_today = s.day_cost_nanousd;
  if (s.breaker_open) {
    m.breaker_open_known = true;
    m.breaker_until_ns = s.breaker_opened_ns + s.slo->spec->breaker->open_duration_ns;
  }
  // The fleet's breaker, where this worker's is closed: the one that opened
  // elsewhere (or here, and was handed to the fleet) fires the signal too.
  if (s.breaker && s.slo->fleet != nullptr && !s.shared_key.empty() &&
      m.breaker == CircuitBreaker::State::kClosed) {
    if (auto e = s.slo->fleet->Lookup(s.shared_key); e.ok()) {
      if (e->state == SharedBreakerState::State::kOpen) {
        m.breaker = CircuitBreaker::State::kOpen;
        m.breaker_open_known = true;
        m.breaker_until_ns = e->until_ns;
      } else if (e->state == SharedBreakerState::State::kHalfOpen) {
        m.breaker = CircuitBreaker::State::kHalfOpen;
      }
    }
  }
  return m;
}

bool IsFiring(const SignalDef& d, const Measurement& m) {
  switch (d.kind) {
    case SignalKind::kBurnRate:
      return std::any_of(m.burning.begin(), m.burning.end(),
                         [&](const FiringAlert& a) { return a.rule_index == d.rule; });
    case SignalKind::kLatency:
      return m.latency_calls > 0 &&
             m.latency_q[QuantileSlot(d.quantile)] > static_cast<double>(d.target);
    case SignalKind::kCostMax:
      return m.priced > 0 && m.cost_max > d.target;
    case SignalKind::kCostP95:
      return m.priced > 0 && m.cost_p95 > d.target;
    case SignalKind::kCostDay:
      return m.cost_today > d.target;
    case SignalKind::kBreaker:
      return m.breaker == CircuitBreaker::State::kOpen;
  }
  return false;
}

std::string DetailOf(const SignalDef& d, const Measurement& m, const Series& s, int64_t now_ns) {
  const SloSpec& spec = *s.slo->spec;
  switch (d.kind) {
    case SignalKind::kBurnRate: {
      const BurnRateRule& r = spec.success->alerts[d.rule];
      double long_burn = 0, short_burn = 0;
      auto it = std::find_if(m.burning.begin(), m.burning.end(),
                             [&](const FiringAlert& a) { return a.rule_index == d.rule; });
      if (it != m.burning.end()) {
        long_burn = it->long_burn_rate;
        short_burn = it->short_burn_rate;
      } else {
        long_burn = s.budget->BurnRate(r.long_window_ns, BurnJudgedAt(s, now_ns));
        short_burn = s.budget->BurnRate(r.short_window_ns, BurnJudgedAt(s, now_ns));
      }
      return fmt::format("burn rate {:.1f}x over {}, {:.1f}x over {} (fires above {:g}x)",
                         long_burn, FormatSpan(r.long_window_ns), short_burn,
                         FormatSpan(r.short_window_ns), r.burn_rate);
    }
    case SignalKind::kLatency:
      return fmt::format("p{:g} {} over the last {} (target {}, {} calls)", d.quantile * 100,
                         FormatLatency(m.latency_q[QuantileSlot(d.quantile)]),
                         FormatSpan(spec.latency->window_ns),
                         FormatLatency(static_cast<double>(d.target)), m.latency_calls);
    case SignalKind::kCostMax:
      return fmt::format("most expensive call {} in the last {} (max per request {})",
                         FormatUsd(m.cost_max), FormatSpan(spec.cost->window_ns),
                         FormatUsd(d.target));
    case SignalKind::kCostP95:
      return fmt::format("p95 {} per request over the last {} (target {}, {} priced calls)",
                         FormatUsd(m.cost_p95), FormatSpan(spec.cost->window_ns),
                         FormatUsd(d.target), m.priced);
    case SignalKind::kCostDay:
      return fmt::format("{} spent today (limit {} per day)",
                         FormatUsd(m.cost_today), FormatUsd(d.target));
    case SignalKind::kBreaker:
      if (m.breaker == CircuitBreaker::State::kOpen && m.breaker_open_known) {
        return fmt::format("circuit breaker open until {}", FormatTime(m.breaker_until_ns));
      }
      return fmt::format("circuit breaker {}", CircuitBreaker::StateName(m.breaker));
  }
  return "";
}

// The names of the firing signals that select action `a`. Caller holds s.mu.
std::string SelectedBy(const Series& s, size_t a) {
  std::string out;
  const auto& defs = s.slo->signals;
  for (size_t i = 0; i < defs.size(); ++i) {
    if (!s.firing[i]) continue;
    if (std::find(defs[i].actions.begin(), defs[i].actions.end(), a) == defs[i].actions.end()) {
      continue;
    }
    if (!out.empty()) out += ", ";
    out += defs[i].name;
  }
  return out;
}

// Recomputes the active actions and responses from s.firing. Caller holds s.mu.
void ApplyActions(Series& s, int64_t now_ns) {
  const SloSpec& spec = *s.slo->spec;
  std::fill(s.active.begin(), s.active.end(), 0);
  for (size_t i = 0; i < s.slo->signals.size(); ++i) {
    if (!s.firing[i]) continue;
    for (size_t a : s.slo->signals[i].actions) s.active[a] = 1;
  }
  const double old_rate = s.rate;
  s.disabled = false;
  s.disabled_by.clear();
  s.rate = 0;
  s.rate_by.clear();
  s.downgrade_model.clear();
  s.downgrade_by.clear();
  for (size_t a = 0; a < spec.on_breach.size(); ++a) {
    if (!s.active[a]) continue;
    const BreachAction& action = spec.on_breach[a];
    switch (action.kind) {
      case BreachAction::Kind::kDisable:
        if (!s.disabled) {
          s.disabled = true;
          s.disabled_by = SelectedBy(s, a);
        }
        break;
      case BreachAction::Kind::kRateLimit:
        if (s.rate == 0 || action.rate_per_second < s.rate) {
          s.rate = action.rate_per_second;
          s.rate_by = SelectedBy(s, a);
        }
        break;
      case BreachAction::Kind::kDowngrade:
        if (s.downgrade_model.empty()) {
          s.downgrade_model = action.model;
          s.downgrade_by = SelectedBy(s, a);
        }
        break;
      case BreachAction::Kind::kLog:
      case BreachAction::Kind::kEscalate:
        break;
    }
  }
  if (s.rate > 0 && old_rate == 0) {  // a limit starts with a full bucket
    s.tokens = std::max(1.0, s.rate);
    s.tokens_ns = now_ns;
  } else if (s.rate > 0) {
    Refill(s, now_ns);
    s.tokens = std::min(s.tokens, std::max(1.0, s.rate));
  }
  s.responding.store(s.disabled || s.rate > 0 || !s.downgrade_model.empty(),
                     std::memory_order_release);
}

// Counts over the SLO window: the trailing window, or the calendar period so
// far (to the bucket: the period's first bucket counts whole).
Totals SuccessTotals(const Series& s, int64_t now_ns) {
  const SuccessObjective& o = *s.slo->spec->success;
  if (!s.slo->calendar) return s.budget->Window(o.window_ns, now_ns);
  const Window w{o.window_kind, 0, s.slo->zone};
  const WindowBounds b = w.BoundsAt(now_ns);
  const int64_t buckets = FloorDiv(now_ns, o.bucket_ns) - FloorDiv(b.start_ns, o.bucket_ns) + 1;
  return s.budget->Window(buckets * o.bucket_ns, now_ns);
}

// A call taking longer than the latency objective's timeout is a failure of
// class "timeout", whatever its outcome said. Returns success; sets *error_class.
bool SucceededWithin(const SloSpec& spec, const SloOutcome& outcome,
                     std::string_view* error_class) {
  *error_class = outcome.error_class;
  if (spec.latency && spec.latency->timeout_ns && outcome.latency_ns > *spec.latency->timeout_ns) {
    *error_class = "timeout";
    return false;
  }
  return outcome.success;
}

// Counts one call into a series. With `breaker` false the breaker does not
// see it (a fleet probe's outcome goes to the store instead). Returns true
// when the call opened the breaker.
bool RecordInto(Series& s, const SloOutcome& outcome, int64_t now_ns, bool breaker = true) {
  const SloSpec& spec = *s.slo->spec;
  std::string_view error_class;
  const bool success = SucceededWithin(spec, outcome, &error_class);
  bool opened = false;
  std::lock_guard<std::mutex> lock(s.mu);
  ++s.calls;
  if (s.latency) s.latency->Add(static_cast<double>(outcome.latency_ns), now_ns);
  if (outcome.cost_nanousd && spec.cost) {
    const int64_t cost = *outcome.cost_nanousd;
    if (s.cost) s.cost->Add(static_cast<double>(cost), now_ns);
    if (spec.cost->per_day_nanousd) {
      if (now_ns >= s.day_end_ns) {  // a new local day
        const WindowBounds day = Window::Daily(s.slo->zone).BoundsAt(now_ns);
        s.day_start_ns = day.start_ns;
        s.day_end_ns = day.end_ns;
        s.day_cost_nanousd = 0;
      }
      // Before the day started: a late call of the previous day.
      if (now_ns >= s.day_start_ns) s.day_cost_nanousd += cost;
    }
  }
  if (s.budget) s.budget->Record(success, error_class, now_ns);
  if (s.breaker && breaker) {
    s.breaker->Record(success, outcome.latency_ns, now_ns);
    const bool open = s.breaker->state(now_ns) == CircuitBreaker::State::kOpen;
    // Still open from before only while the open period has not run out;
    // past it the breaker went half-open and this call reopened it.
    if (open && (!s.breaker_open ||
                 now_ns - s.breaker_opened_ns >= spec.breaker->open_duration_ns)) {
      s.breaker_opened_ns = now_ns;
      opened = true;
    }
    s.breaker_open = open;
  }
  return opened;
}

// Whether a call counts as a success and as slow for the breaker.
std::pair<bool, bool> BreakerVerdict(const SloSpec& spec, const SloOutcome& outcome) {
  std::string_view error_class;
  const bool success = SucceededWithin(spec, outcome, &error_class);
  return {success, outcome.latency_ns >= spec.breaker->slow_call_duration_ns};
}

}  // namespace
}  // namespace slo_internal

using slo_internal::Measurement;
using slo_internal::Router;
using slo_internal::Series;
using slo_internal::SignalDef;
using slo_internal::Slo;

// ---------------------------------------------------------------------------

SloMonitor::SloMonitor(std::vector<SloSpec> specs, Options options)
    : specs_(std::move(specs)),
      options_(std::move(options)),
      clock_(options_.clock ? options_.clock : std::make_shared<WallClock>()),
      router_(std::make_unique<Router>(options_.max_cached_tuples)) {}

SloMonitor::~SloMonitor() = default;

Result<std::unique_ptr<SloMonitor>> SloMonitor::Create(std::vector<SloSpec> specs,
                                                       Options options) {
  if (options.evaluate_every_ns < 0) {
    return ::bastion::Status::InvalidArgument("evaluate_every_ns: must be >= 0");
  }
  if (options.max_series_per_slo < 1) {
    return ::bastion::Status::InvalidArgument("max_series_per_slo: must be >= 1");
  }
  if (options.max_cached_tuples < 0) {
    return ::bastion::Status::InvalidArgument("max_cached_tuples: must be >= 0");
  }
  std::unordered_map<std::string_view, size_t> ids;
  for (size_t i = 0; i < specs.size(); ++i) {
    BASTION_RETURN_IF_ERROR(ValidateSloSpec(specs[i]));
    if (auto [it, fresh] = ids.emplace(specs[i].id, i); !fresh) {
      return ::bastion::Status::InvalidArgument(fmt::format(
          "slo '{}': duplicate id (specs[{}] and specs[{}])", specs[i].id, it->second, i));
    }
  }
  std::unique_ptr<SloMonitor> m(new SloMonitor(std::move(specs), std::move(options)));
  for (const SloSpec& spec : m->specs_) {
    auto slo = std::make_unique<Slo>();
    slo->spec = &spec;
    slo->zone = spec.zone ? spec.zone : m->options_.zone;
    slo->max_series = spec.max_series > 0 ? spec.max_series : m->options_.max_series_per_slo;
    for (const std::string& g : spec.group_by) {
      slo->group.push_back(g == "agent" ? 0 : g == "model" ? 1 : 2);
    }
    slo->signals = slo_internal::SignalsOf(spec);
    slo->fleet = m->options_.breakers.get();
    if (spec.success) {
      const SuccessObjective& o = *spec.success;
      slo->calendar = o.window_kind != Window::Kind::kRolling;
      if (slo->calendar) {
        int64_t span = slo_internal::CalendarSpanNs(o.window_kind);
        for (const BurnRateRule& r : o.alerts) span = std::max(span, r.long_window_ns);
        slo->success_ring_ns = (span + o.bucket_ns - 1) / o.bucket_ns * o.bucket_ns;
      } else {
        slo->success_ring_ns = o.window_ns;
      }
    }
    if (slo->group.empty()) {
      auto series = slo_internal::NewSeries(*slo, "");
      if (!series.ok()) return series.status().WithContext(fmt::format("slo '{}'", spec.id));
      slo->series.emplace("", std::move(*series));
    } else {
      // Grouped series are made on demand; make one now so a spec the state
      // objects refuse fails here rather than on some later call.
      auto probe = slo_internal::NewSeries(*slo, "");
      if (!probe.ok()) return probe.status().WithContext(fmt::format("slo '{}'", spec.id));
    }
    m->slos_.push_back(std::move(slo));
  }
  for (auto& slo : m->slos_) m->slos_by_id_.push_back(slo.get());
  std::sort(m->slos_by_id_.begin(), m->slos_by_id_.end(),
            [](const Slo* a, const Slo* b) { return a->spec->id < b->spec->id; });
  m->next_evaluation_ns_.store(m->clock_->NowNs() + m->options_.evaluate_every_ns,
                               std::memory_order_relaxed);
  return m;
}

Series* SloMonitor::SeriesFor(Slo& slo, const SloCall& call) {
  std::string subject;
  for (size_t i = 0; i < slo.group.size(); ++i) {
    static constexpr std::string_view kNames[] = {"agent", "model", "tool"};
    const std::string_view value = slo.group[i] == 0   ? call.agent
                                   : slo.group[i] == 1 ? call.model
                                                       : call.tool;
    if (i > 0) subject += ',';
    subject += kNames[slo.group[i]];
    subject += '=';
    subject += slo_internal::Clip(value);
  }
  std::lock_guard<std::mutex> lock(slo.mu);
  if (auto it = slo.series.find(subject); it != slo.series.end()) return it->second.get();
  if (!subject.empty() && slo.regular_series >= slo.max_series) {
    subject = std::string(slo_internal::kOtherSubject);
    if (auto it = slo.series.find(subject); it != slo.series.end()) return it->second.get();
  } else {
    ++slo.regular_series;
  }
  auto series = slo_internal::NewSeries(slo, subject);
  if (!series.ok()) return nullptr;  // Create made one with the same spec: cannot happen
  Series* s = series->get();
  slo.series.emplace(std::move(subject), std::move(*series));
  return s;
}

const std::vector<Series*>& SloMonitor::Route(const SloCall& call,
                                              std::vector<Series*>* scratch) {
  const slo_internal::TupleView view = slo_internal::ViewOf(call);
  if (const std::vector<Series*>* cached = router_->Find(view)) return *cached;
  scratch->clear();
  for (auto& slo : slos_) {
    const SloSpec& spec = *slo->spec;
    if (spec.kind != "*" && spec.kind != call.kind) continue;
    if (!slo_internal::AnyMatch(spec.agents, call.agent) ||
        !slo_internal::AnyMatch(spec.models, call.model) ||
        !slo_internal::AnyMatch(spec.tools, call.tool)) {
      continue;
    }
    if (Series* s = SeriesFor(*slo, call)) scratch->push_back(s);
  }
  if (const std::vector<Series*>* cached = router_->Insert(view, *scratch)) return *cached;
  return *scratch;
}

Admission SloMonitor::Judge(const std::vector<Series*>& route, int64_t now_ns) {
  using State = CircuitBreaker::State;
  using Shared = SharedBreakerState::State;
  BreakerStore* fleet = options_.breakers.get();
  // Shared half-open breakers: a fleet probe slot to take.
  std::vector<Series*> probing;
  // Refusals that take nothing: the fleet's state, then this worker's.
  for (Series* s : route) {
    if (fleet != nullptr && !s->shared_key.empty()) {
      auto e = fleet->Lookup(s->shared_key);
      if (!e.ok()) return slo_internal::Unavailable(*s, e.status());
      switch (e->state) {
        case Shared::kOpen:
          return slo_internal::Refuse(
              *s, fmt::format("circuit breaker open until {} (opened by worker '{}': {})",
                              slo_internal::FormatTime(e->until_ns), e->worker, e->reason));
        case Shared::kDisabled:
          return slo_internal::Refuse(
              *s, fmt::format("calls disabled by worker '{}' while {} is firing", e->worker,
                              e->reason));
        case Shared::kHalfOpen:
          if (s->breaker) probing.push_back(s);
          break;
        case Shared::kClosed:
        case Shared::kLocal:
          break;
      }
    }
    if (s->breaker && s->breaker->state(now_ns) == State::kOpen) {
      return slo_internal::Refuse(*s, slo_internal::BreakerOpenReason(*s, now_ns));
    }
    if (s->responding.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> lock(s->mu);
      if (s->disabled) {
        return slo_internal::Refuse(
            *s, fmt::format("calls disabled while {} is firing", s->disabled_by));
      }
    }
  }
  // Fleet probe slots, given back if a later check refuses.
  std::vector<Series*> probes;
  auto give_back_probes = [&] {
    for (Series* p : probes) {
      {
        std::lock_guard<std::mutex> lock(p->mu);
        --p->shared_probes;
      }
      fleet->ReleaseProbe(p->shared_key);
    }
  };
  for (Series* s : probing) {
    bool took = false;
    auto got = fleet->TakeProbe(s->shared_key, *s->slo->spec->breaker, &took);
    if (!got.ok() || !*got) {
      give_back_probes();
      if (!got.ok()) return slo_internal::Unavailable(*s, got.status());
      return slo_internal::Refuse(
          *s, fmt::format("circuit breaker half-open, its {} probe calls are in flight",
                          s->slo->spec->breaker->half_open_probes));
    }
    if (!took) continue;  // closed meanwhile
    {
      std::lock_guard<std::mutex> lock(s->mu);
      ++s->shared_probes;
    }
    probes.push_back(s);
  }
  // Tokens, given back if a later check refuses (the shared store's are not).
  std::vector<Series*> taken;
  auto give_back = [&] {
    for (Series* t : taken) {
      std::lock_guard<std::mutex> lock(t->mu);
      if (t->rate > 0) t->tokens = std::min(std::max(1.0, t->rate), t->tokens + 1);
    }
  };
  if (options_.rate_limits) {
    std::vector<RateLimitRef> refs;
    std::vector<Series*> limited;
    for (Series* s : route) {
      if (!s->responding.load(std::memory_order_acquire)) continue;
      std::lock_guard<std::mutex> lock(s->mu);
      if (s->rate <= 0) continue;
      refs.push_back({fmt::format("slo\x1f{}\x1f{}", s->slo->spec->id, s->subject),
                      slo_internal::SharedRateOf(s->rate)});
      limited.push_back(s);
    }
    if (!refs.empty()) {
      size_t refused = 0;
      auto got = options_.rate_limits->Acquire(refs, now_ns, &refused);
      if (!got.ok() || !*got) {
        give_back_probes();
        Series* s = limited[std::min(refused, limited.size() - 1)];
        if (!got.ok()) return slo_internal::Unavailable(*s, got.status());
        std::string why;
        {
          std::lock_guard<std::mutex> lock(s->mu);
          why = fmt::format("rate limited to {} while {} is firing",
                            slo_internal::FormatRate(s->rate), s->rate_by);
        }
        return slo_internal::Refuse(*s, why);
      }
    }
  } else {
    for (Series* s : route) {
      if (!s->responding.load(std::memory_order_acquire)) continue;
      std::unique_lock<std::mutex> lock(s->mu);
      if (s->rate <= 0) continue;
      slo_internal::Refill(*s, now_ns);
      if (s->tokens >= 1) {
        s->tokens -= 1;
        taken.push_back(s);
        continue;
      }
      const std::string why = fmt::format("rate limited to {} while {} is firing",
                                          slo_internal::FormatRate(s->rate), s->rate_by);
      lock.unlock();
      give_back();
      give_back_probes();
      return slo_internal::Refuse(*s, why);
    }
  }
  // This worker's breakers last: a half-open one hands out a probe slot.
  std::vector<Series*> allowed;
  for (Series* s : route) {
    if (!s->breaker) continue;
    if (s->breaker->Allow(now_ns)) {
      allowed.push_back(s);
      continue;
    }
    for (Series* a : allowed) a->breaker->Release();
    give_back();
    give_back_probes();
    if (s->breaker->state(now_ns) == State::kOpen) {
      return slo_internal::Refuse(*s, slo_internal::BreakerOpenReason(*s, now_ns));
    }
    return slo_internal::Refuse(
        *s, fmt::format("circuit breaker half-open, its {} probe calls are in flight",
                        s->slo->spec->breaker->half_open_probes));
  }
  return Admission{};
}

void SloMonitor::Release(const SloCall& call) {
  std::vector<Series*> scratch;
  for (Series* s : Route(call, &scratch)) {
    if (s->breaker) s->breaker->Release();
    if (options_.breakers && !s->shared_key.empty()) {
      bool held = false;
      {
        std::lock_guard<std::mutex> lock(s->mu);
        if (s->shared_probes > 0) {
          --s->shared_probes;
          held = true;
        }
      }
      if (held) options_.breakers->ReleaseProbe(s->shared_key);
    }
  }
}

Admission SloMonitor::Admit(const SloCall& call) {
  const int64_t now = clock_->NowNs();
  std::vector<Series*> scratch;
  const std::vector<Series*>& route = Route(call, &scratch);
  for (Series* s : route) {
    if (!s->responding.load(std::memory_order_acquire)) continue;
    std::string model, by;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      model = s->downgrade_model;
      by = s->downgrade_by;
    }
    if (model.empty()) continue;
    if (model == call.model) break;  // already the model a downgrade asks for
    SloCall downgraded = call;
    downgraded.model = model;
    std::vector<Series*> scratch2;
    Admission a = Judge(Route(downgraded, &scratch2), now);
    if (!a.allowed) {
      a.reason += fmt::format(" (the call was downgraded to '{}' by {})", model,
                              slo_internal::Describe(*s));
      return a;
    }
    a.slo_id = s->slo->spec->id;
    a.subject = s->subject;
    a.reason = fmt::format("{}: downgraded to '{}' while {} is firing", slo_internal::Describe(*s),
                           model, by);
    a.downgrade_model = std::move(model);
    return a;
  }
  return Judge(route, now);
}

std::vector<SloEvent> SloMonitor::Record(const SloCall& call, const SloOutcome& outcome) {
  const int64_t now = clock_->NowNs();
  std::vector<Series*> scratch;
  BreakerStore* fleet = options_.breakers.get();
  for (Series* s : Route(call, &scratch)) {
    if (fleet == nullptr || !s->breaker || s->shared_key.empty()) {
      slo_internal::RecordInto(*s, outcome, now);
      continue;
    }
    bool probe = false;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      if (s->shared_probes > 0) {
        --s->shared_probes;
        probe = true;
      }
    }
    const bool opened = slo_internal::RecordInto(*s, outcome, now, /*breaker=*/!probe);
    const CircuitBreakerOptions& b = *s->slo->spec->breaker;
    if (probe) {
      // The fleet's half-open breaker judges its probes; a store that cannot
      // be reached leaves it half-open until a probe slot expires.
      const auto [success, slow] = slo_internal::BreakerVerdict(*s->slo->spec, outcome);
      (void)fleet->ProbeOutcome(s->shared_key, success, slow, b,
                                success ? "too many slow probe calls" : "a probe call failed");
    } else if (opened) {
      // Published: the fleet's state owns the open breaker from now on, and
      // this worker's counts anew. Not published (the store is away): this
      // worker's breaker stays open and is judged here.
      const std::string why =
          fmt::format("failure or slow-call rate reached over the last {} calls", b.window_size);
      if (fleet->PublishOpen(s->shared_key, b.open_duration_ns, why).ok()) {
        std::lock_guard<std::mutex> lock(s->mu);
        s->breaker->Reset();
        s->breaker_open = false;
      }
    }
  }
  if (options_.evaluate_every_ns > 0) {
    int64_t due = next_evaluation_ns_.load(std::memory_order_relaxed);
    if (now >= due && next_evaluation_ns_.compare_exchange_strong(
                          due, now + options_.evaluate_every_ns, std::memory_order_relaxed)) {
      return Evaluate();
    }
  }
  return {};
}

std::vector<Series*> SloMonitor::AllSeriesSorted() {
  std::vector<Series*> out;
  for (Slo* slo : slos_by_id_) {
    std::lock_guard<std::mutex> lock(slo->mu);
    for (auto& [subject, series] : slo->series) out.push_back(series.get());
  }
  return out;
}

std::vector<SloEvent> SloMonitor::Evaluate() {
  std::vector<SloEvent> events;
  std::vector<SloEvent> escalations;
  // Disables to publish to the fleet: key, disabled, why.
  std::vector<std::tuple<std::string, bool, std::string>> disables;
  {
    std::lock_guard<std::mutex> evaluating(evaluate_mu_);
    const int64_t now = clock_->NowNs();
    if (options_.evaluate_every_ns > 0) {
      next_evaluation_ns_.store(now + options_.evaluate_every_ns, std::memory_order_relaxed);
    }
    for (Series* s : AllSeriesSorted()) {
      const Slo& slo = *s->slo;
      const Measurement m = slo_internal::Measure(*s, now);
      std::lock_guard<std::mutex> lock(s->mu);
      bool changed = false;
      for (size_t i = 0; i < slo.signals.size(); ++i) {
        const SignalDef& def = slo.signals[i];
        const bool firing = slo_internal::IsFiring(def, m);
        if (firing == static_cast<bool>(s->firing[i])) continue;
        s->firing[i] = firing;
        changed = true;
        SloEvent e;
        e.slo_id = slo.spec->id;
        e.subject = s->subject;
        e.signal = def.name;
        e.firing = firing;
        e.severity = def.severity;
        e.action = def.action_kinds;
        e.detail = slo_internal::DetailOf(def, m, *s, now);
        e.at_ns = now;
        if (firing && def.escalates) escalations.push_back(e);
        events.push_back(std::move(e));
      }
      if (changed) slo_internal::ApplyActions(*s, now);
      if (options_.breakers && !s->shared_key.empty() && s->disabled != s->shared_disabled) {
        s->shared_disabled = s->disabled;
        disables.emplace_back(s->shared_key, s->disabled, s->disabled_by);
      }
    }
  }
  for (const auto& [key, disabled, why] : disables) {
    // Unreachable store: the disable holds on this worker, and the store
    // renews (so publishes) it within a quarter lease of coming back.
    (void)options_.breakers->SetDisabled(key, disabled, why);
  }
  // Outside the locks: the callback may call back into the monitor.
  if (options_.on_escalate) {
    for (const SloEvent& e : escalations) options_.on_escalate(e);
  }
  return events;
}

SeriesStatus SloMonitor::StatusOf(Series& s, int64_t now_ns) {
  const SloSpec& spec = *s.slo->spec;
  const Measurement m = slo_internal::Measure(s, now_ns);
  SeriesStatus st;
  st.slo_id = spec.id;
  st.subject = s.subject;
  st.at_ns = now_ns;
  if (spec.latency) {
    st.latency_calls = m.latency_calls;
    st.latency_p50_ns = m.latency_q[0];
    st.latency_p95_ns = m.latency_q[1];
    st.latency_p99_ns = m.latency_q[2];
    st.latency_p50_target_ns = spec.latency->p50_ns;
    st.latency_p95_target_ns = spec.latency->p95_ns;
    st.latency_p99_target_ns = spec.latency->p99_ns;
  }
  if (spec.success) {
    const Totals t = slo_internal::SuccessTotals(s, now_ns);
    st.has_success = true;
    st.target = spec.success->target;
    st.events = t.events;
    st.errors = t.errors;
    st.success_rate = t.events ? 1.0 - t.ErrorRate() : 1.0;
    st.error_budget_remaining =
        t.errors == 0 ? 1.0
                      : 1.0 - static_cast<double>(t.errors) /
                                  ((1 - spec.success->target) * static_cast<double>(t.events));
    const int64_t judged_at = slo_internal::BurnJudgedAt(s, now_ns);
    for (const BurnRateRule& r : spec.success->alerts) {
      BurnRateStatus b;
      b.rule = r.name;
      b.severity = AlertSeverityName(r.severity);
      b.threshold = r.burn_rate;
      b.long_window_ns = r.long_window_ns;
      b.short_window_ns = r.short_window_ns;
      b.long_burn_rate = s.budget->BurnRate(r.long_window_ns, judged_at);
      b.short_burn_rate = s.budget->BurnRate(r.short_window_ns, judged_at);
      st.burn_rates.push_back(std::move(b));
    }
  }
  if (s.breaker) st.breaker_state = CircuitBreaker::StateName(m.breaker);
  if (spec.cost) {
    st.cost_today_nanousd = m.cost_today;
    st.cost_p95_per_request_nanousd = m.cost_p95;
    st.cost_max_per_request_nanousd = m.cost_max;
    st.priced_calls = m.priced;
  }
  std::lock_guard<std::mutex> lock(s.mu);
  st.calls = s.calls;
  for (size_t i = 0; i < s.slo->signals.size(); ++i) {
    if (!s.firing[i]) continue;
    st.firing.push_back(s.slo->signals[i].name);
    // Burn-rate signals come first, in rule order.
    if (s.slo->signals[i].kind == slo_internal::SignalKind::kBurnRate) {
      st.burn_rates[s.slo->signals[i].rule].firing = true;
    }
  }
  for (size_t a = 0; a < spec.on_breach.size(); ++a) {
    if (s.active[a]) st.active_actions.push_back(spec.on_breach[a]);
  }
  return st;
}

std::vector<SeriesStatus> SloMonitor::Status() {
  const int64_t now = clock_->NowNs();
  std::vector<SeriesStatus> out;
  for (Series* s : AllSeriesSorted()) out.push_back(StatusOf(*s, now));
  return out;
}

Result<SloMonitor::Slo*> SloMonitor::FindSlo(std::string_view slo_id) {
  auto it = std::lower_bound(slos_by_id_.begin(), slos_by_id_.end(), slo_id,
                             [](const Slo* s, std::string_view id) { return s->spec->id < id; });
  if (it == slos_by_id_.end() || (*it)->spec->id != slo_id) {
    return ::bastion::Status::NotFound(fmt::format("no slo '{}'", slo_id));
  }
  return *it;
}

Result<SloMonitor::Series*> SloMonitor::FindSeries(std::string_view slo_id,
                                                   std::string_view subject) {
  auto slo = FindSlo(slo_id);
  if (!slo.ok()) return slo.status();
  std::lock_guard<std::mutex> lock((*slo)->mu);
  auto found = (*slo)->series.find(subject);
  if (found == (*slo)->series.end()) {
    return ::bastion::Status::NotFound(
        fmt::format("slo '{}' has no series '{}'", slo_id, subject));
  }
  return found->second.get();
}

Result<SloMonitor::Series*> SloMonitor::SeriesOfCall(std::string_view slo_id,
                                                     const SloCall& call) {
  auto slo = FindSlo(slo_id);
  if (!slo.ok()) return slo.status();
  const SloSpec& spec = *(*slo)->spec;
  if ((spec.kind != "*" && spec.kind != call.kind) ||
      !slo_internal::AnyMatch(spec.agents, call.agent) ||
      !slo_internal::AnyMatch(spec.models, call.model) ||
      !slo_internal::AnyMatch(spec.tools, call.tool)) {
    return ::bastion::Status::NotFound(fmt::format(
        "slo '{}' does not cover this call ({} agent '{}' model '{}' tool '{}')", slo_id,
        call.kind, slo_internal::Clip(call.agent), slo_internal::Clip(call.model),
        slo_internal::Clip(call.tool)));
  }
  Series* series = SeriesFor(**slo, call);
  if (series == nullptr) {
    return ::bastion::Status::Internal(fmt::format("slo '{}': no series for the call", slo_id));
  }
  return series;
}

Result<SeriesStatus> SloMonitor::Get(std::string_view slo_id, std::string_view subject) {
  auto series = FindSeries(slo_id, subject);
  if (!series.ok()) return series.status();
  return StatusOf(**series, clock_->NowNs());
}

Result<SeriesStatus> SloMonitor::GetFor(std::string_view slo_id, const SloCall& call) {
  auto series = SeriesOfCall(slo_id, call);
  if (!series.ok()) return series.status();
  return StatusOf(**series, clock_->NowNs());
}

Result<double> SloMonitor::BurnRateOf(const Series& series, int64_t window_ns) {
  if (series.budget == nullptr) {
    return ::bastion::Status::FailedPrecondition(fmt::format(
        "slo '{}' has no success objective, so no error budget to burn", series.slo->spec->id));
  }
  return series.budget->BurnRate(window_ns, clock_->NowNs());
}

Result<double> SloMonitor::BurnRate(std::string_view slo_id, std::string_view subject,
                                    int64_t window_ns) {
  auto series = FindSeries(slo_id, subject);
  if (!series.ok()) return series.status();
  return BurnRateOf(**series, window_ns);
}

Result<double> SloMonitor::BurnRateFor(std::string_view slo_id, const SloCall& call,
                                       int64_t window_ns) {
  auto series = SeriesOfCall(slo_id, call);
  if (!series.ok()) return series.status();
  return BurnRateOf(**series, window_ns);
}

}  // namespace bastion
