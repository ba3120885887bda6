// Tests for SloMonitor (bastion/slo_monitor.h). Traffic is simulated on a
// ManualClock, so days of calls run in milliseconds and every signal is
// checked against the simulated time at which it should fire and clear.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bastion/slo_monitor.h"

// Counts the allocations of the thread that asks, to show that Record's
// steady state allocates nothing.
namespace {
thread_local bool t_counting = false;
thread_local int64_t t_allocations = 0;
}  // namespace

void* operator new(std::size_t n) {
  if (t_counting) ++t_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace bastion {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kUsd = 1'000'000'000;
// 2024-01-01T00:00:00Z, a Monday.
constexpr int64_t kT0 = 1'704'067'200 * kNsPerSecond;

struct Harness {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(kT0);
  std::unique_ptr<SloMonitor> monitor;
  std::vector<SloEvent> events;     // everything Record and Evaluate returned
  std::vector<SloEvent> escalated;  // what on_escalate saw

  explicit Harness(const std::string& yaml, SloMonitor::Options options = {}) {
    auto specs = ParseSloYaml(yaml, "test.yaml");
    EXPECT_TRUE(specs.ok()) << specs.status().ToString();
    if (!specs.ok()) return;
    options.clock = clock;
    options.on_escalate = [this](const SloEvent& e) { escalated.push_back(e); };
    auto m = SloMonitor::Create(std::move(*specs), std::move(options));
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (m.ok()) monitor = std::move(*m);
  }

  void Record(const SloCall& call, const SloOutcome& outcome) {
    for (SloEvent& e : monitor->Record(call, outcome)) events.push_back(std::move(e));
  }
  void Evaluate() {
    for (SloEvent& e : monitor->Evaluate()) events.push_back(std::move(e));
  }
  // Events of `signal` (any subject) in order.
  std::vector<SloEvent> Of(std::string_view signal) const {
    std::vector<SloEvent> out;
    for (const SloEvent& e : events) {
      if (e.signal == signal) out.push_back(e);
    }
    return out;
  }
  SeriesStatus Get(std::string_view id, std::string_view subject = "") {
    auto s = monitor->Get(id, subject);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : SeriesStatus{};
  }
};

const SloCall kModelCall{"model", "support-1", "gpt-4o", ""};

SloOutcome Ok(int64_t latency_ns = 100 * kMs) {
  SloOutcome o;
  o.latency_ns = latency_ns;
  return o;
}
SloOutcome Failed(std::string_view error_class = "server_error") {
  SloOutcome o;
  o.success = false;
  o.error_class = error_class;
  o.latency_ns = 100 * kMs;
  return o;
}
SloOutcome Priced(int64_t nanousd) {
  SloOutcome o = Ok();
  o.cost_nanousd = nanousd;
  return o;
}

// ---------------------------------------------------------------------------
// Burn-rate alerts

// A 30-day 99.9% SLO with the default rules; 100 calls a minute. After a clean
// day, 2% of calls fail for an hour (burn rate 20). Burn rates are judged over
// whole 1-minute buckets. page-1h (above 14.4x over 1h and 5m) fires once the
// 1h window holds k error minutes with 2k / 6000 > 0.0144, i.e. k = 44: at
// minute 44. After the errors stop, the 5m window holds 2 (5 - k) errors in
// 500 calls k minutes later: 16x at k = 1, 12x at k = 2, so it clears at
// minute 2.
TEST(SloMonitor, PageAlertFiresAndClearsAtTheRightTimes) {
  Harness h(R"(version: 1
slos:
  - id: avail
    success: {target: 99.9%, window: 30d}
    on_breach:
      - {when: page, action: log}
)");
  ASSERT_NE(h.monitor, nullptr);
  const int64_t step = 600 * kMs;  // 100 calls a minute
  const auto run = [&](int64_t duration, int every_nth_fails) {
    for (int64_t t = 0, i = 0; t < duration; t += step, ++i) {
      h.Record(kModelCall, every_nth_fails && i % every_nth_fails == 0 ? Failed() : Ok());
      h.clock->Advance(step);
    }
  };
  run(kNsPerDay, 0);
  EXPECT_TRUE(h.events.empty());
  const int64_t errors_start = h.clock->NowNs();
  run(kNsPerHour, 50);
  const int64_t errors_stop = h.clock->NowNs();
  {
    const SeriesStatus st = h.Get("avail");
    EXPECT_EQ(st.firing, std::vector<std::string>{"burn_rate:page-1h"});
    ASSERT_EQ(st.active_actions.size(), 1u);
    EXPECT_EQ(st.active_actions[0].kind, BreachAction::Kind::kLog);
    ASSERT_EQ(st.burn_rates.size(), 4u);
    EXPECT_TRUE(st.burn_rates[0].firing);
    EXPECT_NEAR(st.burn_rates[0].long_burn_rate, 20, 1e-9);  // 60 error minutes of 60
    EXPECT_NEAR(st.burn_rates[0].short_burn_rate, 20, 1e-9);
    EXPECT_FALSE(st.burn_rates[1].firing);
  }
  run(kNsPerHour, 0);

  const auto page = h.Of("burn_rate:page-1h");
  ASSERT_EQ(page.size(), 2u);
  EXPECT_TRUE(page[0].firing);
  EXPECT_EQ(page[0].severity, "page");
  EXPECT_EQ(page[0].action, "log");
  EXPECT_EQ(page[0].slo_id, "avail");
  EXPECT_EQ(page[0].subject, "");
  // Evaluations run every second, on the first call at or after it (every
  // 600ms): the transition shows at most 1.2s after the minute starts.
  EXPECT_GE(page[0].at_ns - errors_start, 44 * kNsPerMinute);
  EXPECT_LE(page[0].at_ns - errors_start, 44 * kNsPerMinute + 1200 * kMs);
  EXPECT_EQ(page[0].detail, "burn rate 14.7x over 1h, 20.0x over 5m (fires above 14.4x)");
  EXPECT_FALSE(page[1].firing);
  EXPECT_GE(page[1].at_ns - errors_stop, 2 * kNsPerMinute);
  EXPECT_LE(page[1].at_ns - errors_stop, 2 * kNsPerMinute + 1200 * kMs);
  // 6x over 6h needs 108 minutes of 20x: never.
  EXPECT_TRUE(h.Of("burn_rate:page-6h").empty());

  const SeriesStatus st = h.Get("avail");
  EXPECT_TRUE(st.has_success);
  EXPECT_EQ(st.events, static_cast<uint64_t>(26 * 60 * 100));
  EXPECT_EQ(st.errors, 120u);
  EXPECT_NEAR(st.error_budget_remaining, 1 - 120 / (0.001 * 26 * 60 * 100), 1e-9);
  EXPECT_TRUE(st.firing.empty());
  ASSERT_EQ(st.burn_rates.size(), 4u);
  EXPECT_EQ(st.burn_rates[0].rule, "page-1h");
  EXPECT_FALSE(st.burn_rates[0].firing);
  EXPECT_DOUBLE_EQ(st.burn_rates[0].short_burn_rate, 0);
}

TEST(SloMonitor, ExcludedClassesAndTimeoutsCountAsTheSpecSays) {
  Harness h(R"(version: 1
slos:
  - id: s
    latency: {timeout: 1s}
    success: {window: 1d, alerts: none, exclude: [client_cancelled]}
)",
            {.evaluate_every_ns = 0});
  ASSERT_NE(h.monitor, nullptr);
  h.Record(kModelCall, Ok());
  h.Record(kModelCall, Ok(2 * kNsPerSecond));  // "succeeded" after the timeout
  h.Record(kModelCall, Failed("client_cancelled"));
  h.Record(kModelCall, Failed());
  const SeriesStatus st = h.Get("s");
  EXPECT_EQ(st.calls, 4u);
  EXPECT_EQ(st.events, 3u);
  EXPECT_EQ(st.errors, 2u);
  EXPECT_NEAR(st.success_rate, 1.0 / 3, 1e-12);
  EXPECT_EQ(st.latency_calls, 4u);
}

// A calendar-day SLO counts only today's calls; yesterday's errors are gone at
// local midnight.
TEST(SloMonitor, CalendarDayWindowRestartsAtLocalMidnight) {
  Harness h(R"(version: 1
time_zone: "+09:00"
slos:
  - id: daily
    success: {target: 99%, window: calendar_day, alerts: none}
)",
            {.evaluate_every_ns = 0});
  ASSERT_NE(h.monitor, nullptr);
  // 2024-01-01T14:00Z is 23:00 in +09:00.
  h.clock->Set(kT0 + 14 * kNsPerHour);
  for (int i = 0; i < 10; ++i) h.Record(kModelCall, Failed());
  for (int i = 0; i < 90; ++i) h.Record(kModelCall, Ok());
  SeriesStatus st = h.Get("daily");
  EXPECT_EQ(st.events, 100u);
  EXPECT_EQ(st.errors, 10u);
  EXPECT_NEAR(st.error_budget_remaining, 1 - 10 / (0.01 * 100), 1e-9);
  h.clock->Set(kT0 + 15 * kNsPerHour);  // local midnight
  h.Record(kModelCall, Ok());
  st = h.Get("daily");
  EXPECT_EQ(st.events, 1u);
  EXPECT_EQ(st.errors, 0u);
  EXPECT_EQ(st.error_budget_remaining, 1.0);
}

