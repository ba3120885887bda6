// Budget and SLO benchmarks. Each one times Bastion and an in-run baseline in
// alternating rounds of the same process and reports both medians and their
// ratio as counters, so the figures survive a noisy machine:
//   - BM_ReserveSettle: Reserve + Settle on one BudgetLedger budget (daily
//     window at +09:00, per-user scope, 3 thresholds), one thread, against a
//     std::mutex-guarded unordered_map<string, int64_t> updated twice per pair
//     (what a naive "add the estimate, then correct it" counter costs);
//   - BM_ReserveSettleContended: 8 threads on ONE budget and key, total pairs
//     per second, against 8 threads doing the baseline above on one shared map;
//   - BM_SloRecord: ErrorBudget::Record + LatencySketch::Add for one event,
//     against a std::mutex lock/unlock around a counter increment;
//   - BM_BudgetSetHoldSavedEverySecond: BudgetSet Reserve + Settle with a
//     state directory and the default flush interval, against the same in memory;
//   - BM_BudgetSetHoldWriteThrough: the same with flush interval 0 (a synced
//     write per Reserve and per Settle), against the default interval.
//
//   build/bench/bench/budget_bench --benchmark_counters_tabular=true \
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bastion/budget.h"
#include "bastion/budget_set.h"
#include "bastion/slo.h"
#include "bastion/slo_monitor.h"

namespace bastion {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kBudgetId = "support-daily";
constexpr std::string_view kUser = "alice";
constexpr int64_t kEstimate = 1'000;  // nUSD
constexpr int64_t kActual = 900;

// A budget that never refuses nor fires during a run ($1M a day), so every
// pair takes the common path: admitted, settled, nothing to report.
std::unique_ptr<BudgetLedger> MakeLedger() {
  auto ledger = std::make_unique<BudgetLedger>();
  BudgetSpec spec;
  spec.id = std::string(kBudgetId);
  spec.scope = {Scope::Kind::kUser, ""};
  spec.limit_nanousd = 1'000'000LL * 1'000'000'000;
  spec.window = Window::Daily(FixedOffset::Hours(9));
  spec.reserve_percent = 10;
  spec.thresholds = {{50, AlertLevel::kInfo, AlertAction::kLog, 0},
                     {80, AlertLevel::kWarning, AlertAction::kNotify, 0},
                     {100, AlertLevel::kCritical, AlertAction::kHalt, 0}};
  if (Status s = ledger->AddBudget(spec); !s.ok()) {
    fprintf(stderr, "%s\n", s.ToString().c_str());
    std::abort();
  }
  return ledger;
}

// One Reserve + Settle; false when either failed (a benchmark bug).
bool ReserveSettle(BudgetLedger& ledger) {
  Result<Reservation> r = ledger.Reserve(kBudgetId, kUser, kEstimate);
  if (!r.ok()) return false;
  return ledger.Settle(*r, kActual).ok();
}

// The baseline counter: what Reserve + Settle would cost if a budget were just
// a locked map from key to spend.
struct MutexMap {
  std::mutex mu;
  std::unordered_map<std::string, int64_t> spent;

