// RedisBudgets: budgets shared by a fleet, on Redis (bastion/fleet_budgets.h).
//
// Key layout, all in the hash slot of "{<prefix>}" (docs/fleet.md#budgets):
//   {p}:b:<n>:<budget>:<key>:<window start>  state of a key in a calendar or
//                                           per-run window (hash s r l h)
//   {p}:b:<n>:<budget>:<key>:r[:z]           a rolling window's state, and its
//                                           settled amounts by date
//   {p}:a:<n>:<budget>:<key>                 alert marks, throttle bucket
//   {p}:workers                             live workers, by expiry (ms)
//   {p}:w:<worker>:alive|:h|:l               liveness key (TTL), open holds,
//                                           leases
//   {p}:seq                                 hold ids
// (<n> is the budget id's length, so ids and keys never run together.)
#include "bastion/fleet_budgets.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "bastion/clock.h"
#include "bastion/money.h"
#include "budget/budget_match.h"
#include "fleet/budget_scripts.h"
#include "fleet/degradation.h"
#include "fleet/redis_client.h"

namespace bastion {

namespace {

using fleet::kBeatScript;
using fleet::kFinishScript;
using fleet::kLeaveScript;
using fleet::kReserveScript;
using fleet::kSyncScript;
using fleet::kUsageScript;
using fleet::RedisReply;
using fleet::RedisScript;

// Holds admitted in-process carry these bits in their ids; the server's hold
// ids are small counters.
constexpr uint64_t kLeaseBit = uint64_t{1} << 63;
constexpr uint64_t kLocalBit = uint64_t{1} << 62;
// Keys of a past window are kept this long after it ends: a call settled
// later than that is not charged (its window's numbers are gone).
constexpr int64_t kKeepAfterWindowMs = 24LL * 3600 * 1000;

const RedisScript& Script(const char* body) {
  // One RedisScript per body, its SHA computed once.
  static std::mutex mu;
  static std::unordered_map<const char*, std::unique_ptr<RedisScript>> scripts;
  std::lock_guard lock(mu);
  auto& s = scripts[body];
  if (!s) s = std::make_unique<RedisScript>(std::string(fleet::kBudgetPrelude) + body);
  return *s;
}

int64_t Int(const RedisReply& r) { return r.type == RedisReply::Type::kInteger ? r.integer : 0; }

std::string DefaultWorker() {
  static std::atomic<int> opened{0};
  const int n = opened.fetch_add(1);
  return n == 0 ? fleet::HostAndPid() : fmt::format("{}:{}", fleet::HostAndPid(), n);
}

int64_t MsCeil(int64_t ns) { return ns <= 0 ? 0 : (ns + 999'999) / 1'000'000; }

}  // namespace

struct RedisBudgets::Impl {
  // What the scripts need to know of a budget, formatted once.
  struct Info {
    std::string id_part;     // "<n>:<id>"
    std::string adm, limit;  // admissible (-1: soft), full limit
    std::vector<std::string> thresholds;  // minp, n, then 4 per threshold
    int64_t max_cooldown_ns = 0;
    int min_throttle_percent = 0;  // 0: no throttle
    bool leasable = false;
  };
  // A slice of a (budget, key, window) this worker admits against locally.
  struct Lease {
    size_t budget = 0;
    std::string key;
    WindowBounds window;
    // Every change is reported as an amount to add (budget_scripts.h), so
    // the server's view is this one plus grants whose reply is in flight.
    int64_t left = 0;       // the slice's unused part, open holds included
    int64_t held = 0;       // open holds admitted under it
    int64_t pending = 0;    // spend not yet reported
    int64_t used = 0;       // of which taken from the slice (an estimate at most)
    int64_t reported_held = 0;
    int64_t base = 0;       // committed on the server at the last reply
    int64_t delta = 0;      // committed here since
  };
  // Spend admitted while degraded, to report when the server is back.
  struct Owed {
    size_t budget = 0;
    std::string key;
    WindowBounds window;
    int64_t amount = 0;
  };
  // A settle or release the server did not get; retried.
  struct Deferred {
    BudgetHold hold;
    int64_t actual = -1;  // -1: release
  };

  BudgetConfig config;
  StoreOptions store;
  Options options;
  std::vector<Info> info;
  std::shared_ptr<fleet::RedisClient> redis;
  std::string prefix;  // "{bastion}"
  std::string worker;
  std::string ttl_ms;
  std::atomic<int64_t> offset_ns{0};  // server clock - this host's

  std::mutex mu;
  std::unordered_map<std::string, Lease> leases;     // by state key; GUARDED_BY(mu)
  std::unordered_set<uint64_t> local_holds;          // GUARDED_BY(mu)
  uint64_t next_local = 1;                           // GUARDED_BY(mu)
  std::vector<AlertEvent> alerts;                    // fired at reports; GUARDED_BY(mu)
  std::vector<Deferred> deferred;                    // GUARDED_BY(mu)
  std::unordered_map<std::string, Owed> owed;        // GUARDED_BY(mu)
  std::vector<std::pair<size_t, std::string>> seen;  // (budget, key) used; GUARDED_BY(mu)
  std::unique_ptr<fleet::Degradation> degradation;  // set at Open
  // The last call to the server failed: leases are not used until one
  // succeeds, so a worker cut off from its server fails closed too.
  std::atomic<bool> unreachable{false};
  // Leases are used only until this steady-clock time: half the worker TTL
  // after the send of the last report that renewed this worker's liveness.
  // A worker silent for its TTL is taken for dead and its leases reclaimed;
  // past this time it stops admitting under them, and its next report gives
  // back all it does not hold (budget_scripts.h ignores what was reclaimed).
  std::atomic<int64_t> leases_valid_until{0};
  std::unique_ptr<BudgetLedger> local;  // degraded admission

  std::mutex loop_mu;
  std::condition_variable loop_cv;
  bool stopping = false;  // GUARDED_BY(loop_mu)
  bool closed = false;    // GUARDED_BY(loop_mu)
  std::thread loop;

  int64_t Now() const {
    return options.clock ? options.clock() : WallNowNs() + offset_ns.load(std::memory_order_relaxed);
  }

  const BudgetSpec& Spec(size_t b) const { return config.budgets[b].spec; }

  std::string StateKey(size_t b, std::string_view key, const WindowBounds& w) const {
    if (Spec(b).window.kind == Window::Kind::kRolling) {
      return fmt::format("{}:b:{}:{}:r", prefix, info[b].id_part, key);
    }
    return fmt::format("{}:b:{}:{}:{}", prefix, info[b].id_part, key, w.start_ns);
  }

  // The prelude's arguments; `renew` renews this worker's liveness (the
  // background thread does it every report interval, and calls on the hot
  // path leave it to it).
  std::vector<std::string> Args(int64_t now, bool renew = false) const {
    std::vector<std::string> a;
    a.reserve(64);
    a.push_back(prefix);
    a.push_back(worker);
    a.push_back(std::to_string(now));
    a.push_back(renew ? ttl_ms : "0");
    return a;
  }

  // An entry (budget_scripts.h) for budget b, key, the window `w` its
  // numbers count in, at `now`.
  void Entry(std::vector<std::string>* a, size_t b, std::string_view key, const WindowBounds& w,
             int64_t now) const {
    const BudgetSpec& spec = Spec(b);
    const Info& in = info[b];
    const bool rolling = spec.window.kind == Window::Kind::kRolling;
    int64_t keep_ms = 0;
    if (rolling) {
      keep_ms = MsCeil(spec.window.duration_ns) + kKeepAfterWindowMs;
    } else if (spec.window.kind != Window::Kind::kPerRun) {
      keep_ms = std::max<int64_t>(MsCeil(w.end_ns - now), 1) + kKeepAfterWindowMs;
    }
    a->push_back(StateKey(b, key, w));
    a->push_back(fmt::format("{}:a:{}:{}", prefix, in.id_part, key));
    a->push_back(std::to_string(keep_ms));
    a->push_back(in.adm);
    a->push_back(in.limit);
    a->push_back(rolling ? std::to_string(spec.window.BoundsAt(now).start_ns) : std::string());
    a->push_back(std::to_string(w.start_ns));
    a->push_back(std::to_string(keep_ms == 0 ? 0 : keep_ms + MsCeil(in.max_cooldown_ns)));
    a->insert(a->end(), in.thresholds.begin(), in.thresholds.end());
  }

  Result<RedisReply> Run(const char* body, const std::vector<std::string>& args) {
    std::vector<std::string_view> views(args.begin(), args.end());
    auto reply = redis->Eval(Script(body), {}, views);
    const bool failed = !reply.ok() && reply.status().IsUnavailable();
    if (unreachable.load(std::memory_order_relaxed) != failed) unreachable = failed;
    return reply;
  }

  void Remember(size_t b, const std::string& key) {  // requires mu
    for (const auto& s : seen) {
      if (s.first == b && s.second == key) return;
    }
    seen.emplace_back(b, key);
  }

  // Responses in force at `committed` for budget b: a downgrade.
  void Downgrade(size_t b, int64_t committed, BudgetHold* hold) const {
    const BudgetRule& rule = config.budgets[b];
    for (size_t t = 0; t < rule.spec.thresholds.size(); ++t) {
      const AlertThreshold& th = rule.spec.thresholds[t];
      if (th.action != AlertAction::kDowngrade || hold->downgrade_model) continue;
      if (static_cast<__int128>(committed) * 100 <
          static_cast<__int128>(rule.spec.limit_nanousd) * th.percent) {
        continue;
      }
      hold->downgrade_model = rule.downgrade_models[t];
      hold->downgrade_budget = rule.spec.id;
    }
  }

  AlertEvent Alert(size_t b, const std::string& key, size_t t, int64_t committed,
                   const WindowBounds& w, int64_t now) const {
    const BudgetSpec& spec = Spec(b);
    const AlertThreshold& th = spec.thresholds[t];
    return AlertEvent{spec.id, key, th.percent, th.level, th.action, committed,
                      spec.limit_nanousd, w, now};
  }

  Result<BudgetHold> ReserveLeased(const std::vector<std::pair<size_t, std::string>>& covering,
                                   int64_t estimate, int64_t now, bool* done);
  Result<BudgetHold> ReserveRemote(const std::vector<std::pair<size_t, std::string>>& covering,
                                   int64_t estimate, int64_t now, std::string* refused_by);
  Result<BudgetHold> ReserveLocal(const std::vector<std::pair<size_t, std::string>>& covering,
                                  int64_t estimate, std::string* refused_by);
  Result<HoldSettlement> Finish(const BudgetHold& hold, int64_t actual);
  Status FinishRemote(const BudgetHold& hold, int64_t actual, HoldSettlement* out);
  Status Sync(bool give_back);
  void Loop();
};

// --- Open / Close ---

RedisBudgets::RedisBudgets(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RedisBudgets::~RedisBudgets() { (void)Close(); }

Result<std::shared_ptr<RedisBudgets>> RedisBudgets::Open(BudgetConfig config, StoreOptions store,
                                                         Options options) {
  if (store.url.empty()) return Status::InvalidArgument("RedisBudgets: StoreOptions.url is empty");
  if (store.timeout_ns <= 0) {
    return Status::InvalidArgument(
        fmt::format("StoreOptions.timeout_ns must be > 0 (got {})", store.timeout_ns));
  }
  if (options.worker_ttl_ns < 100'000'000) {
    return Status::InvalidArgument(fmt::format(
        "RedisBudgets: worker_ttl_ns must be at least 100 ms (got {} ns)", options.worker_ttl_ns));
  }
  if (options.report_interval_ns <= 0 || options.report_interval_ns > options.worker_ttl_ns / 3) {
    return Status::InvalidArgument(fmt::format(
        "RedisBudgets: report_interval_ns must be > 0 and at most worker_ttl_ns / 3 (got {} ns)",
        options.report_interval_ns));
  }
  if (options.lease_cap_nanousd < 0 || options.lease_min_calls < 1) {
    return Status::InvalidArgument(
        "RedisBudgets: lease_cap_nanousd must be >= 0 and lease_min_calls >= 1");
  }
  if (store.degrade_to_local && store.degraded_cap_nanousd <= 0) {
    return Status::InvalidArgument(
        "StoreOptions: degrade_to_local needs degraded_cap_nanousd > 0 (the per-process cap)");
  }
  if (store.prefix.empty() || store.prefix.find_first_of("{}") != std::string::npos) {
    return Status::InvalidArgument(fmt::format(
        "StoreOptions.prefix must be non-empty, without braces (got '{}')", store.prefix));
  }
  auto endpoint = fleet::ParseRedisUrl(store.url);
  if (!endpoint.ok()) return endpoint.status();

  PrepareBudgetConfig(&config);
  auto impl = std::make_unique<Impl>();
  impl->degradation = std::make_unique<fleet::Degradation>(
      "budgets", endpoint->ToString(), [i = impl.get()] { return i->Now(); });
  impl->local = std::make_unique<BudgetLedger>(
      options.clock ? options.clock : BudgetLedger::Clock([i = impl.get()] { return i->Now(); }));
  for (const BudgetRule& rule : config.budgets) {
    BASTION_RETURN_IF_ERROR(ValidateBudgetSpec(rule.spec));
    const BudgetSpec& spec = rule.spec;
    Impl::Info in;
    in.id_part = fmt::format("{}:{}", spec.id.size(), spec.id);
    const bool hard = spec.enforcement == BudgetSpec::Enforcement::kHard;
    in.adm = hard ? std::to_string(spec.AdmissibleNanousd()) : "-1";
    in.limit = std::to_string(spec.limit_nanousd);
    int min_percent = 0;
    for (const AlertThreshold& th : spec.thresholds) {
      if (min_percent == 0 || th.percent < min_percent) min_percent = th.percent;
    }
    in.thresholds.push_back(std::to_string(min_percent));
    in.thresholds.push_back(std::to_string(spec.thresholds.size()));
    for (size_t t = 0; t < spec.thresholds.size(); ++t) {
      const AlertThreshold& th = spec.thresholds[t];
      const RateLimit& rate = rule.throttle_rates[t];
      const bool throttle = th.action == AlertAction::kThrottle && rate.count > 0;
      in.thresholds.push_back(std::to_string(th.percent));
      in.thresholds.push_back(std::to_string(th.cooldown_ns));
      in.thresholds.push_back(std::to_string(throttle ? rate.count : 0));
      in.thresholds.push_back(std::to_string(throttle ? rate.period_ns : 0));
      in.max_cooldown_ns = std::max(in.max_cooldown_ns, th.cooldown_ns);
      if (throttle && (in.min_throttle_percent == 0 || th.percent < in.min_throttle_percent)) {
        in.min_throttle_percent = th.percent;
      }
    }
    in.leasable = options.leases && hard && spec.window.kind != Window::Kind::kRolling;
    impl->info.push_back(std::move(in));
    if (store.degrade_to_local) {
      BudgetSpec capped = spec;
      capped.limit_nanousd = store.degraded_cap_nanousd;
      capped.reserve_percent = 0;
      capped.thresholds.clear();
      BASTION_RETURN_IF_ERROR(impl->local->AddBudget(capped));
    }
  }
  impl->config = std::move(config);
  impl->prefix = "{" + store.prefix + "}";
  // A name plus this process: a worker restarted under its name is a new
  // incarnation, and the holds of the one that died are reclaimed after its
  // TTL instead of being kept alive by the new one.
  impl->worker = store.worker.empty() ? DefaultWorker()
                                      : fmt::format("{}@{}", store.worker, getpid());
  impl->ttl_ms = std::to_string(MsCeil(options.worker_ttl_ns));
  impl->store = std::move(store);
  impl->options = std::move(options);

  fleet::RedisClient::Options ro;
  ro.endpoint = *endpoint;
  ro.timeout_ns = impl->store.timeout_ns;
  ro.retry_interval_ns = std::min<int64_t>(200'000'000, impl->store.timeout_ns);
  auto client = fleet::RedisClient::Connect(ro);
  Status joined;
  if (client.ok()) {
    impl->redis = std::move(*client);
    auto t = impl->redis->ServerTimeNs();
    if (t.ok()) {
      impl->offset_ns = *t - WallNowNs();
      const int64_t sent_at = SteadyNowNs();
      auto r = impl->Run(kBeatScript, impl->Args(impl->Now(), /*renew=*/true));
      joined = r.status();
      if (joined.ok()) impl->leases_valid_until = sent_at + impl->options.worker_ttl_ns / 2;
    } else {
      joined = t.status();
    }
  } else {
    joined = client.status();
  }
  if (!joined.ok()) {
    // Degraded mode starts only once this worker has met its server: it
    // needs the client to come back through.
    if (!joined.IsUnavailable() || !impl->store.degrade_to_local || !impl->redis) {
      return joined;
    }
    impl->degradation->Enter(joined);
  }
  auto out = std::shared_ptr<RedisBudgets>(new RedisBudgets(std::move(impl)));
  out->impl_->loop = std::thread([i = out->impl_.get()] { i->Loop(); });
  return out;
}

Status RedisBudgets::Close() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.loop_mu);
    if (m.closed) return Status::OK();
    m.closed = true;
    m.stopping = true;
  }
  m.loop_cv.notify_all();
  if (m.loop.joinable()) m.loop.join();
  Status s = m.Sync(/*give_back=*/true);
  if (!s.ok()) {
    // Spend this worker admitted (while degraded, or under its leases) has
    // not reached the server: the fleet cannot count it. Say so.
    return s.WithContext("closing shared budgets: spend not reported to the server");
  }
  auto r = m.Run(kLeaveScript, m.Args(m.Now()));
  if (s.ok() && !r.ok()) s = r.status();
  return s;
}

const BudgetConfig& RedisBudgets::config() const { return impl_->config; }
const std::string& RedisBudgets::worker() const { return impl_->worker; }
bool RedisBudgets::degraded() const { return impl_->degradation->degraded(); }

std::vector<std::string> RedisBudgets::CoveringBudgets(const BudgetSubject& subject) const {
  std::vector<std::string> ids;
  for (const auto& [index, key] : CoveringBudgetKeys(impl_->config, subject)) {
    const std::string& id = impl_->config.budgets[index].spec.id;
    if (ids.empty() || ids.back() != id) ids.push_back(id);
  }
  return ids;
}

Result<std::string> RedisBudgets::KeyFor(std::string_view budget_id,
                                         const BudgetSubject& subject) const {
  return BudgetKeyFor(impl_->config, budget_id, subject);
}

std::vector<StoreEvent> RedisBudgets::TakeEvents() { return impl_->degradation->Take(); }

// --- Reserve ---

Result<BudgetHold> RedisBudgets::Reserve(const BudgetSubject& subject, int64_t estimate_nanousd,
                                         std::string* refused_by) {
  Impl& m = *impl_;
  if (estimate_nanousd < 0) {
    return Status::InvalidArgument(
        fmt::format("estimate must be >= $0 (got {})", FormatUsd(estimate_nanousd)));
  }
  auto covering = CoveringBudgetKeys(m.config, subject);
  if (covering.empty()) {
    BudgetHold empty;
    empty.estimate_nanousd = estimate_nanousd;
    return empty;
  }
  if (m.degradation->degraded()) {
    return m.ReserveLocal(covering, estimate_nanousd, refused_by);
  }
  const int64_t now = m.Now();
  if (m.options.leases && !m.unreachable.load(std::memory_order_relaxed)) {
    bool done = false;
    auto hold = m.ReserveLeased(covering, estimate_nanousd, now, &done);
    if (done) return hold;
  }
  auto hold = m.ReserveRemote(covering, estimate_nanousd, now, refused_by);
  if (!hold.ok() && hold.status().IsUnavailable() && m.store.degrade_to_local) {
    m.degradation->Enter(hold.status());
    return m.ReserveLocal(covering, estimate_nanousd, refused_by);
  }
  return hold;
}

// Admits against this worker's leases when every covering key has one with
// room (and no throttle in force); *done = false leaves it to the server.
Result<BudgetHold> RedisBudgets::Impl::ReserveLeased(
    const std::vector<std::pair<size_t, std::string>>& covering, int64_t estimate, int64_t now,
    bool* done) {
  BudgetHold hold;
  if (SteadyNowNs() >= leases_valid_until.load(std::memory_order_acquire)) return hold;
  std::lock_guard lock(mu);
  Lease* found[8];
  if (covering.size() > std::size(found)) return hold;
  for (size_t i = 0; i < covering.size(); ++i) {
    const auto& [b, key] = covering[i];
    if (!info[b].leasable) return hold;
    const WindowBounds w = Spec(b).window.BoundsAt(now);
    auto it = leases.find(StateKey(b, key, w));
    if (it == leases.end()) return hold;
    Lease& l = it->second;
    if (l.left - l.held < estimate) return hold;
    const int64_t committed = l.base + l.delta + estimate;
    if (info[b].min_throttle_percent > 0 &&
        static_cast<__int128>(committed) * 100 >=
            static_cast<__int128>(Spec(b).limit_nanousd) * info[b].min_throttle_percent) {
      return hold;
    }
    found[i] = &l;
  }
  const uint64_t id = kLeaseBit | next_local++;
  hold.estimate_nanousd = estimate;
  hold.reservations.reserve(covering.size());
  for (size_t i = 0; i < covering.size(); ++i) {
    Lease& l = *found[i];
    l.held += estimate;
    l.delta += estimate;
    Reservation r;
    r.id = id;
    r.budget_id = Spec(l.budget).id;
    r.key = l.key;
    r.estimate_nanousd = estimate;
    r.reserved_at_ns = now;
    r.window = l.window;
    r.committed_nanousd = l.base + l.delta;
    r.limit_nanousd = Spec(l.budget).limit_nanousd;
    Downgrade(l.budget, r.committed_nanousd, &hold);
    hold.reservations.push_back(std::move(r));
  }
  local_holds.insert(id);
  if (!alerts.empty()) hold.alerts.swap(alerts);
  *done = true;
  return hold;
}

Result<BudgetHold> RedisBudgets::Impl::ReserveRemote(
    const std::vector<std::pair<size_t, std::string>>& covering, int64_t estimate, int64_t now,
    std::string* refused_by) {
  std::vector<std::string> args = Args(now);
  args.push_back(std::to_string(estimate));
  args.push_back(std::to_string(covering.size()));
  std::vector<WindowBounds> windows;
  windows.reserve(covering.size());
  // Lease reports ride along: what was taken from each lease goes back if
  // the script does not run.
  struct Taken {
    std::string sk;  // looked up again: a past window's lease may go meanwhile
    int64_t d, c, dh, r;
  };
  std::vector<Taken> reported;
  {
    std::lock_guard lock(mu);
    for (const auto& [b, key] : covering) {
      const WindowBounds w = Spec(b).window.BoundsAt(now);
      windows.push_back(w);
      Entry(&args, b, key, w, now);
      Remember(b, key);
      Taken t{std::string(), 0, 0, 0, 0};
      int64_t left = 0;
      if (info[b].leasable) {
        auto it = leases.find(StateKey(b, key, w));
        if (it != leases.end()) {
          Lease& l = it->second;
          // A lease too small for this call goes back, so its rest counts
          // as free on the server; nothing more is admitted under it here.
          const int64_t unused = l.left - l.held;
          t = {it->first, l.pending, l.used, l.held - l.reported_held,
               unused < estimate ? unused : 0};
          l.left -= t.r;
          l.pending = 0;
          l.used = 0;
          l.reported_held = l.held;
          left = l.left;
          reported.push_back(t);
        }
      }
      args.push_back(std::to_string(t.d));
      args.push_back(std::to_string(t.c));
      args.push_back(std::to_string(t.dh));
      args.push_back(std::to_string(t.r));
      const bool lease = info[b].leasable && options.lease_cap_nanousd - left > 0;
      const int64_t min_slice =
          std::max<int64_t>(estimate, 1) * static_cast<int64_t>(options.lease_min_calls);
      args.push_back(lease ? std::to_string(min_slice) : "0");
      args.push_back(std::to_string(std::max<int64_t>(options.lease_cap_nanousd - left, 0)));
    }
  }
  auto reply = Run(kReserveScript, args);
  if (!reply.ok()) {
    std::lock_guard lock(mu);
    for (const Taken& t : reported) {
      auto it = leases.find(t.sk);
      if (it == leases.end()) continue;
      it->second.pending += t.d;
      it->second.used += t.c;
      it->second.reported_held -= t.dh;
      it->second.left += t.r;
    }
    return reply.status();
  }
  const auto& el = reply->elements;
  if (reply->type != RedisReply::Type::kArray || el.size() < 2) {
    return Status::Internal(fmt::format("{}: the reserve script gave an unexpected reply",
                                        redis->where()));
  }
  if (Int(el[0]) == 0) {
    const size_t k = static_cast<size_t>(Int(el[1])) - 1;
    if (el.size() < 7 || k >= covering.size()) {
      return Status::Internal(fmt::format("{}: the reserve script gave an unexpected refusal",
                                          redis->where()));
    }
    const auto& [b, key] = covering[k];
    const BudgetRule& rule = config.budgets[b];
    if (refused_by != nullptr) *refused_by = rule.spec.id;
    if (Int(el[2]) == 2) {
      const size_t t = static_cast<size_t>(Int(el[6]));
      return Status::FailedPrecondition(fmt::format(
          "budget '{}' key '{}' is throttled to {} above {}% of its limit", rule.spec.id, key,
          rule.throttle_rates[t].ToString(), rule.spec.thresholds[t].percent));
    }
    return Status::FailedPrecondition(fmt::format(
        "budget '{}' key '{}' window {}: estimate {} refused: spent {} + reserved {} + leased {} + "
        "estimate would exceed admissible {} (limit {}, reserve {}%)",
        rule.spec.id, key, DescribeWindow(rule.spec.window, windows[k]), FormatUsd(estimate),
        FormatUsd(Int(el[3])), FormatUsd(Int(el[4])), FormatUsd(Int(el[5])),
        FormatUsd(rule.spec.AdmissibleNanousd()), FormatUsd(rule.spec.limit_nanousd),
        rule.spec.reserve_percent));
  }
  BudgetHold hold;
  hold.estimate_nanousd = estimate;
  const uint64_t id = static_cast<uint64_t>(Int(el[1]));
  std::lock_guard lock(mu);
  for (size_t k = 0; k < covering.size() && k + 2 < el.size(); ++k) {
    const auto& [b, key] = covering[k];
    const auto& e = el[k + 2].elements;
    const int64_t committed = e.empty() ? 0 : Int(e[0]);
    const int64_t granted = e.size() > 1 ? Int(e[1]) : 0;
    Reservation r;
    r.id = id;
    r.budget_id = Spec(b).id;
    r.key = key;
    r.estimate_nanousd = estimate;
    r.reserved_at_ns = now;
    r.window = windows[k];
    r.committed_nanousd = committed;
    r.limit_nanousd = Spec(b).limit_nanousd;
    for (size_t f = 2; f < e.size(); ++f) {
      r.alerts.push_back(Alert(b, key, static_cast<size_t>(Int(e[f])), committed, windows[k], now));
    }
    if (granted > 0 || info[b].leasable) {
      const std::string sk = StateKey(b, key, windows[k]);
      auto it = leases.find(sk);
      if (granted > 0 && it == leases.end()) {
        Lease l;
        l.budget = b;
        l.key = key;
        l.window = windows[k];
        it = leases.emplace(sk, std::move(l)).first;
      }
      if (it != leases.end()) {
        it->second.left += granted;
        it->second.base = committed;
        it->second.delta = 0;
      }
    }
    Downgrade(b, committed, &hold);
    hold.alerts.insert(hold.alerts.end(), r.alerts.begin(), r.alerts.end());
    hold.reservations.push_back(std::move(r));
  }
  if (!alerts.empty()) {
    hold.alerts.insert(hold.alerts.end(), alerts.begin(), alerts.end());
    alerts.clear();
  }
  return hold;
}

// While degraded: in-process, against degraded_cap_nanousd per key.
Result<BudgetHold> RedisBudgets::Impl::ReserveLocal(
    const std::vector<std::pair<size_t, std::string>>& covering, int64_t estimate,
    std::string* refused_by) {
  BudgetHold hold;
  hold.estimate_nanousd = estimate;
  for (const auto& [b, key] : covering) {
    auto r = local->Reserve(Spec(b).id, key, estimate);
    if (!r.ok()) {
      for (const Reservation& done : hold.reservations) {
        Reservation back = done;
        back.id &= ~kLocalBit;
        (void)local->Release(back);
      }
      if (refused_by != nullptr && r.status().IsFailedPrecondition()) *refused_by = Spec(b).id;
      if (!r.status().IsFailedPrecondition()) return r.status();
      return Status::FailedPrecondition(
          fmt::format("{} (admitting in-process: {} is unreachable)", r.status().message(),
                      redis->where()));
    }
    r->id |= kLocalBit;
    r->limit_nanousd = Spec(b).limit_nanousd;
    hold.reservations.push_back(std::move(*r));
  }
  return hold;
}

// --- Settle / Release ---

Result<HoldSettlement> RedisBudgets::Settle(const BudgetHold& hold, int64_t actual_nanousd) {
  if (actual_nanousd < 0) {
    return Status::InvalidArgument(
        fmt::format("actual cost must be >= $0 (got {})", FormatUsd(actual_nanousd)));
  }
  return impl_->Finish(hold, actual_nanousd);
}

Status RedisBudgets::Release(const BudgetHold& hold) { return impl_->Finish(hold, -1).status(); }

Result<HoldSettlement> RedisBudgets::Impl::Finish(const BudgetHold& hold, int64_t actual) {
  HoldSettlement out;
  out.actual_nanousd = std::max<int64_t>(actual, 0);
  if (hold.reservations.empty()) return out;
  const uint64_t id = hold.reservations.front().id;
  for (const Reservation& r : hold.reservations) {
    if (actual > r.estimate_nanousd) {
      out.overshoot_nanousd = std::max(out.overshoot_nanousd, actual - r.estimate_nanousd);
    }
  }
  if (id & kLeaseBit) {
    std::lock_guard lock(mu);
    if (local_holds.erase(id) == 0) {
      return Status::FailedPrecondition(fmt::format(
          "budget '{}': hold {} is not outstanding (already settled or released)",
          hold.reservations.front().budget_id, id & ~kLeaseBit));
    }
    for (const Reservation& r : hold.reservations) {
      auto b = BudgetIndexOf(config, r.budget_id);
      if (!b.ok()) continue;
      auto it = leases.find(StateKey(*b, r.key, r.window));
      if (it == leases.end()) continue;
      Lease& l = it->second;
      l.held -= r.estimate_nanousd;
      l.delta -= r.estimate_nanousd;
      if (actual >= 0) {
        // The slice covers the estimate; an overshoot is spend beyond it.
        const int64_t use = std::min(actual, r.estimate_nanousd);
        l.left -= use;
        l.used += use;
        l.pending += actual;
        l.delta += actual;
      }
    }
    if (!alerts.empty()) out.alerts.swap(alerts);
    return out;
  }
  if (id & kLocalBit) {
    Status first;
    for (const Reservation& r : hold.reservations) {
      Reservation mine = r;
      mine.id &= ~kLocalBit;
      if (actual < 0) {
        if (Status s = local->Release(mine); !s.ok() && first.ok()) first = s;
        continue;
      }
      auto s = local->Settle(mine, actual);
      if (!s.ok()) {
        if (first.ok()) first = s.status();
        continue;
      }
      auto b = BudgetIndexOf(config, r.budget_id);
      if (!b.ok()) continue;
      std::lock_guard lock(mu);
      Owed& o = owed[StateKey(*b, r.key, r.window)];
      o.budget = *b;
      o.key = r.key;
      o.window = r.window;
      o.amount += actual;
    }
    if (!first.ok()) return first;
    return out;
  }
  Status s = FinishRemote(hold, actual, &out);
  if (s.IsUnavailable()) {
    // Applied when the server is back; the money stays held until then.
    std::lock_guard lock(mu);
    deferred.push_back({hold, actual});
    return out;
  }
  if (!s.ok()) return s;
  return out;
}

Status RedisBudgets::Impl::FinishRemote(const BudgetHold& hold, int64_t actual,
                                        HoldSettlement* out) {
  const Reservation& first = hold.reservations.front();
  const int64_t now = Now();
  std::vector<std::string> args = Args(now);
  args.push_back(std::to_string(first.id));
  args.push_back(std::to_string(actual));
  args.push_back(std::to_string(hold.reservations.size()));
  std::vector<size_t> budgets;
  for (const Reservation& r : hold.reservations) {
    auto b = BudgetIndexOf(config, r.budget_id);
    if (!b.ok()) return b.status();
    budgets.push_back(*b);
    Entry(&args, *b, r.key, r.window, now);
  }
  auto reply = Run(kFinishScript, args);
  if (!reply.ok()) return reply.status();
  const auto& el = reply->elements;
  if (el.empty() || Int(el[0]) == 0) {
    return Status::FailedPrecondition(fmt::format(
        "budget '{}': hold {} is not outstanding (already settled or released, or reclaimed "
        "when this worker was taken for dead)",
        first.budget_id, first.id));
  }
  for (size_t k = 0; k < hold.reservations.size() && k + 1 < el.size(); ++k) {
    const Reservation& r = hold.reservations[k];
    const size_t b = budgets[k];
    const WindowBounds w = Spec(b).window.kind == Window::Kind::kRolling
                               ? Spec(b).window.BoundsAt(now)
                               : r.window;
    for (const RedisReply& f : el[k + 1].elements) {
      out->alerts.push_back(Alert(b, r.key, static_cast<size_t>(Int(f)),
                                  r.committed_nanousd - r.estimate_nanousd + actual, w, now));
    }
  }
  std::lock_guard lock(mu);
  if (!alerts.empty()) {
    out->alerts.insert(out->alerts.end(), alerts.begin(), alerts.end());
    alerts.clear();
  }
  return Status::OK();
}

// --- reports, the background thread ---

// Reports spend and holds under leases and spend admitted while degraded,
// collects the alerts they fire, and gives back leases whose window is over
// (all of them with give_back); then retries deferred settles.
Status RedisBudgets::Impl::Sync(bool give_back) {
  const int64_t sent_at = SteadyNowNs();
  // Silent too long: the server may have reclaimed the leases; give back
  // everything not held, and admit under none until this report is through.
  if (sent_at >= leases_valid_until.load(std::memory_order_acquire)) give_back = true;
  const int64_t now = Now();
  std::vector<std::string> args = Args(now, /*renew=*/true);
  args.push_back("");
  struct Sent {
    std::string sk;
    size_t budget;
    std::string key;
    WindowBounds window;
    int64_t d, c, dh, r, delta;
    bool lease, over;
  };
  std::vector<Sent> sent;
  std::vector<Deferred> retry;
  {
    std::lock_guard lock(mu);
    retry.swap(deferred);
    for (auto& [sk, l] : leases) {
      const bool over = Spec(l.budget).window.kind != Window::Kind::kPerRun &&
                        l.window.end_ns <= now && l.held == 0;
      const int64_t r = give_back || over ? l.left - l.held : 0;
      if (l.pending == 0 && l.held == l.reported_held && r == 0) continue;
      Entry(&args, l.budget, l.key, l.window, now);
      Sent one{sk, l.budget, l.key, l.window, l.pending, l.used, l.held - l.reported_held,
               r, l.delta, true, over};
      for (int64_t v : {one.d, one.c, one.dh, one.r}) args.push_back(std::to_string(v));
      sent.push_back(std::move(one));
      l.left -= r;  // nothing more is admitted under what goes back
      l.pending = 0;
      l.used = 0;
      l.reported_held = l.held;
    }
    for (auto& [sk, o] : owed) {
      if (o.amount == 0) continue;
      auto lease = leases.find(sk);
      if (lease != leases.end()) {  // reported with the lease's numbers
        lease->second.pending += o.amount;
        o.amount = 0;
        continue;
      }
      Entry(&args, o.budget, o.key, o.window, now);
      sent.push_back({sk, o.budget, o.key, o.window, o.amount, 0, 0, 0, 0, false, false});
      args.push_back(std::to_string(o.amount));  // spent; no lease to report on
      for (const char* v : {"0", "0", "0"}) args.push_back(v);
      o.amount = 0;
    }
    std::erase_if(owed, [](const auto& kv) { return kv.second.amount == 0; });
  }
  args[4] = std::to_string(sent.size());
  auto reply = Run(kSyncScript, args);
  if (!reply.ok()) {
    std::lock_guard lock(mu);
    for (const Sent& s : sent) {
      if (s.lease) {
        auto it = leases.find(s.sk);
        if (it == leases.end()) continue;
        it->second.pending += s.d;
        it->second.used += s.c;
        it->second.reported_held -= s.dh;
        it->second.left += s.r;
      } else {
        Owed& o = owed[s.sk];
        o.budget = s.budget;
        o.key = s.key;
        o.window = s.window;
        o.amount += s.d;
      }
    }
    deferred.insert(deferred.begin(), retry.begin(), retry.end());
    return reply.status();
  }
  leases_valid_until.store(sent_at + options.worker_ttl_ns / 2, std::memory_order_release);
  {
    std::lock_guard lock(mu);
    for (size_t k = 0; k < sent.size() && k < reply->elements.size(); ++k) {
      const Sent& s = sent[k];
      const auto& e = reply->elements[k].elements;
      const int64_t committed = e.empty() ? 0 : Int(e[0]);
      for (size_t f = 1; f < e.size(); ++f) {
        alerts.push_back(
            Alert(s.budget, s.key, static_cast<size_t>(Int(e[f])), committed, s.window, now));
      }
      if (!s.lease) continue;
      auto it = leases.find(s.sk);
      if (it == leases.end()) continue;
      Lease& l = it->second;
      l.base = committed;
      l.delta -= s.delta;
      // A past window's lease, all given back: nothing can use it again.
      if (s.over && l.held == 0 && l.pending == 0 && l.left == 0) leases.erase(it);
    }
  }
  for (size_t i = 0; i < retry.size(); ++i) {
    HoldSettlement ignored;
    Status s = FinishRemote(retry[i].hold, retry[i].actual, &ignored);
    if (s.IsUnavailable()) {
      std::lock_guard lock(mu);
      deferred.insert(deferred.end(), retry.begin() + static_cast<long>(i), retry.end());
      return s;
    }
    // FailedPrecondition: the hold was reclaimed meanwhile; nothing to do.
  }
  return Status::OK();
}

void RedisBudgets::Impl::Loop() {
  using Clock = std::chrono::steady_clock;
  auto next_time = Clock::now() + std::chrono::seconds(1);
  std::unique_lock lock(loop_mu);
  while (!stopping) {
    loop_cv.wait_for(lock, std::chrono::nanoseconds(options.report_interval_ns),
                     [&] { return stopping; });
    if (stopping) break;
    lock.unlock();
    if (degradation->degraded()) {
      if (redis->Command({"PING"}).ok()) degradation->Leave();
    }
    if (!degradation->degraded()) {
      if (Clock::now() >= next_time) {
        if (auto t = redis->ServerTimeNs(); t.ok()) offset_ns = *t - WallNowNs();
        next_time = Clock::now() + std::chrono::seconds(1);
      }
      // Every round renews this worker's liveness and reports its leases.
      Status s = Sync(false);
      if (s.IsUnavailable() && store.degrade_to_local) degradation->Enter(s);
    }
    lock.lock();
  }
}

Status RedisBudgets::Flush() { return impl_->Sync(false); }

// --- usage ---

Result<BudgetUsage> RedisBudgets::UsageOf(std::string_view budget_id, std::string_view key) {
  Impl& m = *impl_;
  auto b = BudgetIndexOf(m.config, budget_id);
  if (!b.ok()) return b.status();
  const BudgetSpec& spec = m.Spec(*b);
  std::string k;
  if (spec.scope.kind == Scope::Kind::kGlobal) {
    k.clear();
  } else if (!spec.scope.key.empty()) {
    if (!key.empty() && key != spec.scope.key) {
      return Status::InvalidArgument(fmt::format("budget '{}' covers only key '{}', not '{}'",
                                                 spec.id, spec.scope.key, key));
    }
    k = spec.scope.key;
  } else {
    k = std::string(key);
  }
  (void)m.Sync(false);
  const int64_t now = m.Now();
  const WindowBounds w = spec.window.BoundsAt(now);
  std::vector<std::string> args = m.Args(now, /*renew=*/true);
  m.Entry(&args, *b, k, w, now);
  auto reply = m.Run(kUsageScript, args);
  if (!reply.ok()) return reply.status();
  const auto& el = reply->elements;
  if (el.size() != 4) {
    return Status::Internal(fmt::format("{}: the usage script gave an unexpected reply",
                                        m.redis->where()));
  }
  BudgetUsage u;
  u.budget_id = spec.id;
  u.key = k;
  u.window = DescribeWindow(spec.window, w);
  u.window_start_ns = w.start_ns;
  u.window_end_ns = w.end_ns;
  u.limit_nanousd = spec.limit_nanousd;
  u.admissible_nanousd = spec.AdmissibleNanousd();
  u.spent_nanousd = Int(el[0]);
  u.reserved_nanousd = Int(el[1]) + Int(el[3]);
  const __int128 left =
      static_cast<__int128>(u.admissible_nanousd) - Int(el[0]) - Int(el[1]) - Int(el[2]);
  u.remaining_nanousd = static_cast<int64_t>(left < 0 ? 0 : left);
  u.hard = spec.enforcement == BudgetSpec::Enforcement::kHard;
  return u;
}

Result<std::vector<BudgetUsage>> RedisBudgets::Usage() {
  Impl& m = *impl_;
  std::vector<std::pair<size_t, std::string>> keys;
  {
    std::lock_guard lock(m.mu);
    keys = m.seen;
  }
  for (size_t b = 0; b < m.config.budgets.size(); ++b) {
    const Scope& scope = m.Spec(b).scope;
    if (scope.kind == Scope::Kind::kGlobal) keys.emplace_back(b, "");
    if (!scope.key.empty()) keys.emplace_back(b, scope.key);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::vector<BudgetUsage> out;
  for (const auto& [b, key] : keys) {
    auto u = UsageOf(m.Spec(b).id, key);
    if (!u.ok()) return u.status();
    out.push_back(std::move(*u));
  }
  return out;
}

}  // namespace bastion