// ---------------------------------------------------------------------------
// Latency

// 97% of calls take 100ms and 3% take 10s, for 30 minutes: p50 and p95 stay
// on target, p99 does not. Then only fast calls: p99 turns fast once the slow
// ones are under 1% of the 1h window (12 intervals of 5 minutes), as the
// intervals holding them leave it.
TEST(SloMonitor, LatencyQuantilesOnSkewedData) {
  Harness h(R"(version: 1
slos:
  - id: lat
    latency: {p50: 200ms, p95: 1s, p99: 2s, window: 1h}
)");
  ASSERT_NE(h.monitor, nullptr);
  const auto slow = [](int i) { return i % 100 == 7 || i % 100 == 40 || i % 100 == 73; };
  for (int i = 0; i < 1800; ++i) {  // 30 minutes, a call a second
    h.Record(kModelCall, Ok(slow(i) ? 10 * kNsPerSecond : 100 * kMs));
    h.clock->Advance(kNsPerSecond);
  }
  SeriesStatus st = h.Get("lat");
  EXPECT_EQ(st.latency_calls, 1800u);
  EXPECT_NEAR(st.latency_p50_ns, 100 * kMs, 1 * kMs);
  EXPECT_NEAR(st.latency_p95_ns, 100 * kMs, 1 * kMs);
  EXPECT_NEAR(st.latency_p99_ns, 10 * kNsPerSecond, 0.1 * kNsPerSecond);
  EXPECT_EQ(st.latency_p99_target_ns, 2 * kNsPerSecond);
  EXPECT_EQ(st.firing, std::vector<std::string>{"latency_p99"});
  auto p99 = h.Of("latency_p99");
  ASSERT_EQ(p99.size(), 1u);
  EXPECT_TRUE(p99[0].firing);
  EXPECT_EQ(p99[0].severity, "ticket");
  // One slow call in eight is not 1%; two in 41 are.
  EXPECT_EQ(p99[0].at_ns, kT0 + 40 * kNsPerSecond);
  EXPECT_EQ(p99[0].detail, "p99 10.00s over the last 1h (target 2.00s, 41 calls)");
  EXPECT_TRUE(h.Of("latency_p50").empty());
  EXPECT_TRUE(h.Of("latency_p95").empty());

  for (int i = 1800; i < 9000; ++i) {  // two fast hours
    h.Record(kModelCall, Ok(100 * kMs));
    h.clock->Advance(kNsPerSecond);
  }
  p99 = h.Of("latency_p99");
  ASSERT_EQ(p99.size(), 2u);
  EXPECT_FALSE(p99[1].firing);
  // Worked out with exact lower quantiles over the same 5-minute intervals: at
  // call 4101 the window holds intervals 2-13, 36 slow calls among 3502.
  EXPECT_EQ(p99[1].at_ns, kT0 + 4101 * kNsPerSecond);
  EXPECT_EQ(p99[1].detail, "p99 101.0ms over the last 1h (target 2.00s, 3502 calls)");
  st = h.Get("lat");
  EXPECT_TRUE(st.firing.empty());
  EXPECT_NEAR(st.latency_p99_ns, 100 * kMs, 1 * kMs);
}

