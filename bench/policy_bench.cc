// Policy engine benchmarks, each beside an in-run baseline:
//   - a before_tool decision by the shipped default bundle (7 policies, 4 of
//     them on before_tool, plus permissions.yaml) against one empty Lua call
//     (lua_pcall of `function() end` in a bare state);
//   - throughput with 1 and 2 threads evaluating at once.
//
//   build/bench/bench/policy_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <lua.hpp>

#include "bastion/policy.h"

namespace bastion {
namespace {

PolicyEngine& DefaultBundle() {
  static std::unique_ptr<PolicyEngine> engine = [] {
    auto e = PolicyEngine::Load(BASTION_SOURCE_DIR "/policies/default");
    if (!e.ok()) {
      fprintf(stderr, "%s\n", e.status().ToString().c_str());
      std::abort();
    }
    return std::move(*e);
  }();
  return *engine;
}

CallInfo TypicalToolCall() {
  CallInfo c;
  c.hook = Hook::kBeforeTool;
  c.agent_id = "support-bot";
  c.agent_role = "support";
  c.user_id = "u-42";
  c.tenant_id = "acme";
  // search_kb: a grant without a rate limit, so every iteration is decided
  // in full rather than refused by the limiter after the first few.
  c.tool = "search_kb";
  c.operation = "read";
  c.resource = "kb/shipping";
  c.args = Value(Value::Object{{"query", Value("where is my order")}, {"top_k", Value(5)}});
  c.run_id = "run-7";
  c.step_index = 3;
  c.run_steps = 3;
  c.run_tool_calls = 1;
  c.risk_level = "low";
  return c;
}

void BM_EmptyLuaCall(benchmark::State& state) {
  lua_State* L = luaL_newstate();
  luaL_dostring(L, "function f() end");
  lua_getglobal(L, "f");
  const int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  for (auto _ : state) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pcall(L, 0, 0, 0);
  }
  lua_close(L);
}
BENCHMARK(BM_EmptyLuaCall);

void BM_BeforeToolDefaultBundle(benchmark::State& state) {
  PolicyEngine& engine = DefaultBundle();
  const CallInfo call = TypicalToolCall();
  if (engine.Evaluate(call).effect != Effect::kAllow) {
    state.SkipWithError("the typical call should be allowed");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(engine.Evaluate(call));
}
BENCHMARK(BM_BeforeToolDefaultBundle);

// Decisions per second with `threads` threads for a fixed time, and the
// ratio to one thread measured in the same run.
double Throughput(int threads, double seconds) {
  PolicyEngine& engine = DefaultBundle();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      const CallInfo call = TypicalToolCall();
      engine.Evaluate(call);  // build this thread's state outside the timing
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        benchmark::DoNotOptimize(engine.Evaluate(call));
        ++n;
      }
      total.fetch_add(n);
    });
  }
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  return total.load() / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void BM_ThreadScaling(benchmark::State& state) {
  double one = 0, two = 0;
  for (auto _ : state) {
    one = Throughput(1, 1.5);
    two = Throughput(2, 1.5);
  }
  state.counters["1_thread_per_s"] = one;
  state.counters["2_threads_per_s"] = two;
  state.counters["ratio"] = two / one;
}
BENCHMARK(BM_ThreadScaling)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