  void Pair() {
    {
      std::lock_guard lock(mu);
      spent[std::string(kUser)] += kEstimate;
    }
    {
      std::lock_guard lock(mu);
      spent[std::string(kUser)] += kActual - kEstimate;
    }
  }
};

// Nanoseconds per call of `fn`, over one batch of `n` calls.
template <typename F>
double NsPerCall(F&& fn, int n) {
  const auto start = SteadyClock::now();
  for (int i = 0; i < n; ++i) fn();
  return std::chrono::duration<double, std::nano>(SteadyClock::now() - start).count() / n;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Alternates `rounds` batches of `subject` and `baseline`, so both see the same
// machine, and reports the median ns per call of each and their ratio. The
// reported time of the iteration is the subject's median.
template <typename S, typename B>
void CompareLatency(benchmark::State& state, S&& subject, B&& baseline, int batch, int rounds,
                    double bar_ns) {
  double subject_ns = 0, baseline_ns = 0;
  for (auto _ : state) {
    std::vector<double> s, b;
    for (int r = 0; r < rounds; ++r) {
      s.push_back(NsPerCall(subject, batch));
      b.push_back(NsPerCall(baseline, batch));
    }
    subject_ns = Median(s);
    baseline_ns = Median(b);
    state.SetIterationTime(subject_ns * 1e-9);
  }
  state.counters["bastion_ns"] = subject_ns;
  state.counters["baseline_ns"] = baseline_ns;
  state.counters["ratio"] = subject_ns / baseline_ns;
  state.counters["bar_ns"] = bar_ns;
  state.counters["pass"] = subject_ns < bar_ns ? 1 : 0;
}

void BM_ReserveSettle(benchmark::State& state) {
  std::unique_ptr<BudgetLedger> ledger = MakeLedger();
  MutexMap baseline;
  bool ok = true;
  for (int i = 0; i < 1000; ++i) {  // warm the maps and the allocator
    ok = ok && ReserveSettle(*ledger);
    baseline.Pair();
  }
  if (!ok) {
    state.SkipWithError("Reserve/Settle failed");
    return;
  }
  CompareLatency(
      state, [&] { benchmark::DoNotOptimize(ReserveSettle(*ledger)); },
      [&] { baseline.Pair(); }, 20'000, 31, 1'000);
}
BENCHMARK(BM_ReserveSettle)->Iterations(1)->UseManualTime()->Unit(benchmark::kNanosecond);

// Calls per second of `op` run by `threads` threads at once for `seconds`.
template <typename F>
double Rate(int threads, double seconds, F&& op) {
  std::atomic<bool> go{false}, stop{false};
  std::atomic<int> ready{0};
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        op();
        ++n;
      }
      total.fetch_add(n);
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  const auto start = SteadyClock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  const double elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
  return total.load() / elapsed;
}

void BM_ReserveSettleContended(benchmark::State& state) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 5;
  constexpr double kSeconds = 0.4;
  constexpr double kBar = 1'000'000;  // pairs/s, all threads together
  std::unique_ptr<BudgetLedger> ledger = MakeLedger();
  MutexMap baseline;
  std::atomic<bool> failed{false};
  double subject = 0, base = 0, single = 0;
  for (auto _ : state) {
    std::vector<double> s, b, one;
    for (int r = 0; r < kRounds; ++r) {
      s.push_back(Rate(kThreads, kSeconds, [&] {
        if (!ReserveSettle(*ledger)) failed = true;
      }));
      b.push_back(Rate(kThreads, kSeconds, [&] { baseline.Pair(); }));
      one.push_back(Rate(1, kSeconds / 2, [&] { ReserveSettle(*ledger); }));
    }
    subject = Median(s);
    base = Median(b);
    single = Median(one);
    state.SetIterationTime(1.0 / subject);  // seconds per pair, all threads together
  }
  if (failed) state.SkipWithError("Reserve/Settle failed");
  state.counters["bastion_pairs_per_s"] = subject;
  state.counters["baseline_per_s"] = base;
  state.counters["ratio"] = subject / base;
  state.counters["1_thread_pairs_per_s"] = single;
  state.counters["bar_per_s"] = kBar;
  state.counters["pass"] = subject >= kBar ? 1 : 0;
}
BENCHMARK(BM_ReserveSettleContended)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kNanosecond);

// Latencies spread over three decades, so the sketch touches many buckets
// and the branch predictor cannot learn one path.
std::vector<double> Latencies() {
  std::vector<double> v(4096);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (double& d : v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    d = 1e6 * (1 + static_cast<double>(x % 1000)) * (x % 7 == 0 ? 10 : 1);  // 1 ms .. 10 s
  }
  return v;
}