// ---------------------------------------------------------------------------
// Cost

TEST(SloMonitor, CostPerRequestMaxAndP95) {
  Harness h(R"(version: 1
slos:
  - id: cost
    cost: {max_per_request_usd: 0.50, p95_per_request_usd: 0.10, window: 1h}
    on_breach:
      - {when: cost, action: log}
)",
            {.evaluate_every_ns = 0});
  ASSERT_NE(h.monitor, nullptr);
  for (int i = 0; i < 100; ++i) h.Record(kModelCall, Priced(kUsd / 20));  // $0.05
  for (int i = 0; i < 100; ++i) h.Record(kModelCall, Ok());               // unpriced
  h.Evaluate();
  EXPECT_TRUE(h.events.empty());
  SeriesStatus st = h.Get("cost");
  EXPECT_EQ(st.priced_calls, 100u);
  EXPECT_EQ(st.calls, 200u);
  EXPECT_NEAR(st.cost_p95_per_request_nanousd, kUsd / 20, kUsd / 2000);

  h.clock->Advance(kNsPerMinute);
  h.Record(kModelCall, Priced(kUsd * 6 / 10));  // $0.60
  h.Evaluate();
  ASSERT_EQ(h.events.size(), 1u);
  EXPECT_EQ(h.events[0].signal, "cost_per_request");
  EXPECT_TRUE(h.events[0].firing);
  EXPECT_EQ(h.events[0].action, "log");
  EXPECT_NE(h.events[0].detail.find("$0.6 in"), std::string::npos) << h.events[0].detail;
  EXPECT_EQ(h.Get("cost").cost_max_per_request_nanousd, kUsd * 6 / 10);

  for (int i = 0; i < 20; ++i) h.Record(kModelCall, Priced(kUsd / 5));  // $0.20, 16% of calls
  h.Evaluate();
  ASSERT_EQ(h.Of("cost_p95_per_request").size(), 1u);
  EXPECT_TRUE(h.Of("cost_p95_per_request")[0].firing);

  h.clock->Advance(2 * kNsPerHour);  // everything leaves the window
  h.Evaluate();
  EXPECT_FALSE(h.Of("cost_per_request").back().firing);
  EXPECT_FALSE(h.Of("cost_p95_per_request").back().firing);
  EXPECT_EQ(h.Get("cost").priced_calls, 0u);
}

