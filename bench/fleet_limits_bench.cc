// Shared rate limits and breakers (bastion/fleet_limits.h) against their
// baselines, on a redis-server this program starts on a free loopback port:
//
// BM_RedisPing: one PING through the same pooled client: the floor of any
// shared check (a loopback round trip).
// BM_SharedAcquire/<refs>: SharedRateLimits::Acquire of 1 or 3 buckets (one
// Lua script, one round trip), never refused. BM_LocalAcquire/<refs>: the
// in-process RateLimiter doing the same.
// BM_GuardedModelCall/<store>: Guard::Begin + Guard::End of a model call under
// an SLO with a circuit breaker (closed), no ledger, no policies; store 0 =
// this process alone, 1 = the breaker shared through Redis. Admission reads
// the fleet's breakers from the local cache, so the two should be within
// noise: no round trip on a call whose breakers are closed.
//
//   build/dev/bench/fleet_limits_bench
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bastion/fleet_limits.h"
#include "bastion/guard.h"
#include "redis_server.h"

namespace bastion {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void Die(const std::string& what) {
  fmt::print(stderr, "fleet_limits_bench: {}\n", what);
  std::exit(1);
}

testing::RedisServer& TheServer() {
  static testing::RedisServer server;
  return server;
}

std::shared_ptr<SharedRateLimits> Limits() {
  FleetLimitsOptions o;
  o.store.url = TheServer().url();
  auto limits = SharedRateLimits::Open(o);
  if (!limits.ok()) Die(limits.status().ToString());
  return *limits;
}

std::vector<RateLimitRef> Refs(int n) {
  std::vector<RateLimitRef> refs;
  for (int i = 0; i < n; ++i) {
    refs.push_back({fmt::format("bench\x1fgrant{}", i), RateLimit{1'000'000, 1'000'000'000}});
  }
  return refs;
}

void BM_RedisPing(benchmark::State& state) {
  auto limits = Limits();
  for (auto _ : state) {
    if (!limits->Ping().ok()) Die("PING failed");
  }
}
BENCHMARK(BM_RedisPing);

void BM_SharedAcquire(benchmark::State& state) {
  auto limits = Limits();
  const auto refs = Refs(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto got = limits->Acquire(refs, 0);
    if (!got.ok()) Die(got.status().ToString());
    benchmark::DoNotOptimize(*got);
  }
}
BENCHMARK(BM_SharedAcquire)->Arg(1)->Arg(3);

void BM_LocalAcquire(benchmark::State& state) {
  RateLimiter limiter;
  const auto refs = Refs(static_cast<int>(state.range(0)));
  int64_t now = 0;
  for (auto _ : state) {
    now += 1000;
    benchmark::DoNotOptimize(limiter.TryAcquire(refs, now));
  }
}
BENCHMARK(BM_LocalAcquire)->Arg(1)->Arg(3);

void BM_GuardedModelCall(benchmark::State& state) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("fleet_bench_{}", getpid());
  fs::create_directories(dir);
  const fs::path slos = dir / "slos.yaml";
  std::ofstream(slos) << "version: 1\n"
                         "slos:\n"
                         "  - id: model-health\n"
                         "    match: {kind: model}\n"
                         "    group_by: [model]\n"
                         "    circuit_breaker: {failure_rate: 50%, minimum_calls: 20,\n"
                         "                      window: 100, open_for: 30s, half_open_probes: 5}\n";
  GuardOptions o;
  o.slos_file = slos.string();
  if (state.range(0) == 1) o.store.url = TheServer().url();
  auto guard = Guard::Open(o);
  if (!guard.ok()) Die(guard.status().ToString());
  CallRequest req;
  req.call.hook = Hook::kBeforeModel;
  req.call.agent_id = "bench";
  req.call.model = "gpt-4o";
  req.call.input = "hello";
  CallOutcome out;
  out.output = "hi";
  out.latency_ns = 1'000'000;
  for (auto _ : state) {
    auto begun = (*guard)->Begin(req);
    if (!begun.ok() || begun->decision.effect == Effect::kDeny) Die("the call was not admitted");
    auto ended = (*guard)->End(begun->call_id, out);
    if (!ended.ok()) Die(ended.status().ToString());
  }
  (void)(*guard)->Close();
  fs::remove_all(dir);
}
BENCHMARK(BM_GuardedModelCall)->Arg(0)->Arg(1);

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
