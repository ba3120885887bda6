// Rate limits and breakers shared through a real redis-server.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <filesystem>

#include "bastion/fleet_limits.h"
#include "bastion/guard.h"
#include "bastion/slo_monitor.h"
#include "redis_server.h"
#include "test_util.h"

namespace bastion {
namespace {

using bastion::testing::ExpectMentions;
using bastion::testing::RedisServer;
using bastion::testing::TempDir;
using bastion::testing::WriteFile;
using namespace std::chrono_literals;

constexpr int64_t kMs = 1'000'000;

FleetLimitsOptions OptionsFor(const RedisServer& server, const std::string& worker,
                              int64_t timeout_ms = 300) {
  FleetLimitsOptions o;
  o.store.url = server.url();
  o.store.timeout_ns = timeout_ms * kMs;
  o.store.worker = worker;
  o.refresh_interval_ns = 50 * kMs;
  return o;
}

std::shared_ptr<SharedRateLimits> LimitsFor(const RedisServer& server, const std::string& worker,
                                            bool degrade = false) {
  FleetLimitsOptions o = OptionsFor(server, worker);
  o.store.degrade_to_local = degrade;
  auto limits = SharedRateLimits::Open(o);
  EXPECT_TRUE(limits.ok()) << limits.status().ToString();
  return limits.ok() ? *limits : nullptr;
}

RateLimitRef Ref(std::string key, uint32_t count, int64_t period_ns) {
  return RateLimitRef{std::move(key), RateLimit{count, period_ns}};
}

TEST(SharedRateLimits, TwoWorkersShareOneBucketAndAdmitExactlyTheLimit) {
  RedisServer server;
  auto a = LimitsFor(server, "a");
  auto b = LimitsFor(server, "b");
  ASSERT_TRUE(a && b);
  const std::vector<RateLimitRef> refs = {Ref("agent\x1fgrant", 5, 60'000 * kMs)};
  std::atomic<int> admitted{0};
  auto worker = [&](SharedRateLimits* limits) {
    for (int i = 0; i < 10; ++i) {
      auto got = limits->Acquire(refs, 0);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      if (*got) admitted.fetch_add(1);
    }
  };
  std::thread ta(worker, a.get()), tb(worker, b.get());
  ta.join();
  tb.join();
  EXPECT_EQ(admitted.load(), 5);
}

TEST(SharedRateLimits, TakesEveryRefOrNone) {
  RedisServer server;
  auto limits = LimitsFor(server, "a");
  ASSERT_TRUE(limits);
  const int64_t minute = 60'000 * kMs;
  const std::vector<RateLimitRef> both = {Ref("b", 3, minute), Ref("a", 1, minute)};
  auto got = limits->Acquire(both, 0);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got);
  size_t refused = 99;
  got = limits->Acquire(both, 0, &refused);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got);
  EXPECT_EQ(refused, 1u) << "'a' has no token left";
  // The refused call took nothing from 'b': two of its three tokens are left.
  const std::vector<RateLimitRef> b_only = {Ref("b", 3, minute)};
  EXPECT_TRUE(*limits->Acquire(b_only, 0));
  EXPECT_TRUE(*limits->Acquire(b_only, 0));
  EXPECT_FALSE(*limits->Acquire(b_only, 0));
}

TEST(SharedRateLimits, AKeyListedTwiceNeedsTwoTokens) {
  RedisServer server;
  auto limits = LimitsFor(server, "a");
  ASSERT_TRUE(limits);
  const std::vector<RateLimitRef> twice = {Ref("k", 3, 60'000 * kMs), Ref("k", 3, 60'000 * kMs)};
  EXPECT_TRUE(*limits->Acquire(twice, 0));
  EXPECT_FALSE(*limits->Acquire(twice, 0));  // one token left
  EXPECT_TRUE(*limits->Acquire({Ref("k", 3, 60'000 * kMs)}, 0));
}

TEST(SharedRateLimits, RefillsOnTheServersClock) {
  RedisServer server;
  auto limits = LimitsFor(server, "a");
  ASSERT_TRUE(limits);
  const std::vector<RateLimitRef> refs = {Ref("fast", 2, 200 * kMs)};  // 10/s
  EXPECT_TRUE(*limits->Acquire(refs, 0));
  EXPECT_TRUE(*limits->Acquire(refs, 0));
  EXPECT_FALSE(*limits->Acquire(refs, 0));
  std::this_thread::sleep_for(250ms);  // a whole period: full again
  EXPECT_TRUE(*limits->Acquire(refs, 0));
  EXPECT_TRUE(*limits->Acquire(refs, 0));
  EXPECT_FALSE(*limits->Acquire(refs, 0));
}

TEST(SharedRateLimits, FailsClosedWithinTheTimeoutAndRecovers) {
  RedisServer server;
  auto limits = LimitsFor(server, "a");
  ASSERT_TRUE(limits);
  const std::vector<RateLimitRef> refs = {Ref("k", 100, 1000 * kMs)};
  ASSERT_TRUE(*limits->Acquire(refs, 0));
  server.Stop();
  const auto t0 = std::chrono::steady_clock::now();
  auto got = limits->Acquire(refs, 0);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.status().IsUnavailable()) << got.status().ToString();
  ExpectMentions(got.status(), server.url().substr(0, server.url().size() - 2));
  EXPECT_LE(took, 300ms + 200ms);  // the store's timeout, and some scheduling
  EXPECT_TRUE(limits->TakeEvents().empty()) << "no degraded mode without degrade_to_local";
  server.Start();
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    auto again = limits->Acquire(refs, 0);
    back = again.ok() && *again;
    if (!back) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(back) << "no reconnection after the server came back";
}

TEST(SharedRateLimits, DegradesToLocalAndRecordsBothTransitions) {
  RedisServer server;
  auto limits = LimitsFor(server, "a", /*degrade=*/true);
  ASSERT_TRUE(limits);
  const std::vector<RateLimitRef> refs = {Ref("k", 2, 60'000 * kMs)};
  ASSERT_TRUE(*limits->Acquire(refs, 0));
  server.Stop();
  // The local bucket is a fresh one: two tokens, then refused.
  auto got = limits->Acquire(refs, 1);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got);
  EXPECT_TRUE(limits->degraded());
  EXPECT_TRUE(*limits->Acquire(refs, 1));
  EXPECT_FALSE(*limits->Acquire(refs, 1));
  auto events = limits->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "store_degraded");
  EXPECT_EQ(events[0].store, "rate_limits");
  EXPECT_NE(events[0].detail.find("127.0.0.1"), std::string::npos) << events[0].detail;
  EXPECT_GT(events[0].at_ns, 0);
  server.Start();  // an empty server: the shared bucket starts full
  for (int i = 0; i < 100 && limits->degraded(); ++i) {
    (void)limits->Acquire(refs, 1);
    if (limits->degraded()) std::this_thread::sleep_for(20ms);
  }
  EXPECT_FALSE(limits->degraded());
  events = limits->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "store_restored");
}

// --- breakers ---

SloSpec BreakerSpec(int32_t probes = 2, int64_t open_for_ms = 400) {
  SloSpec spec;
  spec.id = "model-health";
  spec.kind = "model";
  spec.group_by = {"model"};
  CircuitBreakerOptions b;
  b.minimum_calls = 2;
  b.window_size = 2;
  b.failure_rate_threshold_pct = 50;
  b.open_duration_ns = open_for_ms * kMs;
  b.half_open_probes = probes;
  spec.breaker = b;
  return spec;
}

struct Worker {
  std::shared_ptr<BreakerStore> store;
  std::unique_ptr<SloMonitor> monitor;
};

Worker WorkerOn(const RedisServer& server, const std::string& name, SloSpec spec,
                bool degrade = false) {
  FleetLimitsOptions o = OptionsFor(server, name);
  o.store.degrade_to_local = degrade;
  auto store = OpenRedisBreakers(o);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  SloMonitor::Options mo;
  mo.breakers = store.ok() ? *store : nullptr;
  mo.evaluate_every_ns = 0;
  auto monitor = SloMonitor::Create({std::move(spec)}, mo);
  EXPECT_TRUE(monitor.ok()) << monitor.status().ToString();
  return Worker{mo.breakers, monitor.ok() ? std::move(*monitor) : nullptr};
}

const SloCall kCall{"model", "agent", "gpt-4o", ""};

void Fail(SloMonitor& m) {
  SloOutcome o;
  o.success = false;
  o.error_class = "upstream_5xx";
  o.latency_ns = kMs;
  m.Record(kCall, o);
}

void Succeed(SloMonitor& m) {
  SloOutcome o;
  o.latency_ns = kMs;
  m.Record(kCall, o);
}

// Waits past the staleness bound: the refresh interval (50 ms here) plus a
// round trip, with room for a busy machine.
void PastTheBound() { std::this_thread::sleep_for(250ms); }

TEST(SharedBreakers, OpenedOnOneWorkerRefusesOnAnother) {
  RedisServer server;
  Worker a = WorkerOn(server, "worker-a", BreakerSpec());
  Worker b = WorkerOn(server, "worker-b", BreakerSpec());
  ASSERT_TRUE(a.monitor && b.monitor);
  ASSERT_TRUE(b.monitor->Admit(kCall).allowed);
  b.monitor->Release(kCall);
  Fail(*a.monitor);
  Fail(*a.monitor);  // 2 of 2 failed: a's breaker opens and is published
  PastTheBound();
  const Admission refused = b.monitor->Admit(kCall);
  EXPECT_FALSE(refused.allowed);
  EXPECT_TRUE(refused.status.ok()) << "a refusal, not an error";
  EXPECT_NE(refused.reason.find("circuit breaker open until"), std::string::npos)
      << refused.reason;
  EXPECT_NE(refused.reason.find("worker-a"), std::string::npos) << refused.reason;
  EXPECT_EQ(refused.subject, "model=gpt-4o");
  EXPECT_FALSE(a.monitor->Admit(kCall).allowed);
  // The breaker signal fires on both workers, whose status says open.
  for (SloMonitor* m : {a.monitor.get(), b.monitor.get()}) {
    bool breaker_fired = false;
    for (const SloEvent& e : m->Evaluate()) breaker_fired |= e.signal == "breaker" && e.firing;
    EXPECT_TRUE(breaker_fired);
    auto status = m->Get("model-health", "model=gpt-4o");
    ASSERT_TRUE(status.ok()) << status.status().ToString();
    EXPECT_EQ(status->breaker_state, "open");
  }
}

TEST(SharedBreakers, HalfOpenProbesAreCountedFleetWideAndTheCloseIsShared) {
  RedisServer server;
  Worker a = WorkerOn(server, "worker-a", BreakerSpec(/*probes=*/2, /*open_for_ms=*/300));
  Worker b = WorkerOn(server, "worker-b", BreakerSpec(2, 300));
  ASSERT_TRUE(a.monitor && b.monitor);
  Fail(*a.monitor);
  Fail(*a.monitor);
  std::this_thread::sleep_for(400ms);  // open_for passed: half-open
  // Two probes for the fleet: one on each worker, then nobody.
  ASSERT_TRUE(a.monitor->Admit(kCall).allowed);
  ASSERT_TRUE(b.monitor->Admit(kCall).allowed);
  const Admission third = b.monitor->Admit(kCall);
  EXPECT_FALSE(third.allowed);
  EXPECT_NE(third.reason.find("probe calls are in flight"), std::string::npos) << third.reason;
  EXPECT_FALSE(a.monitor->Admit(kCall).allowed);
  // A probe given back frees its slot for another worker.
  b.monitor->Release(kCall);
  ASSERT_TRUE(a.monitor->Admit(kCall).allowed);
  // a holds both probes now; both succeed: closed for the fleet.
  Succeed(*a.monitor);
  Succeed(*a.monitor);
  PastTheBound();
  EXPECT_TRUE(b.monitor->Admit(kCall).allowed);
  EXPECT_TRUE(b.monitor->Admit(kCall).allowed);
  EXPECT_TRUE(b.monitor->Admit(kCall).allowed) << "closed: no probe limit any more";
}

TEST(SharedBreakers, AFailedProbeReopensForTheFleet) {
  RedisServer server;
  Worker a = WorkerOn(server, "worker-a", BreakerSpec(2, 300));
  Worker b = WorkerOn(server, "worker-b", BreakerSpec(2, 300));
  ASSERT_TRUE(a.monitor && b.monitor);
  Fail(*a.monitor);
  Fail(*a.monitor);
  std::this_thread::sleep_for(400ms);
  ASSERT_TRUE(b.monitor->Admit(kCall).allowed);
  Fail(*b.monitor);  // b's probe failed
  PastTheBound();
  const Admission refused = a.monitor->Admit(kCall);
  EXPECT_FALSE(refused.allowed);
  EXPECT_NE(refused.reason.find("open until"), std::string::npos) << refused.reason;
  EXPECT_NE(refused.reason.find("worker-b"), std::string::npos) << refused.reason;
}

TEST(SharedBreakers, ASubjectDisabledOnOneWorkerIsDisabledOnAll) {
  RedisServer server;
  SloSpec spec;
  spec.id = "model-latency";
  spec.kind = "model";
  spec.group_by = {"model"};
  LatencyObjective latency;
  latency.p50_ns = 5 * kMs;
  latency.window_ns = 240 * kMs;
  spec.latency = latency;
  BreachAction disable;
  disable.when = "latency";
  disable.kind = BreachAction::Kind::kDisable;
  spec.on_breach = {disable};
  Worker a = WorkerOn(server, "worker-a", spec);
  Worker b = WorkerOn(server, "worker-b", spec);
  ASSERT_TRUE(a.monitor && b.monitor);
  SloOutcome slow;
  slow.latency_ns = 50 * kMs;
  a.monitor->Record(kCall, slow);
  a.monitor->Evaluate();  // latency_p50 fires on a: disabled there, and published
  ASSERT_FALSE(a.monitor->Admit(kCall).allowed);
  PastTheBound();
  const Admission refused = b.monitor->Admit(kCall);
  EXPECT_FALSE(refused.allowed);
  EXPECT_NE(refused.reason.find("disabled by worker 'worker-a' while latency_p50 is firing"),
            std::string::npos)
      << refused.reason;
  // The slow call leaves a's window: the signal clears, the disable with it.
  std::this_thread::sleep_for(300ms);
  a.monitor->Evaluate();
  PastTheBound();
  EXPECT_TRUE(b.monitor->Admit(kCall).allowed);
}

TEST(SharedBreakers, FailClosedWhenTheStoreIsAwayThenRecover) {
  RedisServer server;
  Worker a = WorkerOn(server, "worker-a", BreakerSpec());
  ASSERT_TRUE(a.monitor);
  ASSERT_TRUE(a.monitor->Admit(kCall).allowed);
  a.monitor->Release(kCall);
  server.Stop();
  // Refused once the refresher finds the server gone: within the store's
  // timeout (300 ms) plus a refresh interval.
  Admission refused;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) {
    refused = a.monitor->Admit(kCall);
    if (!refused.allowed) break;
    a.monitor->Release(kCall);
    std::this_thread::sleep_for(5ms);
  }
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(refused.allowed);
  EXPECT_TRUE(refused.status.IsUnavailable()) << refused.status.ToString();
  EXPECT_NE(refused.reason.find("shared circuit breakers"), std::string::npos) << refused.reason;
  EXPECT_LE(took, 300ms + 50ms + 300ms);
  // A call under no shared series needs nothing from the store.
  const SloCall tool{"tool", "agent", "", "search"};
  EXPECT_TRUE(a.monitor->Admit(tool).allowed);
  server.Start();
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    std::this_thread::sleep_for(20ms);
    const Admission again = a.monitor->Admit(kCall);
    back = again.allowed;
    if (back) a.monitor->Release(kCall);
  }
  EXPECT_TRUE(back) << "the refresher did not reconnect";
}

TEST(SharedBreakers, DegradedModeJudgesLocallyAndRecordsTransitions) {
  RedisServer server;
  Worker a = WorkerOn(server, "worker-a", BreakerSpec(), /*degrade=*/true);
  ASSERT_TRUE(a.monitor);
  server.Stop();
  std::this_thread::sleep_for(400ms);  // past the timeout: degraded
  const Admission admitted = a.monitor->Admit(kCall);
  EXPECT_TRUE(admitted.allowed) << admitted.reason;
  a.monitor->Release(kCall);
  Fail(*a.monitor);
  Fail(*a.monitor);  // opens locally; the publish fails
  const Admission refused = a.monitor->Admit(kCall);
  EXPECT_FALSE(refused.allowed);
  EXPECT_TRUE(refused.status.ok());
  EXPECT_NE(refused.reason.find("circuit breaker open"), std::string::npos) << refused.reason;
  auto events = a.store->TakeEvents();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].kind, "store_degraded");
  EXPECT_EQ(events[0].store, "breakers");
  server.Start();
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(20ms);
    auto more = a.store->TakeEvents();
    events.insert(events.end(), more.begin(), more.end());
    if (events.back().kind == "store_restored") break;
  }
  EXPECT_EQ(events.back().kind, "store_restored");
}