// Per-day cost is per local calendar day (+09:00 here): the signal fires when
// the day's spend passes the limit and clears at local midnight.
TEST(SloMonitor, CostPerDayRollsOverAtLocalMidnight) {
  Harness h(R"(version: 1
time_zone: "+09:00"
slos:
  - id: spend
    group_by: [agent]
    cost: {per_day_usd: 100}
)");
  ASSERT_NE(h.monitor, nullptr);
  // 2024-01-01T05:00Z = 14:00 local; local midnight is at 15:00Z.
  h.clock->Set(kT0 + 5 * kNsPerHour);
  for (int i = 0; i < 10; ++i) {
    h.Record(kModelCall, Priced(10 * kUsd));
    h.clock->Advance(30 * kNsPerMinute);
  }
  EXPECT_TRUE(h.Of("cost_per_day").empty());  // exactly $100 is not above $100
  h.Record(kModelCall, Priced(kUsd / 100));     // 10:00Z
  h.clock->Advance(2 * kNsPerSecond);
  h.Record(kModelCall, Ok());  // evaluates
  auto day = h.Of("cost_per_day");
  ASSERT_EQ(day.size(), 1u);
  EXPECT_TRUE(day[0].firing);
  EXPECT_EQ(day[0].subject, "agent=support-1");
  EXPECT_NE(day[0].detail.find("$100.01 spent today"), std::string::npos) << day[0].detail;
  EXPECT_EQ(h.Get("spend", "agent=support-1").cost_today_nanousd, 100 * kUsd + kUsd / 100);

  h.clock->Set(kT0 + 15 * kNsPerHour - kNsPerSecond);  // 23:59:59 local
  h.Evaluate();
  EXPECT_EQ(h.Of("cost_per_day").size(), 1u);
  h.clock->Set(kT0 + 15 * kNsPerHour);  // midnight
  h.Evaluate();
  day = h.Of("cost_per_day");
  ASSERT_EQ(day.size(), 2u);
  EXPECT_FALSE(day[1].firing);
  EXPECT_EQ(day[1].at_ns, kT0 + 15 * kNsPerHour);
  EXPECT_EQ(h.Get("spend", "agent=support-1").cost_today_nanousd, 0);
  h.Record(kModelCall, Priced(3 * kUsd));
  EXPECT_EQ(h.Get("spend", "agent=support-1").cost_today_nanousd, 3 * kUsd);
}

// ---------------------------------------------------------------------------
// Circuit breaker

TEST(SloMonitor, BreakerRefusesThenRecoversThroughHalfOpen) {
  Harness h(R"(version: 1
slos:
  - id: dep
    match: {kind: tool, tool: "search"}
    circuit_breaker: {failure_rate: 50%, minimum_calls: 4, window: 10, open_for: 30s, half_open_probes: 2}
    on_breach:
      - {when: breaker_open, action: escalate}
)",
            {.evaluate_every_ns = 0});
  ASSERT_NE(h.monitor, nullptr);
  const SloCall search{"tool", "bot", "", "search"};
  const SloCall other{"tool", "bot", "", "fetch"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(h.monitor->Admit(search).allowed);
    h.Record(search, Failed());
  }
  h.clock->Advance(kNsPerSecond);
  Admission a = h.monitor->Admit(search);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.slo_id, "dep");
  EXPECT_EQ(a.reason,
            "slo 'dep': circuit breaker open until 2024-01-01T00:00:30Z (29.00s from now)");
  EXPECT_TRUE(h.monitor->Admit(other).allowed);  // not covered by the SLO
  h.Evaluate();
  ASSERT_EQ(h.Of("breaker").size(), 1u);
  EXPECT_TRUE(h.Of("breaker")[0].firing);
  EXPECT_EQ(h.Of("breaker")[0].severity, "page");
  EXPECT_EQ(h.Of("breaker")[0].detail, "circuit breaker open until 2024-01-01T00:00:30Z");
  ASSERT_EQ(h.escalated.size(), 1u);
  EXPECT_EQ(h.Get("dep").breaker_state, "open");

  h.clock->Set(kT0 + 30 * kNsPerSecond);  // half-open: two probes
  EXPECT_TRUE(h.monitor->Admit(search).allowed);
  EXPECT_TRUE(h.monitor->Admit(search).allowed);
  a = h.monitor->Admit(search);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.reason, "slo 'dep': circuit breaker half-open, its 2 probe calls are in flight");
  h.Evaluate();
  ASSERT_EQ(h.Of("breaker").size(), 2u);
  EXPECT_FALSE(h.Of("breaker")[1].firing);
  EXPECT_EQ(h.Of("breaker")[1].detail, "circuit breaker half-open");
  h.Record(search, Ok());
  h.Record(search, Ok());
  EXPECT_EQ(h.Get("dep").breaker_state, "closed");
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(h.monitor->Admit(search).allowed);
  EXPECT_EQ(h.escalated.size(), 1u);
}

