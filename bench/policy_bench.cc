// Policy engine benchmarks, each beside an in-run baseline:
//   - a before_tool decision by the shipped default bundle (7 policies, 4 of
//     them on before_tool, plus permissions.yaml) against one empty Lua call
//     (lua_pcall of `function() end` in a bare state);
//   - throughput with 1 and 2 threads evaluating at once;
//   - string.find with typical guardrail patterns over a 2 KB prompt: the
//     stock function against the sandbox's step-counted one, in one state,
//     and inside a policy evaluation.
//
//   build/bench/bench/policy_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include <time.h>

#include <fmt/format.h>
#include <lua.hpp>

#include "bastion/policy.h"
#include "policy/lua_patterns.h"

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
  c.resource_id = "kb/shipping";
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

// A 2 KB prompt with numbers and punctuation, and no match for the patterns.
std::string Prompt() {
  std::string s;
  while (s.size() < 2048) {
    s += "Order 4821 shipped on 2024-03-07 to 12 Main St. (ref: AB-77); call 555 0100 or "
         "write to support at example dot com. ";
  }
  return s;
}

// Typical guardrail patterns: a US SSN, an e-mail address, a card number.
const char* const kGuardrailPatterns[] = {
    "(%d%d%d)%-(%d%d)%-(%d%d%d%d)",
    "[%w%.%_%-]+@[%w%-]+%.[%a%.]+",
    "%f[%d]%d%d%d%d[ %-]?%d%d%d%d[ %-]?%d%d%d%d[ %-]?%d%d%d%d%f[%D]",
};

int64_t g_charged = 0;

// A plain state: the stock string.find, and ours as ours.find.
lua_State* PatternState() {
  lua_State* L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  policy::InstallPatternFunctions(L, -1, [](lua_State*, int64_t steps) { g_charged += steps; });
  lua_setglobal(L, "ours");
  return L;
}

// CPU seconds per call of `lib`.find ("string" or "ours") over the prompt,
// each guardrail pattern in turn.
double FindSeconds(lua_State* L, const char* lib, int rounds) {
  const std::string prompt = Prompt();
  lua_pushlstring(L, prompt.data(), prompt.size());
  lua_setglobal(L, "prompt");
  std::string code = fmt::format(
      "local find, prompt = {}.find, prompt local pats = {{...}} "
      "for i = 1, {} do for _, p in ipairs(pats) do if find(prompt, p) then error('match') end "
      "end end",
      lib, rounds);
  luaL_loadstring(L, code.c_str());
  for (const char* p : kGuardrailPatterns) lua_pushstring(L, p);
  // CPU time of this thread: the machine may be busy with other work.
  auto now = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  };
  const double start = now();
  if (lua_pcall(L, std::size(kGuardrailPatterns), 0, 0) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    std::abort();
  }
  return (now() - start) / (rounds * std::size(kGuardrailPatterns));
}

// Both in one run, alternating, and their ratio (sandboxed / stock).
void BM_GuardrailFindRatio(benchmark::State& state) {
  lua_State* L = PatternState();
  double stock = 1e9, ours = 1e9;
  for (auto _ : state) {
    for (int i = 0; i < 5; ++i) {
      stock = std::min(stock, FindSeconds(L, "string", 200));
      g_charged = 0;
      ours = std::min(ours, FindSeconds(L, "ours", 200));
    }
  }
  state.counters["steps_per_find"] = g_charged / (200.0 * std::size(kGuardrailPatterns));
  lua_close(L);
  state.counters["stock_us"] = stock * 1e6;
  state.counters["sandboxed_us"] = ours * 1e6;
  state.counters["ratio"] = ours / stock;
}
BENCHMARK(BM_GuardrailFindRatio)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same three finds inside a before_model evaluation (the sandbox's
// string.find, charged to the policy's instruction budget).
void BM_GuardrailFindInPolicy(benchmark::State& state) {
  auto engine = PolicyEngine::FromSources({{"g.lua", R"lua(
    local pats = {
      "(%d%d%d)%-(%d%d)%-(%d%d%d%d)",
      "[%w%.%_%-]+@[%w%-]+%.[%a%.]+",
      "%f[%d]%d%d%d%d[ %-]?%d%d%d%d[ %-]?%d%d%d%d[ %-]?%d%d%d%d%f[%D]",
    }
    return { id = 'g', before_model = function(call, input)
      local text = input.text
      for _, p in ipairs(pats) do
        if string.find(text, p) then return deny('matched ' .. p) end
      end
    end })lua"}});
  if (!engine.ok()) {
    state.SkipWithError(engine.status().ToString().c_str());
    return;
  }
  CallInfo call;
  call.hook = Hook::kBeforeModel;
  call.input = Prompt();
  if ((*engine)->Evaluate(call).effect != Effect::kAllow) {
    state.SkipWithError("the prompt should pass");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize((*engine)->Evaluate(call));
}
BENCHMARK(BM_GuardrailFindInPolicy);

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
