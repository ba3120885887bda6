// The guarded call's lifecycle in C++: Guard::Begin + Guard::End of one
// model call with the 5-policy bundle, budget and SLO of bench/guard_config
// (as bench/guard_bench.py measures from Python), the shipped pricing, and two
// ledger records. The in-run baseline is the
// policy engine alone evaluating the same bundle's before_model and
// after_model hooks for the same call: what any Lua-policy guard pays.
//
//   build/bench/bench/guard_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bastion/guard.h"
#include "bench_stats.h"

namespace bastion {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using bench::Percentile;

constexpr char kPrompt[] = "Customer asks: where is order A-1001? It was due on Monday.";
constexpr char kAnswer[] = "Order A-1001 shipped yesterday and arrives tomorrow.";

std::unique_ptr<Guard> OpenGuard(const fs::path& ledger, Durability durability) {
  const std::string config = std::string(BASTION_SOURCE_DIR) + "/bench/guard_config";
  GuardOptions o;
  o.policy_dir = config + "/policies";
  o.pricing_files = {std::string(BASTION_SOURCE_DIR) + "/pricing/default.yaml"};
  o.budgets_file = config + "/budgets.yaml";
  o.slos_file = config + "/slos.yaml";
  o.ledger_path = ledger.string();
  o.durability = durability;
  auto g = Guard::Open(std::move(o));
  if (!g.ok()) {
    fmt::print(stderr, "{}\n", g.status().ToString());
    std::abort();
  }
  return std::move(*g);
}

CallRequest Request(int64_t step) {
  CallRequest req;
  req.call.hook = Hook::kBeforeModel;
  req.call.agent_id = "support";
  req.call.user_id = "u-1";
  req.call.run_id = "run-1";
  req.call.model = "gpt-4o";
  req.call.input = kPrompt;
  req.call.step_index = step;
  req.input_tokens = 420;
  req.max_output_tokens = 256;
  return req;
}

void BM_GuardedModelCall(benchmark::State& state, Durability durability) {
  const fs::path root = fs::temp_directory_path() / "bastion-bench-guard";
  fs::remove_all(root);
  auto guard = OpenGuard(root, durability);
  PolicyEngine* engine = guard->policies();
  CallOutcome outcome;
  outcome.output = kAnswer;
  outcome.usage = Usage{.input = 164, .cache_read = 256, .output = 36};
  outcome.latency_ns = 900'000'000;
  std::vector<double> lifecycle, baseline;
  int64_t step = 0;
  for (auto _ : state) {
    CallRequest req = Request(step++);
    CallInfo before = req.call;
    auto t0 = Clock::now();
    auto begun = guard->Begin(std::move(req));
    if (!begun.ok()) std::abort();
    auto ended = guard->End(begun->call_id, outcome);
    if (!ended.ok()) std::abort();
    auto t1 = Clock::now();
    Decision d1 = engine->Evaluate(before);
    before.hook = Hook::kAfterModel;
    before.output = kAnswer;
    Decision d2 = engine->Evaluate(before);
    auto t2 = Clock::now();
    benchmark::DoNotOptimize(d1);
    benchmark::DoNotOptimize(d2);
    lifecycle.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    baseline.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  if (!guard->Close().ok()) std::abort();
  fs::remove_all(root);
  state.counters["median_us"] = Percentile(lifecycle, 0.5);
  state.counters["p99_us"] = Percentile(lifecycle, 0.99);
  state.counters["policies_median_us"] = Percentile(baseline, 0.5);
  state.counters["ratio"] = Percentile(lifecycle, 0.5) / Percentile(baseline, 0.5);
}
BENCHMARK_CAPTURE(BM_GuardedModelCall, group, Durability::kGroup)
    ->Iterations(20'000)->UseRealTime();
BENCHMARK_CAPTURE(BM_GuardedModelCall, async, Durability::kAsync)
    ->Iterations(20'000)->UseRealTime();

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