// A refused call takes no probe slot: neither when an open breaker refuses it
// before any half-open one is asked, nor when a later half-open breaker has no
// probe left after an earlier one handed out a slot (it is given back).
// Otherwise the breaker would wait forever for a result that never comes.
TEST(SloMonitor, RefusedCallsTakeNoProbeSlot) {
  Harness h(R"(version: 1
slos:
  - id: a
    circuit_breaker: {minimum_calls: 1, window: 1, open_for: 10s, half_open_probes: 2}
  - id: b
    circuit_breaker: {minimum_calls: 1, window: 1, open_for: 20s, half_open_probes: 1}
)",
            {.evaluate_every_ns = 0});
  ASSERT_NE(h.monitor, nullptr);
  h.Record(kModelCall, Failed());  // opens both
  h.clock->Advance(10 * kNsPerSecond);
  for (int i = 0; i < 3; ++i) {  // a is half-open, b still open
    Admission r = h.monitor->Admit(kModelCall);
    EXPECT_FALSE(r.allowed);
    EXPECT_EQ(r.slo_id, "b");
  }
  h.clock->Advance(10 * kNsPerSecond);  // both half-open
  EXPECT_TRUE(h.monitor->Admit(kModelCall).allowed);  // a: 1 of 2 probes, b: 1 of 1
  for (int i = 0; i < 3; ++i) {
    Admission r = h.monitor->Admit(kModelCall);  // a's 2nd probe, given back
    EXPECT_FALSE(r.allowed);
    EXPECT_EQ(r.reason, "slo 'b': circuit breaker half-open, its 1 probe calls are in flight");
  }
  h.Record(kModelCall, Ok());  // b closes; a has one probe in
  EXPECT_EQ(h.Get("a").breaker_state, "half-open");
  EXPECT_EQ(h.Get("b").breaker_state, "closed");
  EXPECT_TRUE(h.monitor->Admit(kModelCall).allowed);  // a's 2nd probe is still free
  EXPECT_FALSE(h.monitor->Admit(kModelCall).allowed);
  h.Record(kModelCall, Ok());
  EXPECT_EQ(h.Get("a").breaker_state, "closed");
  EXPECT_TRUE(h.monitor->Admit(kModelCall).allowed);
}

// ---------------------------------------------------------------------------
// Responses: active exactly while their signal fires.

// Slow calls of one model fire its latency signal (a 12-minute window of
// 1-minute intervals); while it fires that model is downgraded, disabled or
// rate limited, and the other model is not touched.
const char kResponses[] = R"(version: 1
slos:
  - id: lat
    match: {kind: model}
    group_by: [model]
    latency: {p99: 1s, window: 12m}
    on_breach:
      - {when: latency, action: %s}
)";

std::string ResponsesYaml(std::string_view action) {
  std::string yaml = kResponses;
  yaml.replace(yaml.find("%s"), 2, action);
  return yaml;
}

struct ResponseRun {
  std::vector<int64_t> fired, cleared;  // evaluation times of the signal
};

// Runs: 5 fast minutes, 5 slow minutes of gpt-4o, then fast again for 20
// minutes; one call a second. `check(h, active)` runs before every call, with
// whether the signal is firing as of the last evaluation.
ResponseRun RunResponses(Harness& h, const std::function<void(Harness&, bool)>& check) {
  ResponseRun run;
  bool active = false;
  for (int s = 0; s < 30 * 60; ++s) {
    check(h, active);
    const bool slow = s >= 5 * 60 && s < 10 * 60;
    const size_t before = h.events.size();
    h.Record(kModelCall, Ok(slow ? 3 * kNsPerSecond : 100 * kMs));
    h.Record({"model", "support-1", "small", ""}, Ok());
    for (size_t i = before; i < h.events.size(); ++i) {
      const SloEvent& e = h.events[i];
      EXPECT_EQ(e.subject, "model=gpt-4o");
      (e.firing ? run.fired : run.cleared).push_back(e.at_ns);
      active = e.firing;
    }
    h.clock->Advance(kNsPerSecond);
  }
  return run;
}

TEST(SloMonitor, DowngradeWhileTheSignalFires) {
  Harness h(ResponsesYaml("downgrade, model: small"));
  ASSERT_NE(h.monitor, nullptr);
  int downgraded = 0;
  const ResponseRun run = RunResponses(h, [&](Harness& hh, bool active) {
    const Admission a = hh.monitor->Admit(kModelCall);
    EXPECT_TRUE(a.allowed);
    EXPECT_EQ(a.downgrade_model.has_value(), active);
    if (a.downgrade_model) {
      ++downgraded;
      EXPECT_EQ(*a.downgrade_model, "small");
      EXPECT_EQ(a.slo_id, "lat");
      EXPECT_EQ(a.subject, "model=gpt-4o");
      EXPECT_EQ(a.reason, "slo 'lat' [model=gpt-4o]: downgraded to 'small' while latency_p99 is "
                          "firing");
    }
    EXPECT_FALSE(hh.monitor->Admit({"model", "x", "small", ""}).downgrade_model);
  });
  ASSERT_EQ(run.fired.size(), 1u);
  ASSERT_EQ(run.cleared.size(), 1u);
  // p99 of 300 fast calls and k slow ones is slow from k = 5 on.
  EXPECT_EQ(run.fired[0], kT0 + 304 * kNsPerSecond);
  // The last slow minute leaves the 12-minute window 11 to 12 minutes later.
  EXPECT_GE(run.cleared[0], kT0 + 21 * kNsPerMinute);
  EXPECT_LE(run.cleared[0], kT0 + 22 * kNsPerMinute);
  EXPECT_EQ(downgraded, (run.cleared[0] - run.fired[0]) / kNsPerSecond);
  const SeriesStatus st = h.Get("lat", "model=gpt-4o");
  EXPECT_TRUE(st.active_actions.empty());
}