TEST(SharedBreakers, ABadUrlOrAnAbsentServerFailsAtOpen) {
  FleetLimitsOptions o;
  o.store.url = "http://nowhere";
  auto bad = OpenRedisBreakers(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsInvalidArgument()) << bad.status().ToString();
  int port = 0;
  {
    RedisServer server;
    port = server.port();
  }
  o.store.url = "redis://127.0.0.1:" + std::to_string(port) + "/0";
  o.store.timeout_ns = 200 * kMs;
  auto absent = SharedRateLimits::Open(o);
  ASSERT_FALSE(absent.ok());
  EXPECT_TRUE(absent.status().IsUnavailable()) << absent.status().ToString();
}

// --- SLO rate_limit responses ---

TEST(SharedSloRateLimits, AResponsesRateIsSharedByTheWorkersItIsActiveIn) {
  RedisServer server;
  SloSpec spec;
  spec.id = "model-latency";
  spec.kind = "model";
  spec.group_by = {"model"};
  LatencyObjective latency;
  latency.p50_ns = 5 * kMs;
  latency.window_ns = 60'000 * kMs;
  spec.latency = latency;
  BreachAction limit;
  limit.when = "latency";
  limit.kind = BreachAction::Kind::kRateLimit;
  limit.rate_per_second = 2;
  spec.on_breach = {limit};
  std::vector<std::unique_ptr<SloMonitor>> monitors;
  for (const char* name : {"worker-a", "worker-b"}) {
    SloMonitor::Options mo;
    mo.rate_limits = LimitsFor(server, name);
    mo.evaluate_every_ns = 0;
    auto m = SloMonitor::Create({spec}, mo);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    SloOutcome slow;
    slow.latency_ns = 50 * kMs;
    (*m)->Record(kCall, slow);
    (*m)->Evaluate();  // the response starts on this worker
    monitors.push_back(std::move(*m));
  }
  int admitted = 0;
  std::string reason;
  for (int i = 0; i < 3; ++i) {
    for (auto& m : monitors) {
      const Admission a = m->Admit(kCall);
      ASSERT_TRUE(a.status.ok()) << a.status.ToString();
      if (a.allowed) {
        ++admitted;
      } else {
        reason = a.reason;
      }
    }
  }
  EXPECT_EQ(admitted, 2) << "a burst of 2 for the fleet, not 2 per worker";
  EXPECT_NE(reason.find("rate limited to 2/s while latency_p50 is firing"), std::string::npos)
      << reason;
}

