// Budgets shared on Redis (RedisBudgets) against their in-process and
// round-trip baselines, on a redis-server this benchmark starts on a free
// loopback port:
//   BM_FleetHoldLeased    Reserve + Settle admitted under a lease, vs the
//                         in-process BudgetSet (goal: ratio <= 2)
//   BM_FleetHoldNoLeases  Reserve + Settle, one script each, vs two PINGs
//                         through the same Redis client (goal: ratio <= 1.5)
// Each reports bastion_ns, baseline_ns and ratio (medians of interleaved
// rounds).
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "bastion/budget_set.h"
#include "bastion/fleet_budgets.h"
#include "bench_stats.h"
#include "fleet/redis_client.h"
#include "redis_server.h"

namespace bastion {
namespace {

using SteadyClock = std::chrono::steady_clock;

testing::RedisServer& Server() {
  static testing::RedisServer server;
  return server;
}

const char* kConfig = R"(version: 1
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
)";

BudgetSubject Who() {
  BudgetSubject who;
  who.user = "alice";
  who.tenant = "acme";
  who.agent = "support-bot";
  who.model = "gpt-4o";
  return who;
}

template <typename F>
double NsPerCall(F&& f, int batch) {
  const auto start = SteadyClock::now();
  for (int i = 0; i < batch; ++i) f();
  return std::chrono::duration<double, std::nano>(SteadyClock::now() - start).count() / batch;
}

// Interleaved rounds of the subject and its baseline; medians reported.
template <typename S, typename B>
void CompareLatency(benchmark::State& state, S&& subject, B&& baseline, int batch, int rounds,
                    double goal_ratio) {
  double subject_ns = 0, baseline_ns = 0;
  for (auto _ : state) {
    std::vector<double> s, b;
    for (int r = 0; r < rounds; ++r) {
      s.push_back(NsPerCall(subject, batch));
      b.push_back(NsPerCall(baseline, batch));
    }
    subject_ns = bench::Percentile(s, 0.5);
    baseline_ns = bench::Percentile(b, 0.5);
    state.SetIterationTime(subject_ns * 1e-9);
  }
  state.counters["bastion_ns"] = subject_ns;
  state.counters["baseline_ns"] = baseline_ns;
  state.counters["ratio"] = subject_ns / baseline_ns;
  state.counters["goal_ratio"] = goal_ratio;
  state.counters["pass"] = subject_ns / baseline_ns <= goal_ratio ? 1 : 0;
}

std::shared_ptr<RedisBudgets> OpenShared(bool leases, const std::string& worker) {
  auto config = ParseBudgetYaml(kConfig, "bench");
  if (!config.ok()) return nullptr;
  StoreOptions store;
  store.url = Server().url();
  store.worker = worker;
  RedisBudgets::Options o;
  o.leases = leases;
  o.lease_cap_nanousd = 10'000'000'000;  // $10: thousands of calls a slice
  auto b = RedisBudgets::Open(std::move(*config), store, o);
  return b.ok() ? *b : nullptr;
}

// One call's hold: Reserve + Settle on `budgets` (any BudgetBackend-like
// object); clears *ok on a failure.
template <typename Budgets>
void Hold(Budgets& budgets, const BudgetSubject& who, bool* ok) {
  auto h = budgets.Reserve(who, 1'000, nullptr);
  *ok = *ok && h.ok() && budgets.Settle(*h, 900).ok();
}

void BM_FleetHoldLeased(benchmark::State& state) {
  auto shared = OpenShared(true, "leased");
  auto config = ParseBudgetYaml(kConfig, "bench");
  auto local = BudgetSet::Open(*config, BudgetSet::Options{});
  if (!shared || !local.ok()) {
    state.SkipWithError("cannot open the budgets (is redis-server installed?)");
    return;
  }
  const BudgetSubject who = Who();
  bool ok = true;
  auto fleet = [&] { Hold(*shared, who, &ok); };
  auto in_process = [&] { Hold(**local, who, &ok); };
  for (int i = 0; i < 1000; ++i) fleet();  // takes the leases
  CompareLatency(state, fleet, in_process, 20'000, 15, 2.0);
  if (!ok) state.SkipWithError("Reserve/Settle failed");
  (void)shared->Close();
}
BENCHMARK(BM_FleetHoldLeased)->Iterations(1)->UseManualTime()->Unit(benchmark::kNanosecond);

void BM_FleetHoldNoLeases(benchmark::State& state) {
  auto shared = OpenShared(false, "direct");
  fleet::RedisClient::Options ro;
  ro.endpoint = *fleet::ParseRedisUrl(Server().url());
  auto redis = fleet::RedisClient::Connect(ro);
  if (!shared || !redis.ok()) {
    state.SkipWithError("cannot open the budgets (is redis-server installed?)");
    return;
  }
  const BudgetSubject who = Who();
  bool ok = true;
  auto fleet = [&] { Hold(*shared, who, &ok); };
  auto pings = [&] {
    ok = ok && (*redis)->Command({"PING"}).ok() && (*redis)->Command({"PING"}).ok();
  };
  for (int i = 0; i < 200; ++i) fleet();
  (void)(*redis)->Command({"CONFIG", "RESETSTAT"});
  CompareLatency(state, fleet, pings, 500, 11, 1.5);
  // How much of a script's round trip the server spends running it.
  if (auto info = (*redis)->Command({"INFO", "commandstats"}); info.ok()) {
    const std::string& text = info->str;
    const size_t at = text.find("cmdstat_evalsha:");
    const size_t per = at == std::string::npos ? at : text.find("usec_per_call=", at);
    if (per != std::string::npos) {
      state.counters["server_script_ns"] = std::atof(text.c_str() + per + 14) * 1000;
    }
  }
  if (!ok) state.SkipWithError("Reserve/Settle or PING failed");
  (void)shared->Close();
}
BENCHMARK(BM_FleetHoldNoLeases)->Iterations(1)->UseManualTime()->Unit(benchmark::kNanosecond);

}  // namespace
}  // namespace bastion

BENCHMARK_MAIN();