TEST(SloMonitor, DisableWhileTheSignalFires) {
  Harness h(ResponsesYaml("disable"));
  ASSERT_NE(h.monitor, nullptr);
  int refused = 0;
  const ResponseRun run = RunResponses(h, [&](Harness& hh, bool active) {
    const Admission a = hh.monitor->Admit(kModelCall);
    EXPECT_EQ(a.allowed, !active);
    if (!a.allowed) {
      ++refused;
      EXPECT_EQ(a.reason, "slo 'lat' [model=gpt-4o]: calls disabled while latency_p99 is firing");
      const SeriesStatus st = hh.Get("lat", "model=gpt-4o");
      ASSERT_EQ(st.active_actions.size(), 1u);
      EXPECT_EQ(st.active_actions[0].kind, BreachAction::Kind::kDisable);
    }
    EXPECT_TRUE(hh.monitor->Admit({"model", "x", "small", ""}).allowed);
  });
  ASSERT_EQ(run.fired.size(), 1u);
  ASSERT_EQ(run.cleared.size(), 1u);
  EXPECT_EQ(refused, (run.cleared[0] - run.fired[0]) / kNsPerSecond);
}

TEST(SloMonitor, RateLimitWhileTheSignalFires) {
  Harness h(ResponsesYaml("rate_limit, rate: 2/s"));
  ASSERT_NE(h.monitor, nullptr);
  int limited_seconds = 0;
  const ResponseRun run = RunResponses(h, [&](Harness& hh, bool active) {
    // Five tries in the same instant: two tokens a second, burst two.
    int admitted = 0;
    for (int i = 0; i < 5; ++i) admitted += hh.monitor->Admit(kModelCall).allowed ? 1 : 0;
    if (!active) {
      EXPECT_EQ(admitted, 5);
      return;
    }
    ++limited_seconds;
    EXPECT_EQ(admitted, 2);
    const Admission a = hh.monitor->Admit(kModelCall);
    EXPECT_FALSE(a.allowed);
    EXPECT_EQ(a.reason,
              "slo 'lat' [model=gpt-4o]: rate limited to 2/s while latency_p99 is firing");
    EXPECT_EQ(hh.monitor->Admit({"model", "x", "small", ""}).allowed, true);
  });
  ASSERT_EQ(run.fired.size(), 1u);
  ASSERT_EQ(run.cleared.size(), 1u);
  EXPECT_EQ(limited_seconds, (run.cleared[0] - run.fired[0]) / kNsPerSecond);
}

// A downgrade sends the call to another model, and that is the call judged:
// when the target model's own series refuses, so does Admit.
TEST(SloMonitor, DowngradedCallIsJudgedAsTheCallMade) {
  Harness h(R"(version: 1
slos:
  - id: lat
    group_by: [model]
    latency: {p99: 1s, window: 12m}
    circuit_breaker: {minimum_calls: 2, window: 2, open_for: 1m}
    on_breach:
      - {when: latency, action: downgrade, model: small}
)",
            {.evaluate_every_ns = 0});
  ASSERT_NE(h.monitor, nullptr);
  const SloCall small{"model", "support-1", "small", ""};
  h.Record(kModelCall, Ok(5 * kNsPerSecond));
  h.Evaluate();
  Admission a = h.monitor->Admit(kModelCall);
  EXPECT_TRUE(a.allowed);
  EXPECT_EQ(a.downgrade_model, "small");
  h.Record(small, Failed());
  h.Record(small, Failed());  // small's breaker opens
  a = h.monitor->Admit(kModelCall);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.slo_id, "lat");
  EXPECT_EQ(a.subject, "model=small");
  EXPECT_NE(a.reason.find("circuit breaker open until"), std::string::npos) << a.reason;
  EXPECT_NE(a.reason.find("(the call was downgraded to 'small' by slo 'lat' [model=gpt-4o])"),
            std::string::npos)
      << a.reason;
}

// ---------------------------------------------------------------------------
// Escalation

TEST(SloMonitor, EscalateCalledOncePerFiring) {
  Harness h(R"(version: 1
slos:
  - id: lat
    latency: {p99: 1s, window: 12m}
    on_breach:
      - {when: latency, action: escalate}
      - {when: any, action: escalate}
)");
  ASSERT_NE(h.monitor, nullptr);
  for (int round = 0; round < 3; ++round) {
    for (int s = 0; s < 60; ++s) {  // a slow minute: fires
      h.Record(kModelCall, Ok(2 * kNsPerSecond));
      h.clock->Advance(kNsPerSecond);
    }
    for (int s = 0; s < 20 * 60; ++s) {  // long enough to clear
      h.Record(kModelCall, Ok());
      h.clock->Advance(kNsPerSecond);
    }
    EXPECT_EQ(h.escalated.size(), static_cast<size_t>(round + 1));
  }
  ASSERT_EQ(h.Of("latency_p99").size(), 6u);
  for (const SloEvent& e : h.escalated) {
    EXPECT_TRUE(e.firing);
    EXPECT_EQ(e.signal, "latency_p99");
    EXPECT_EQ(e.action, "escalate,escalate");
  }
}

// ---------------------------------------------------------------------------
// Series

