// The guarded call's lifecycle in C++, each case against an in-run baseline:
//
// BM_GuardedModelCall: Guard::Begin + Guard::End of one model call with the
// 5-policy bundle, budget and SLO of bench/guard_config (as
// bench/guard_bench.py measures from Python), the shipped pricing, and two
// ledger records; the baseline is the policy engine alone evaluating the same
// bundle's before_model and after_model hooks for the same call: what any
// Lua-policy guard pays. The /stages variant times every stage
// (GuardOptions::time_stages) and reports where the call's time goes, in ns
// per call: <stage>_admit_ns, <stage>_settle_ns, and the rest of the guard.
//
// BM_DeniedWriteTool: Guard::Begin of a write-tool call the bundle denies
// (by its permissions, or by a Lua policy), under the default options, vs
// the same bundle's PolicyEngine::Evaluate of that call.
//
// BM_HighRiskToolThroughput: allowed high-risk (write) tool calls, Begin
// (whose decision record is fsynced before it returns) + End, for a second
// on one thread, then on 8: calls per second, and the ratio (concurrent
// sync appends share an fsync).
//
// BM_GuardedChunk: Guard::Chunk of one streamed chunk (a word-sized token of
// a 400-chunk answer with an e-mail address, a phone number and a card number
// in it) under the default bundle (policies/default: the PII and forbidden
// output on_chunk hooks), with the hold rule and the release; the baseline is
// the engine alone evaluating on_chunk over the same window. Streams are
// finished and ended outside the timing. The argument is chunk_context_bytes
// (512, the default; 4096, the whole window): the evaluation's cost grows
// with the window, and with the matches in it.
//
// Ledgers go to $BASTION_BENCH_DIR (default: the temp directory); fsync
// figures depend on its disk.
//
//   build/bench/bench/guard_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
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

fs::path BenchDir(const std::string& name) {
  const char* dir = std::getenv("BASTION_BENCH_DIR");
  const fs::path root = dir && *dir ? fs::path(dir) : fs::temp_directory_path();
  fs::path path = root / name;
  fs::remove_all(path);
  return path;
}

Guard* Check(Result<std::unique_ptr<Guard>>& g) {
  if (!g.ok()) {
    fmt::print(stderr, "{}\n", g.status().ToString());
    std::abort();
  }
  return g->get();
}