// --- the guard ---

// A bundle whose one grant is rate limited, and an SLO with a breaker.
struct FleetConfig {
  TempDir dir;
  FleetConfig() {
    std::filesystem::create_directories(dir.Sub("policies"));
    WriteFile(dir.Sub("policies/permissions.yaml"),
              "version: 1\n"
              "agents:\n"
              "  bot:\n"
              "    tools:\n"
              "      - name: lookup_order\n"
              "        operations: [read]\n"
              "        rate_limit: 3/min\n");
    WriteFile(dir.Sub("policies/noop.lua"),
              "return { id = \"noop\", before_tool = function(call) end }\n");
    WriteFile(dir.Sub("slos.yaml"),
              "version: 1\n"
              "slos:\n"
              "  - id: model-health\n"
              "    match: {kind: model}\n"
              "    group_by: [model]\n"
              "    circuit_breaker: {failure_rate: 50%, minimum_calls: 2, window: 2,\n"
              "                      open_for: 60s, half_open_probes: 1}\n");
  }
  std::unique_ptr<Guard> Open(const RedisServer& server, const std::string& worker) const {
    GuardOptions o;
    o.policy_dir = dir.Sub("policies");
    o.slos_file = dir.Sub("slos.yaml");
    o.store.url = server.url();
    o.store.timeout_ns = 300 * kMs;
    o.store.worker = worker;
    auto guard = Guard::Open(o);
    EXPECT_TRUE(guard.ok()) << guard.status().ToString();
    return guard.ok() ? std::move(*guard) : nullptr;
  }
};