TEST(SloMonitor, GroupedSeriesAndLookups) {
  Harness h(R"(version: 1
slos:
  - id: by-agent-model
    match: {kind: model, agent: ["support-*", "sales"], model: "*"}
    group_by: [agent, model]
    success: {window: 1d, alerts: none}
  - id: all
    success: {window: 1d, alerts: none}
)",
            {.evaluate_every_ns = 0});
  ASSERT_NE(h.monitor, nullptr);
  h.Record({"model", "support-1", "gpt-4o", ""}, Ok());
  h.Record({"model", "support-1", "gpt-4o", ""}, Failed());
  h.Record({"model", "support-2", "openai/gpt-4o", ""}, Ok());  // "*" covers '/'
  h.Record({"model", "sales", "claude", ""}, Ok());
  h.Record({"model", "billing", "claude", ""}, Ok());  // only "all"
  h.Record({"tool", "support-1", "", "search"}, Ok());  // only "all"
  const std::vector<SeriesStatus> all = h.monitor->Status();
  std::vector<std::string> names;
  for (const SeriesStatus& s : all) names.push_back(s.slo_id + "|" + s.subject);
  EXPECT_EQ(names, (std::vector<std::string>{"all|", "by-agent-model|agent=sales,model=claude",
                                             "by-agent-model|agent=support-1,model=gpt-4o",
                                             "by-agent-model|agent=support-2,model=openai/gpt-4o"}));
  EXPECT_EQ(all[0].calls, 6u);
  EXPECT_EQ(all[2].calls, 2u);
  EXPECT_EQ(all[2].errors, 1u);

  auto missing = h.monitor->Get("by-agent-model", "agent=nobody,model=x");
  EXPECT_TRUE(missing.status().IsNotFound());
  EXPECT_EQ(missing.status().message(), "slo 'by-agent-model' has no series 'agent=nobody,model=x'");
  auto no_slo = h.monitor->Get("nope");
  EXPECT_TRUE(no_slo.status().IsNotFound());
  EXPECT_EQ(no_slo.status().message(), "no slo 'nope'");
  EXPECT_EQ(h.monitor->specs().size(), 2u);
}

// Random model names cannot grow memory without bound: past max_series every
// new subject lands in "(other)".
TEST(SloMonitor, SeriesCapSendsNewSubjectsToOther) {
  Harness h(R"(version: 1
slos:
  - id: capped
    group_by: [model]
    max_series: 3
    success: {window: 1h, bucket: 1m, alerts: none}
)",
            {.evaluate_every_ns = 0, .max_cached_tuples = 100});
  ASSERT_NE(h.monitor, nullptr);
  for (int i = 0; i < 1000; ++i) {
    h.Record({"model", "a", fmt::format("m{}", i), ""}, i % 2 ? Ok() : Failed());
  }
  h.Record({"model", "a", "m1", ""}, Ok());  // an early subject keeps its series
  const std::vector<SeriesStatus> all = h.monitor->Status();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].subject, "(other)");
  EXPECT_EQ(all[0].calls, 997u);
  EXPECT_EQ(all[1].subject, "model=m0");
  EXPECT_EQ(all[2].subject, "model=m1");
  EXPECT_EQ(all[2].calls, 2u);
  EXPECT_EQ(all[3].subject, "model=m2");

  // Huge names are clipped in subjects.
  Harness big(R"(version: 1
slos:
  - id: s
    group_by: [model]
    success: {window: 1h, alerts: none}
)",
              {.evaluate_every_ns = 0});
  ASSERT_NE(big.monitor, nullptr);
  const std::string huge(100'000, 'x');
  big.Record({"model", "a", huge, ""}, Ok());
  const auto st = big.monitor->Status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].subject, "model=" + std::string(128, 'x'));
}

TEST(SloMonitor, CreateRejectsBadSpecsAndOptions) {
  SloSpec ok;
  ok.id = "x";
  ok.success.emplace();
  SloSpec bad = ok;
  bad.success->target = 2;
  auto m = SloMonitor::Create({ok, bad}, {});
  EXPECT_TRUE(m.status().IsInvalidArgument());
  EXPECT_EQ(m.status().message().rfind("slo 'x': success.target: ", 0), 0u)
      << m.status().message();
  m = SloMonitor::Create({ok, ok}, {});
  EXPECT_EQ(m.status().message(), "slo 'x': duplicate id (specs[0] and specs[1])");
  m = SloMonitor::Create({ok}, {.evaluate_every_ns = -1});
  EXPECT_TRUE(m.status().IsInvalidArgument());
  m = SloMonitor::Create({ok}, {.max_series_per_slo = 0});
  EXPECT_TRUE(m.status().IsInvalidArgument());
  m = SloMonitor::Create({}, {});
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE((*m)->Admit(kModelCall).allowed);
  EXPECT_TRUE((*m)->Record(kModelCall, Ok()).empty());
  EXPECT_TRUE((*m)->Status().empty());
}

// ---------------------------------------------------------------------------
// Concurrency: run under TSan. Four threads record (and admit), one evaluates
// and moves the clock.