void BM_SloRecord(benchmark::State& state) {
  auto budget = ErrorBudget::Create(SloOptions{});  // 99.9% over 30 days, 1-minute buckets
  if (!budget.ok()) {
    state.SkipWithError(budget.status().ToString().c_str());
    return;
  }
  LatencySketch sketch;
  const std::vector<double> latencies = Latencies();
  size_t i = 0;
  int64_t now = 1'000 * kNsPerDay;
  // One event per simulated millisecond: a new ring bucket every 60,000
  // events; one in 128 events fails.
  auto record = [&] {
    const size_t j = i++ & (latencies.size() - 1);
    const bool success = (i & 127) != 0;
    (*budget)->Record(success, success ? std::string_view() : "timeout", now);
    sketch.Add(latencies[j]);
    now += 1'000'000;
  };
  std::mutex mu;
  uint64_t counter = 0;
  auto baseline = [&] {
    std::lock_guard lock(mu);
    ++counter;
  };
  CompareLatency(state, record, baseline, 50'000, 31, 200);
  benchmark::DoNotOptimize(counter);
  benchmark::DoNotOptimize(sketch.Quantile(0.99));
}
BENCHMARK(BM_SloRecord)->Iterations(1)->UseManualTime()->Unit(benchmark::kNanosecond);

// The SLO record path a guarded call takes: SloMonitor::Record routing one
// call (a tuple seen before) to its series, with latency, success, cost and a
// circuit breaker all kept. Evaluation is left to its own thread in real use
// (evaluate_every_ns = 0 here) so the figure is the record itself.
void BM_SloMonitorRecord(benchmark::State& state) {
  auto specs = ParseSloYaml(R"(version: 1
slos:
  - id: models
    match: {kind: model}
    group_by: [model]
    latency: {p95: 2s, p99: 5s}
    success: {target: 99.9%, window: 30d}
    cost: {max_per_request_usd: 1, per_day_usd: 100}
    circuit_breaker: {}
)",
                            "bench");
  if (!specs.ok()) {
    state.SkipWithError(specs.status().ToString().c_str());
    return;
  }
  auto clock = std::make_shared<ManualClock>(1'000 * kNsPerDay);
  SloMonitor::Options options;
  options.clock = clock;
  options.evaluate_every_ns = 0;
  auto monitor = SloMonitor::Create(*specs, options);
  if (!monitor.ok()) {
    state.SkipWithError(monitor.status().ToString().c_str());
    return;
  }
  const std::vector<double> latencies = Latencies();
  const SloCall call{"model", "support-bot", "gpt-4o", ""};
  size_t i = 0;
  auto record = [&] {
    const size_t j = i++ & (latencies.size() - 1);
    SloOutcome o;
    o.success = (i & 127) != 0;
    o.error_class = o.success ? std::string_view() : "timeout";
    o.latency_ns = static_cast<int64_t>(latencies[j]);
    o.cost_nanousd = 1'000'000;
    benchmark::DoNotOptimize((*monitor)->Record(call, o));
    clock->Advance(1'000'000);
  };
  std::mutex mu;
  uint64_t counter = 0;
  auto baseline = [&] {
    std::lock_guard lock(mu);
    ++counter;
  };
  CompareLatency(state, record, baseline, 50'000, 31, 200);
  benchmark::DoNotOptimize(counter);
}
BENCHMARK(BM_SloMonitorRecord)->Iterations(1)->UseManualTime()->Unit(benchmark::kNanosecond);

// The configured budget path: BudgetSet::Reserve + Settle of a call covered by
// two budgets (per user and per tenant), matched by glob, all or nothing.
void BM_BudgetSetHold(benchmark::State& state) {
  auto config = ParseBudgetYaml(R"(version: 1
budgets:
  - id: per-user
    scope: user
    match: {agent: "support-*"}
    limit_usd: 1000000
    window: daily
    alerts: [{at: 80%, action: notify}, {at: 90%, action: downgrade, model: small}]
  - id: per-tenant
    scope: tenant
    limit_usd: 1000000
    window: monthly
)",
                                "bench");
  if (!config.ok()) {
    state.SkipWithError(config.status().ToString().c_str());
    return;
  }
  auto set = BudgetSet::Open(*config, BudgetSet::Options{});
  if (!set.ok()) {
    state.SkipWithError(set.status().ToString().c_str());
    return;
  }
  BudgetSubject who;
  who.user = "alice";
  who.tenant = "acme";
  who.agent = "support-bot";
  who.model = "gpt-4o";
  bool ok = true;
  auto hold = [&] {
    auto h = (*set)->Reserve(who, 1'000);
    ok = ok && h.ok() && (*set)->Settle(*h, 900).ok();
  };
  std::unique_ptr<BudgetLedger> ledger = MakeLedger();
  auto single = [&] { benchmark::DoNotOptimize(ReserveSettle(*ledger)); };
  CompareLatency(state, hold, single, 20'000, 31, 2'000);
  if (!ok) state.SkipWithError("Reserve/Settle failed");
}
BENCHMARK(BM_BudgetSetHold)->Iterations(1)->UseManualTime()->Unit(benchmark::kNanosecond);

// A BudgetSet whose state is saved in a fresh temporary directory, removed
// with the object.
class SavedSet {
 public:
  explicit SavedSet(int64_t flush_interval_ns) {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "bastion-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return;
    dir_ = tmpl;
    auto config = ParseBudgetYaml(
        "version: 1\nbudgets:\n  - {id: per-user, scope: user, limit_usd: 1000000, "
        "window: daily}\n",
        "bench");
    if (!config.ok()) return;
    BudgetSet::Options o;
    o.state_path = dir_ + "/state";
    o.flush_interval_ns = flush_interval_ns;
    auto set = BudgetSet::Open(*config, o);
    if (set.ok()) set_ = std::move(*set);
  }
  ~SavedSet() {
    set_.reset();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  // One Reserve + Settle; false on failure.
  bool Hold() {
    BudgetSubject who;
    who.user = "alice";
    auto h = set_->Reserve(who, 1'000);
    return h.ok() && set_->Settle(*h, 900).ok();
  }
  bool ok() const { return set_ != nullptr; }

 private:
  std::string dir_;
  std::unique_ptr<BudgetSet> set_;
};

// The default flush interval (1 s) with a state directory, against the same
// set in memory: saving in the background keeps Reserve + Settle off the disk.
void BM_BudgetSetHoldSavedEverySecond(benchmark::State& state) {
  SavedSet saved(1'000'000'000);
  auto config = ParseBudgetYaml(
      "version: 1\nbudgets:\n  - {id: per-user, scope: user, limit_usd: 1000000, "
      "window: daily}\n",
      "bench");
  auto memory = config.ok() ? BudgetSet::Open(*config, BudgetSet::Options{}) : config.status();
  if (!saved.ok() || !memory.ok()) {
    state.SkipWithError("cannot open the budget sets");
    return;
  }
  BudgetSubject who;
  who.user = "alice";
  bool ok = true;
  auto in_memory = [&] {
    auto h = (*memory)->Reserve(who, 1'000);
    ok = ok && h.ok() && (*memory)->Settle(*h, 900).ok();
  };
  CompareLatency(state, [&] { ok = saved.Hold() && ok; }, in_memory, 20'000, 31, 2'000);
  if (!ok) state.SkipWithError("Reserve/Settle failed");
}
BENCHMARK(BM_BudgetSetHoldSavedEverySecond)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kNanosecond);

// Write-through (flush interval 0): Reserve and Settle each end with a synced
// write, against the default interval. The figure is the disk's sync latency.
void BM_BudgetSetHoldWriteThrough(benchmark::State& state) {
  SavedSet through(0);
  SavedSet every_second(1'000'000'000);
  if (!through.ok() || !every_second.ok()) {
    state.SkipWithError("cannot open the budget sets");
    return;
  }
  bool ok = true;
  CompareLatency(
      state, [&] { ok = through.Hold() && ok; }, [&] { ok = every_second.Hold() && ok; }, 50, 7,
      100'000'000);
  if (!ok) state.SkipWithError("Reserve/Settle failed");
}
BENCHMARK(BM_BudgetSetHoldWriteThrough)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