CallRequest ToolCall() {
  CallRequest req;
  req.call.hook = Hook::kBeforeTool;
  req.call.agent_id = "bot";
  req.call.tool = "lookup_order";
  req.call.operation = "read";
  return req;
}

CallRequest ModelCall() {
  CallRequest req;
  req.call.hook = Hook::kBeforeModel;
  req.call.agent_id = "bot";
  req.call.model = "gpt-4o";
  req.call.input = "hello";
  return req;
}

TEST(FleetGuard, TwoGuardsShareAToolsRateLimit) {
  RedisServer server;
  FleetConfig config;
  auto a = config.Open(server, "a");
  auto b = config.Open(server, "b");
  ASSERT_TRUE(a && b);
  int allowed = 0;
  std::string refusal;
  for (int i = 0; i < 4; ++i) {
    for (Guard* g : {a.get(), b.get()}) {
      auto begun = g->Begin(ToolCall());
      ASSERT_TRUE(begun.ok()) << begun.status().ToString();
      if (begun->decision.effect == Effect::kDeny) {
        refusal = begun->decision.reasons.at(0).message;
        continue;
      }
      ++allowed;
      ASSERT_TRUE(g->End(begun->call_id, CallOutcome{}).ok());
    }
  }
  EXPECT_EQ(allowed, 3);
  EXPECT_NE(refusal.find("rate limit of tool 'lookup_order' exceeded (3/min)"), std::string::npos)
      << refusal;
}