TEST(SloMonitor, ConcurrentRecordAdmitEvaluate) {
  Harness h(R"(version: 1
slos:
  - id: busy
    group_by: [model]
    max_series: 6
    latency: {p50: 50ms, p99: 1s, window: 12m}
    success:
      target: 99%
      window: 1d
      alerts:
        - {name: fast, long: 1h, short: 5m, burn_rate: 2}
        - {name: ticket-x, long: 1h, short: 5m, burn_rate: 50, severity: ticket}
    cost: {p95_per_request_usd: 0.01, per_day_usd: 5}
    circuit_breaker: {minimum_calls: 10, window: 20, open_for: 5s, failure_rate: 30%}
    on_breach:
      - {when: fast, action: rate_limit, rate: 100/s}
      - {when: latency, action: downgrade, model: m0}
      - {when: cost, action: log}
      - {when: breaker_open, action: escalate}
      - {when: ticket-x, action: disable}
  - id: everything
    success: {target: 99%, window: 1h, alerts: none}
)",
            {.evaluate_every_ns = 0});
  ASSERT_NE(h.monitor, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> recorded{0};
  std::atomic<uint64_t> escalations{0};
  std::atomic<uint64_t> transitions{0};
  std::atomic<uint64_t> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20'000; ++i) {
        const std::string model = fmt::format("m{}", rng() % 9);
        const SloCall call{"model", "a", model, ""};
        const Admission a = h.monitor->Admit(call);
        SloOutcome o;
        o.success = rng() % 10 != 0;
        o.error_class = o.success ? "" : "boom";
        o.latency_ns = static_cast<int64_t>(rng() % 2000) * kMs;
        o.cost_nanousd = static_cast<int64_t>(rng() % 20'000'000);
        // Recorded either way, so the recording path stays busy while
        // responses refuse calls.
        if (a.allowed) admitted.fetch_add(1, std::memory_order_relaxed);
        (void)h.monitor->Record(a.downgrade_model ? SloCall{"model", "a", *a.downgrade_model, ""}
                                                  : call,
                                o);
        recorded.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::thread evaluator([&] {
    while (!stop.load()) {
      for (const SloEvent& e : h.monitor->Evaluate()) {
        transitions.fetch_add(1);
        if (e.firing && e.signal == "breaker") escalations.fetch_add(1);
      }
      (void)h.monitor->Status();
      h.clock->Advance(100 * kMs);
    }
  });
  for (std::thread& t : threads) t.join();
  stop.store(true);
  evaluator.join();
  for (const SloEvent& e : h.monitor->Evaluate()) {
    if (e.firing && e.signal == "breaker") escalations.fetch_add(1);
  }
  uint64_t busy_calls = 0;
  for (const SeriesStatus& s : h.monitor->Status()) {
    if (s.slo_id == "busy") busy_calls += s.calls;
  }
  EXPECT_EQ(h.Get("everything").calls, recorded.load());
  EXPECT_EQ(busy_calls, recorded.load());
  EXPECT_LE(h.monitor->Status().size(), 1u + 6u + 1u);
  EXPECT_EQ(h.escalated.size(), escalations.load());
  // Responses did refuse some calls and admit others; signals came and went.
  EXPECT_EQ(recorded.load(), 80'000u);
  EXPECT_GT(admitted.load(), 0u);
  EXPECT_LT(admitted.load(), recorded.load());
  EXPECT_GT(transitions.load(), 0u);
}

// The fast path: a seen tuple, one series with latency and success objectives.
// Prints the cost per call; the bound only catches gross regressions (it must
// also hold in sanitizer builds on a loaded machine).
TEST(SloMonitor, RecordFastPath) {
  Harness h(R"(version: 1
slos:
  - id: fast
    match: {kind: model, agent: "support-*"}
    latency: {p99: 1s}
    success: {}
  - id: other
    match: {kind: tool}
    success: {}
)",
            {.evaluate_every_ns = 0});
  ASSERT_NE(h.monitor, nullptr);
  const SloOutcome o = Ok();
  (void)h.monitor->Record(kModelCall, o);
  constexpr int kCalls = 200'000;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) {
    if (!h.monitor->Record(kModelCall, o).empty()) ADD_FAILURE();
  }
  const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() -
                                                             start)
                        .count() /
                    kCalls;
  std::printf("SloMonitor::Record: %.0f ns per call\n", ns);
  EXPECT_LT(ns, 20'000);
  EXPECT_EQ(h.Get("fast").calls, static_cast<uint64_t>(kCalls) + 1);

  // No allocation for a tuple seen before (within one latency interval, so
  // no sketch is replaced, and with the same value, so none grows).
  t_allocations = 0;
  t_counting = true;
  for (int i = 0; i < 1000; ++i) {
    h.clock->Advance(kMs);
    (void)h.monitor->Record(kModelCall, o);
    (void)h.monitor->Record({"tool", "x", "", "search"}, o);
  }
  t_counting = false;
  // The tool tuple was new on the first pass: its route was built once.
  const int64_t first_pass = t_allocations;
  t_allocations = 0;
  t_counting = true;
  for (int i = 0; i < 1000; ++i) {
    h.clock->Advance(kMs);
    (void)h.monitor->Record(kModelCall, o);
    (void)h.monitor->Record({"tool", "x", "", "search"}, o);
  }
  t_counting = false;
  EXPECT_GT(first_pass, 0);
  EXPECT_EQ(t_allocations, 0);
}

}  // namespace
}  // namespace bastion