std::unique_ptr<Guard> OpenGuard(const fs::path& ledger, Durability durability,
                                 bool time_stages = false) {
  const std::string config = std::string(BASTION_SOURCE_DIR) + "/bench/guard_config";
  GuardOptions o;
  o.time_stages = time_stages;
  o.policy_dir = config + "/policies";
  o.pricing_files = {std::string(BASTION_SOURCE_DIR) + "/pricing/default.yaml"};
  o.budgets_file = config + "/budgets.yaml";
  o.slos_file = config + "/slos.yaml";
  o.ledger_path = ledger.string();
  o.durability = durability;
  auto g = Guard::Open(std::move(o));
  Check(g);
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

void BM_GuardedModelCall(benchmark::State& state, Durability durability, bool time_stages) {
  const fs::path root = BenchDir("bastion-bench-guard");
  auto guard = OpenGuard(root, durability, time_stages);
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
  const std::vector<StageTiming> timings = guard->StageTimings();
  if (!guard->Close().ok()) std::abort();
  fs::remove_all(root);
  state.counters["median_us"] = Percentile(lifecycle, 0.5);
  state.counters["p99_us"] = Percentile(lifecycle, 0.99);
  state.counters["policies_median_us"] = Percentile(baseline, 0.5);
  state.counters["ratio"] = Percentile(lifecycle, 0.5) / Percentile(baseline, 0.5);
  if (!time_stages) return;
  // Where the time goes, in ns per call (means over the run).
  double mean_us = 0;
  for (double v : lifecycle) mean_us += v;
  mean_us /= static_cast<double>(lifecycle.size());
  double staged_ns = 0;
  for (const StageTiming& t : timings) {
    const double ns = static_cast<double>(t.total_ns) / static_cast<double>(lifecycle.size());
    state.counters[t.stage + "_" + t.phase + "_ns"] = ns;
    staged_ns += ns;
  }
  state.counters["mean_us"] = mean_us;
  state.counters["guard_other_ns"] = mean_us * 1000 - staged_ns;
}
BENCHMARK_CAPTURE(BM_GuardedModelCall, group, Durability::kGroup, false)
    ->Iterations(20'000)->UseRealTime();
BENCHMARK_CAPTURE(BM_GuardedModelCall, async, Durability::kAsync, false)
    ->Iterations(20'000)->UseRealTime();
BENCHMARK_CAPTURE(BM_GuardedModelCall, stages, Durability::kGroup, true)
    ->Iterations(20'000)->UseRealTime();

// A tool bundle: permissions.yaml grants reads and refunds; a Lua policy
// denies writes to production tables.
fs::path WriteToolBundle(const fs::path& root) {
  const fs::path dir = root / "tool_policies";
  fs::create_directories(dir);
  std::ofstream(dir / "permissions.yaml") << R"(version: 1
agents:
  "support-*":
    tools:
      - name: lookup_order
        operations: [read]
      - name: update_table
        operations: [write]
      - name: issue_refund
        operations: [write]
)";
  std::ofstream(dir / "tables.lua") << R"(
return {
  id = "no-production-writes",
  before_tool = function(call)
    if call.operation ~= "read" and string.find(call.resource_id, "prod/", 1, true) == 1 then
      return deny("writes to production tables are not allowed")
    end
  end,
}
)";
  std::ofstream(dir / "pii.lua") << R"(
return {
  id = "pii-in-args",
  before_tool = function(call)
    local hits = pii.find(call.input, {"email", "credit_card"})
    if #hits > 0 then return redact(hits, "personal data in tool input") end
  end,
}
)";
  return dir;
}

CallRequest ToolRequest(const std::string& tool, const std::string& resource, int64_t step) {
  CallRequest req;
  req.call.hook = Hook::kBeforeTool;
  req.call.agent_id = "support-1";
  req.call.user_id = "u-1";
  req.call.run_id = "run-1";
  req.call.tool = tool;
  req.call.operation = "write";
  req.call.resource_id = resource;
  req.call.input = "set status=shipped where id=A-1001";
  req.call.step_index = step;
  return req;
}

// by_policy: the permissions grant the tool and a Lua policy denies the call;
// otherwise the permissions deny it (no grant).
void BM_DeniedWriteTool(benchmark::State& state, bool by_policy) {
  const fs::path root = BenchDir("bastion-bench-denied");
  GuardOptions o;  // the defaults: group durability, sync for high risk
  o.policy_dir = WriteToolBundle(root).string();
  o.ledger_path = (root / "ledger").string();
  auto opened = Guard::Open(std::move(o));
  Guard* guard = Check(opened);
  PolicyEngine* engine = guard->policies();
  const std::string tool = by_policy ? "update_table" : "drop_table";
  std::vector<double> denied, baseline;
  int64_t step = 0;
  for (auto _ : state) {
    CallRequest req = ToolRequest(tool, "prod/orders", step++);
    CallInfo alone = req.call;
    auto t0 = Clock::now();
    auto begun = guard->Begin(std::move(req));
    auto t1 = Clock::now();
    if (!begun.ok() || begun->decision.effect != Effect::kDeny) std::abort();
    Decision d = engine->Evaluate(alone);
    auto t2 = Clock::now();
    if (d.effect != Effect::kDeny) std::abort();
    benchmark::DoNotOptimize(d);
    denied.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    baseline.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  if (!guard->Close().ok()) std::abort();
  fs::remove_all(root);
  state.counters["median_us"] = Percentile(denied, 0.5);
  state.counters["p99_us"] = Percentile(denied, 0.99);
  state.counters["evaluate_median_us"] = Percentile(baseline, 0.5);
  state.counters["ratio"] = Percentile(denied, 0.5) / Percentile(baseline, 0.5);
}
BENCHMARK_CAPTURE(BM_DeniedWriteTool, by_permissions, false)->Iterations(20'000)->UseRealTime();
BENCHMARK_CAPTURE(BM_DeniedWriteTool, by_policy, true)->Iterations(20'000)->UseRealTime();

// Calls per second of `threads` threads for `seconds`, each call an allowed
// high-risk tool call begun and ended.
double HighRiskCallsPerSecond(Guard* guard, int threads, double seconds) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> calls{0};
  std::vector<std::thread> workers;
  const auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      CallOutcome out;
      out.output = "refunded";
      int64_t step = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        CallRequest req = ToolRequest("issue_refund", "order/A-" + std::to_string(t), step++);
        auto begun = guard->Begin(std::move(req));
        if (!begun.ok() || begun->decision.effect != Effect::kAllow) std::abort();
        if (!guard->End(begun->call_id, out).ok()) std::abort();
        calls.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& w : workers) w.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(calls.load()) / elapsed;
}

void BM_HighRiskToolThroughput(benchmark::State& state) {
  const fs::path root = BenchDir("bastion-bench-highrisk");
  GuardOptions o;
  o.policy_dir = WriteToolBundle(root).string();
  o.ledger_path = (root / "ledger").string();
  auto opened = Guard::Open(std::move(o));
  Guard* guard = Check(opened);
  double one = 0, eight = 0;
  for (auto _ : state) {
    one = HighRiskCallsPerSecond(guard, 1, 1.0);
    eight = HighRiskCallsPerSecond(guard, 8, 1.0);
  }
  if (!guard->Close().ok()) std::abort();
  fs::remove_all(root);
  state.counters["calls_per_s_1_thread"] = one;
  state.counters["calls_per_s_8_threads"] = eight;
  state.counters["ratio"] = eight / one;
}
BENCHMARK(BM_HighRiskToolThroughput)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

// A streamed answer as a model sends it: 400 word-sized chunks, each with
// the space before it.
std::vector<std::string> StreamChunks() {
  const std::string paragraph =
      "Your order A-1001 shipped yesterday and the courier will call +1 415 555 2671 "
      "before delivery. Questions? Mail support@example.com or reply here. The card "
      "4111 1111 1111 1111 was charged $42.50 on Monday, and the receipt is attached. ";
  std::vector<std::string> chunks;
  while (chunks.size() < 400) {
    size_t start = 0;
    while (start < paragraph.size() && chunks.size() < 400) {
      size_t end = paragraph.find(' ', start + 1);
      if (end == std::string::npos) end = paragraph.size();
      chunks.push_back(paragraph.substr(start, end - start));
      start = end;
    }
  }
  return chunks;
}

void BM_GuardedChunk(benchmark::State& state) {
  GuardOptions o;
  o.policy_dir = std::string(BASTION_SOURCE_DIR) + "/policies/default";
  o.chunk_context_bytes = static_cast<size_t>(state.range(0));
  const size_t context = o.chunk_context_bytes;
  auto opened = Guard::Open(std::move(o));
  Guard* guard = Check(opened);
  PolicyEngine* engine = guard->policies();
  const std::vector<std::string> chunks = StreamChunks();
  CallInfo view = Request(0).call;
  view.hook = Hook::kOnChunk;
  std::vector<double> guarded, baseline;
  uint64_t call_id = 0;
  size_t next = chunks.size();
  std::string raw;
  size_t raw_released = 0;
  for (auto _ : state) {
    if (next == chunks.size()) {
      if (call_id != 0) {
        if (!guard->FinishStream(call_id).ok() || !guard->End(call_id, {}).ok()) std::abort();
      }
      auto begun = guard->Begin(Request(0));
      if (!begun.ok() || begun->decision.effect != Effect::kAllow) std::abort();
      call_id = begun->call_id;
      next = 0;
      raw.clear();
      raw_released = 0;
    }
    const std::string& chunk = chunks[next++];
    // The window as the guard builds it (the pending text is short here).
    const size_t pending = raw.size() - raw_released;
    raw += chunk;
    const size_t seen = std::min(raw.size(), context + pending + chunk.size());
    view.chunk = raw.substr(raw.size() - seen);
    auto t0 = Clock::now();
    auto r = guard->Chunk(call_id, chunk);
    auto t1 = Clock::now();
    Decision d = engine->Evaluate(view);
    auto t2 = Clock::now();
    if (!r.ok() || r->stop) std::abort();
    raw_released = raw.size() - r->held_bytes;
    benchmark::DoNotOptimize(d);
    guarded.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    baseline.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  state.counters["median_us"] = Percentile(guarded, 0.5);
  state.counters["p99_us"] = Percentile(guarded, 0.99);
  state.counters["on_chunk_median_us"] = Percentile(baseline, 0.5);
  state.counters["added_median_us"] = Percentile(guarded, 0.5) - Percentile(baseline, 0.5);
  state.counters["ratio"] = Percentile(guarded, 0.5) / Percentile(baseline, 0.5);
}
BENCHMARK(BM_GuardedChunk)->Arg(512)->Arg(4096)->Iterations(40'000)->UseRealTime();

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