TEST(FleetGuard, ABreakerTrippedByOneGuardRefusesTheOther) {
  RedisServer server;
  FleetConfig config;
  auto a = config.Open(server, "a");
  auto b = config.Open(server, "b");
  ASSERT_TRUE(a && b);
  CallOutcome failed;
  failed.ok = false;
  failed.error_class = "upstream_5xx";
  for (int i = 0; i < 2; ++i) {
    auto begun = a->Begin(ModelCall());
    ASSERT_TRUE(begun.ok()) << begun.status().ToString();
    ASSERT_NE(begun->decision.effect, Effect::kDeny);
    ASSERT_TRUE(a->End(begun->call_id, failed).ok());
  }
  PastTheBound();
  auto refused = b->Begin(ModelCall());
  ASSERT_TRUE(refused.ok()) << refused.status().ToString();
  ASSERT_EQ(refused->decision.effect, Effect::kDeny);
  EXPECT_NE(refused->decision.reasons.at(0).message.find("opened by worker 'a'"),
            std::string::npos)
      << refused->decision.reasons.at(0).message;
}

TEST(FleetGuard, BeginIsUnavailableWhileTheStoreIsAwayAndRecovers) {
  RedisServer server;
  FleetConfig config;
  auto g = config.Open(server, "a");
  ASSERT_TRUE(g);
  server.Stop();
  auto tool = g->Begin(ToolCall());
  ASSERT_FALSE(tool.ok());
  EXPECT_TRUE(tool.status().IsUnavailable()) << tool.status().ToString();
  ExpectMentions(tool.status(), "shared rate limits");
  std::this_thread::sleep_for(400ms);  // past the timeout since the last refresh
  auto model = g->Begin(ModelCall());
  ASSERT_FALSE(model.ok());
  EXPECT_TRUE(model.status().IsUnavailable()) << model.status().ToString();
  ExpectMentions(model.status(), "shared circuit breakers");
  server.Start();
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    std::this_thread::sleep_for(20ms);
    auto again = g->Begin(ModelCall());
    back = again.ok() && again->decision.effect != Effect::kDeny;
    if (back) ASSERT_TRUE(g->End(again->call_id, CallOutcome{}).ok());
  }
  EXPECT_TRUE(back);
  auto again = g->Begin(ToolCall());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_NE(again->decision.effect, Effect::kDeny);
}

TEST(FleetGuard, OpenFailsWhenTheStoreIsUnreachable) {
  RedisServer server;
  FleetConfig config;
  server.Stop();
  GuardOptions o;
  o.policy_dir = config.dir.Sub("policies");
  o.store.url = server.url();
  o.store.timeout_ns = 200 * kMs;
  auto guard = Guard::Open(o);
  ASSERT_FALSE(guard.ok());
  EXPECT_TRUE(guard.status().IsUnavailable()) << guard.status().ToString();
}

}  // namespace
}  // namespace bastion
