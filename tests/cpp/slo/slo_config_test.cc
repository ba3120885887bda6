// Tests for the SLO YAML format and ValidateSloSpec (bastion/slo_monitor.h):
// every field read, written back and read again the same, and errors that name
// the file, line, column and field.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bastion/slo_monitor.h"
#include "test_util.h"

namespace bastion {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kUsd = 1'000'000'000;

const char kExample[] = R"(version: 1
time_zone: "+09:00"
slos:
  - id: support-model
    match: {kind: model, agent: "support-*", model: "*"}
    group_by: [model]
    latency: {p50: 800ms, p95: 2s, p99: 5s, timeout: 30s, window: 1h}
    success:
      target: 99.5%
      window: 30d
      bucket: 1m
      exclude: [client_cancelled]
      alerts: default
    cost: {max_per_request_usd: 0.50, p95_per_request_usd: 0.10, per_day_usd: 100}
    circuit_breaker: {failure_rate: 50%, slow_call: 5s, slow_call_rate: 100%, minimum_calls: 20, window: 100, open_for: 30s, half_open_probes: 5}
    on_breach:
      - {when: page, action: downgrade, model: gpt-4o-mini}
      - {when: ticket, action: rate_limit, rate: 10/s}
      - {when: breaker_open, action: escalate}
  - id: tools
    match: {kind: tool, tool: ["search_*", "lookup"]}
    group_by: [agent, tool]
    time_zone: UTC
    max_series: 50
    success:
      target: 0.99
      window: calendar_month
      bucket: 5m
      alerts:
        - {name: fast, long: 1h, short: 5m, burn_rate: 10, severity: page}
        - {name: slow, long: 1d, short: 2h, burn_rate: 2.5, severity: ticket}
    on_breach:
      - {when: fast, action: disable}
      - {when: any, action: log}
      - {when: slow, action: rate_limit, rate: 30/min}
)";

std::vector<SloSpec> ParseOrDie(std::string_view yaml) {
  auto specs = ParseSloYaml(yaml, "t.yaml");
  EXPECT_TRUE(specs.ok()) << specs.status().ToString();
  return specs.ok() ? std::move(*specs) : std::vector<SloSpec>{};
}

TEST(SloConfig, ReadsEveryField) {
  const std::vector<SloSpec> specs = ParseOrDie(kExample);
  ASSERT_EQ(specs.size(), 2u);
  const SloSpec& a = specs[0];
  EXPECT_EQ(a.id, "support-model");
  EXPECT_EQ(a.kind, "model");
  EXPECT_EQ(a.agents, std::vector<std::string>{"support-*"});
  EXPECT_EQ(a.models, std::vector<std::string>{"*"});
  EXPECT_EQ(a.tools, std::vector<std::string>{"*"});
  EXPECT_EQ(a.group_by, std::vector<std::string>{"model"});
  ASSERT_NE(a.zone, nullptr);
  EXPECT_EQ(a.zone->Name(), "+09:00");
  EXPECT_EQ(a.max_series, 0);
  ASSERT_TRUE(a.latency);
  EXPECT_EQ(a.latency->p50_ns, 800 * kMs);
  EXPECT_EQ(a.latency->p95_ns, 2 * kNsPerSecond);
  EXPECT_EQ(a.latency->p99_ns, 5 * kNsPerSecond);
  EXPECT_EQ(a.latency->timeout_ns, 30 * kNsPerSecond);
  EXPECT_EQ(a.latency->window_ns, kNsPerHour);
  ASSERT_TRUE(a.success);
  EXPECT_DOUBLE_EQ(a.success->target, 0.995);
  EXPECT_EQ(a.success->window_kind, Window::Kind::kRolling);
  EXPECT_EQ(a.success->window_ns, 30 * kNsPerDay);
  EXPECT_EQ(a.success->bucket_ns, kNsPerMinute);
  EXPECT_EQ(a.success->excluded_error_classes, std::vector<std::string>{"client_cancelled"});
  ASSERT_EQ(a.success->alerts.size(), 4u);
  EXPECT_EQ(a.success->alerts[0].name, "page-1h");
  EXPECT_EQ(a.success->alerts[3].name, "ticket-3d");
  ASSERT_TRUE(a.cost);
  EXPECT_EQ(a.cost->max_per_request_nanousd, kUsd / 2);
  EXPECT_EQ(a.cost->p95_per_request_nanousd, kUsd / 10);
  EXPECT_EQ(a.cost->per_day_nanousd, 100 * kUsd);
  EXPECT_EQ(a.cost->window_ns, kNsPerHour);
  ASSERT_TRUE(a.breaker);
  EXPECT_DOUBLE_EQ(a.breaker->failure_rate_threshold_pct, 50);
  EXPECT_EQ(a.breaker->slow_call_duration_ns, 5 * kNsPerSecond);
  EXPECT_DOUBLE_EQ(a.breaker->slow_call_rate_threshold_pct, 100);
  EXPECT_EQ(a.breaker->minimum_calls, 20);
  EXPECT_EQ(a.breaker->window_size, 100);
  EXPECT_EQ(a.breaker->open_duration_ns, 30 * kNsPerSecond);
  EXPECT_EQ(a.breaker->half_open_probes, 5);
  ASSERT_EQ(a.on_breach.size(), 3u);
  EXPECT_EQ(a.on_breach[0].when, "page");
  EXPECT_EQ(a.on_breach[0].kind, BreachAction::Kind::kDowngrade);
  EXPECT_EQ(a.on_breach[0].model, "gpt-4o-mini");
  EXPECT_EQ(a.on_breach[1].kind, BreachAction::Kind::kRateLimit);
  EXPECT_DOUBLE_EQ(a.on_breach[1].rate_per_second, 10);
  EXPECT_EQ(a.on_breach[2].when, "breaker_open");
  EXPECT_EQ(a.on_breach[2].kind, BreachAction::Kind::kEscalate);

  const SloSpec& b = specs[1];
  EXPECT_EQ(b.kind, "tool");
  EXPECT_EQ(b.tools, (std::vector<std::string>{"search_*", "lookup"}));
  EXPECT_EQ(b.group_by, (std::vector<std::string>{"agent", "tool"}));
  ASSERT_NE(b.zone, nullptr);
  EXPECT_EQ(b.zone->Name(), "UTC");  // its own, not the file's
  EXPECT_EQ(b.max_series, 50);
  EXPECT_FALSE(b.latency);
  EXPECT_FALSE(b.cost);
  EXPECT_FALSE(b.breaker);
  ASSERT_TRUE(b.success);
  EXPECT_DOUBLE_EQ(b.success->target, 0.99);
  EXPECT_EQ(b.success->window_kind, Window::Kind::kMonthly);
  EXPECT_EQ(b.success->bucket_ns, 5 * kNsPerMinute);
  ASSERT_EQ(b.success->alerts.size(), 2u);
  EXPECT_EQ(b.success->alerts[1].name, "slow");
  EXPECT_EQ(b.success->alerts[1].long_window_ns, kNsPerDay);
  EXPECT_EQ(b.success->alerts[1].short_window_ns, 2 * kNsPerHour);
  EXPECT_DOUBLE_EQ(b.success->alerts[1].burn_rate, 2.5);
  EXPECT_EQ(b.success->alerts[1].severity, AlertSeverity::kTicket);
  ASSERT_EQ(b.on_breach.size(), 3u);
  EXPECT_EQ(b.on_breach[0].kind, BreachAction::Kind::kDisable);
  EXPECT_EQ(b.on_breach[1].kind, BreachAction::Kind::kLog);
  EXPECT_DOUBLE_EQ(b.on_breach[2].rate_per_second, 0.5);
}

TEST(SloConfig, ActionsInForceReadAsKindAndParameter) {
  BreachAction downgrade;
  downgrade.kind = BreachAction::Kind::kDowngrade;
  downgrade.model = "gpt-4o-mini";
  BreachAction limit;
  limit.kind = BreachAction::Kind::kRateLimit;
  limit.rate_per_second = 0.5;
  BreachAction disable;
  disable.kind = BreachAction::Kind::kDisable;
  EXPECT_EQ(BreachActionText(downgrade), "downgrade:gpt-4o-mini");
  EXPECT_EQ(BreachActionText(limit), "rate_limit:0.5/s");
  EXPECT_EQ(BreachActionText(disable), "disable");
}

TEST(SloConfig, IanaTimeZones) {
  if (!TimeZone::Load("America/New_York").ok()) GTEST_SKIP() << "no zoneinfo here";
  const auto specs = ParseOrDie(
      "version: 1\ntime_zone: Asia/Seoul\nslos:\n  - id: x\n    cost: {per_day_usd: 1}\n"
      "  - id: y\n    time_zone: America/New_York\n    cost: {per_day_usd: 1}\n");
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].zone->Name(), "Asia/Seoul");
  EXPECT_EQ(specs[1].zone->Name(), "America/New_York");
  EXPECT_EQ(FormatSloYaml(ParseOrDie(FormatSloYaml(specs))), FormatSloYaml(specs));
}

TEST(SloConfig, DefaultsForOmittedFields) {
  const auto specs = ParseOrDie("version: 1\nslos:\n  - id: x\n    success: {}\n");
  ASSERT_EQ(specs.size(), 1u);
  const SloSpec& s = specs[0];
  EXPECT_EQ(s.kind, "*");
  EXPECT_EQ(s.agents, std::vector<std::string>{"*"});
  EXPECT_TRUE(s.group_by.empty());
  EXPECT_EQ(s.zone, nullptr);
  ASSERT_TRUE(s.success);
  EXPECT_DOUBLE_EQ(s.success->target, 0.999);
  EXPECT_EQ(s.success->window_ns, 30 * kNsPerDay);
  EXPECT_EQ(s.success->alerts.size(), 4u);
  EXPECT_TRUE(ValidateSloSpec(s).ok());

  const auto none = ParseOrDie(
      "version: 1\nslos:\n  - id: x\n    success: {window: 1d, alerts: none}\n");
  ASSERT_EQ(none.size(), 1u);
  EXPECT_TRUE(none[0].success->alerts.empty());
  EXPECT_TRUE(ParseOrDie("version: 1\nslos: []\n").empty());
}

TEST(SloConfig, RoundTrips) {
  const std::vector<SloSpec> specs = ParseOrDie(kExample);
  const std::string once = FormatSloYaml(specs);
  const std::vector<SloSpec> again = ParseOrDie(once);
  ASSERT_EQ(again.size(), specs.size()) << once;
  EXPECT_EQ(FormatSloYaml(again), once);
  // Spot checks that the text carries the values, not just itself.
  EXPECT_EQ(again[0].latency->p50_ns, 800 * kMs);
  EXPECT_DOUBLE_EQ(again[0].success->target, 0.995);
  EXPECT_EQ(again[0].zone->Name(), "+09:00");
  EXPECT_EQ(again[0].cost->per_day_nanousd, 100 * kUsd);
  EXPECT_DOUBLE_EQ(again[0].breaker->failure_rate_threshold_pct, 50);
  EXPECT_EQ(again[1].success->window_kind, Window::Kind::kMonthly);
  EXPECT_DOUBLE_EQ(again[1].on_breach[2].rate_per_second, 0.5);
  EXPECT_EQ(again[1].max_series, 50);

  // Specs built in code, with text that needs quoting.
  SloSpec odd;
  odd.id = "quote \" and \\ and: colon";
  odd.models = {"openai/*", "a\tb"};
  odd.latency.emplace();
  odd.latency->p99_ns = 1'500'000;  // 1.5ms
  odd.latency->window_ns = 90 * kNsPerSecond;
  odd.cost.emplace();
  odd.cost->per_day_nanousd = 1;  // one nano-dollar
  odd.on_breach.push_back({"latency", BreachAction::Kind::kRateLimit, "", 7.0 / 3600});
  ASSERT_TRUE(ValidateSloSpec(odd).ok()) << ValidateSloSpec(odd).ToString();
  const std::string text = FormatSloYaml({odd});
  const auto back = ParseOrDie(text);
  ASSERT_EQ(back.size(), 1u) << text;
  EXPECT_EQ(back[0].id, odd.id);
  EXPECT_EQ(back[0].models, odd.models);
  EXPECT_EQ(back[0].latency->p99_ns, 1'500'000);
  EXPECT_EQ(back[0].latency->window_ns, 90 * kNsPerSecond);
  EXPECT_EQ(back[0].cost->per_day_nanousd, 1);
  EXPECT_NEAR(back[0].on_breach[0].rate_per_second, 7.0 / 3600, 1e-15);
  EXPECT_EQ(FormatSloYaml(back), text);
}

TEST(SloConfig, LoadFileNamesTheFile) {
  testing::TempDir dir;
  const std::string path = dir.Sub("slos.yaml");
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  const std::string bad = "version: 1\nslos:\n  - id: x\n    latency: {p99: soon}\n";
  std::fwrite(bad.data(), 1, bad.size(), f);
  std::fclose(f);
  auto loaded = LoadSloYamlFile(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().message().rfind(path + ":4:20: slos[0].latency.p99: ", 0), 0u)
      << loaded.status().message();

  auto missing = LoadSloYamlFile(dir.Sub("nope.yaml"));
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
  EXPECT_TRUE(LoadSloYamlFile(dir.path()).status().IsInvalidArgument());
}

// ---------------------------------------------------------------------------
// Errors: each names source, line, column and field path.

struct ErrorCase {
  const char* name;
  const char* yaml;
  const char* error;  // the start of the message after "t.yaml:"
};

// Lines 1-3 of most cases: "version: 1", "slos:", "  - id: a".
#define HEAD "version: 1\nslos:\n  - id: a\n"

const ErrorCase kErrorCases[] = {
    {"malformed yaml", HEAD "    latency: {p99: 1s\n", "5:1: malformed YAML: "},
    {"empty document", "", "1:1: empty document (expected a mapping starting with 'version: 1')"},
    {"missing version", "slos: []\n",
     "1:1: missing required key 'version' (write 'version: 1' first)"},
    {"unsupported version", "version: 2\nslos: []\n",
     "1:10: version: unsupported version 2 (this build reads version 1)"},
    {"unknown top-level key", "version: 1\nslo: []\n",
     "2:1: unknown key 'slo' (did you mean 'slos'?)"},
    {"missing slos", "version: 1\n", "1:1: missing required key 'slos'"},
    {"slos not a list", "version: 1\nslos: {a: 1}\n", "2:7: slos: expected a list, found a mapping"},
    {"slo not a mapping", "version: 1\nslos:\n  - support\n",
     "3:5: slos[0]: expected a mapping, found a scalar"},
    {"missing id", "version: 1\nslos:\n  - success: {}\n",
     "3:5: slos[0]: missing required key 'id'"},
    {"empty id", "version: 1\nslos:\n  - id: \"\"\n    success: {}\n",
     "3:9: slos[0].id: must not be empty"},
    {"unknown slo key", HEAD "    latncy: {p99: 1s}\n",
     "4:5: slos[0]: unknown key 'latncy' (did you mean 'latency'?)"},
    {"duplicate slo key", HEAD "    success: {}\n    success: {}\n",
     "5:5: slos[0]: duplicate key 'success' (first defined at line 4)"},
    {"nothing to monitor", HEAD "    match: {kind: model}\n",
     "3:5: slos[0]: nothing to monitor: set latency, success, cost or circuit_breaker"},
    {"unknown kind", HEAD "    match: {kind: modle}\n    success: {}\n",
     "4:19: slos[0].match.kind: unknown kind 'modle' (use model, tool or \"*\")"},
    {"bad agent glob", HEAD "    match: {agent: \"support-[a\"}\n    success: {}\n",
     "4:20: slos[0].match.agent: invalid glob 'support-[a': "},
    {"bad glob in a list", HEAD "    match:\n      model: [gpt-4o, \"x[\"]\n    success: {}\n",
     "5:23: slos[0].match.model[1]: invalid glob 'x[': "},
    {"unknown group_by field", HEAD "    group_by: [model, user]\n    success: {}\n",
     "4:23: slos[0].group_by[1]: unknown field 'user' (use agent, model or tool)"},
    {"group_by twice", HEAD "    group_by:\n      - model\n      - model\n    success: {}\n",
     "6:9: slos[0].group_by[1]: 'model' appears twice"},
    {"max_series zero", HEAD "    max_series: 0\n    success: {}\n",
     "4:17: slos[0].max_series: must be at least 1"},
    {"unknown time zone", HEAD "    time_zone: Mars/Olympus_Mons\n    success: {}\n",
     "4:16: slos[0].time_zone: time zone 'Mars/Olympus_Mons' not found"},
    {"latency not a duration", HEAD "    latency: {p50: fast}\n",
     "4:20: slos[0].latency.p50: invalid duration 'fast': "},
    {"latency unknown key", HEAD "    latency: {p90: 1s}\n",
     "4:15: slos[0].latency: unknown key 'p90' (did you mean 'p50'?)"},
    {"latency p95 below p50", HEAD "    latency:\n      p50: 2s\n      p95: 1s\n",
     "6:12: slos[0].latency.p95: must not be below the p50 target (1s < 2s)"},
    {"latency only a window", HEAD "    latency: {window: 5m}\n",
     "4:14: slos[0].latency: set at least one of p50, p95, p99 and timeout"},
    {"target out of range", HEAD "    success: {target: 150%}\n",
     "4:23: slos[0].success.target: 150% must be between 0% and 100%"},
    {"target of 100%", HEAD "    success:\n      target: 100%\n",
     "5:15: slos[0].success.target: must be in (0, 1), e.g. 0.999"},
    {"window not a duration", HEAD "    success: {window: forever}\n",
     "4:23: slos[0].success.window: invalid duration 'forever': "},
    {"window not whole buckets", HEAD "    success:\n      window: 90s\n      bucket: 1m\n",
     "5:15: slos[0].success.window: must be a positive multiple of bucket"},
    {"exclude empty class", HEAD "    success:\n      exclude: [timeout, \"\"]\n",
     "5:26: slos[0].success.exclude[1]: must not be empty"},
    {"alerts neither default nor a list", HEAD "    success: {alerts: all}\n",
     "4:23: slos[0].success.alerts: expected 'default', 'none' or a list of rules, found 'all'"},
    {"alert missing short", HEAD
     "    success:\n      alerts:\n        - {name: fast, long: 1h, burn_rate: 10}\n",
     "6:11: slos[0].success.alerts[0]: missing required key 'short'"},
    {"alert unknown severity", HEAD
     "    success:\n      alerts:\n        - {name: f, long: 1h, short: 5m, burn_rate: 10, "
     "severity: urgent}\n",
     "6:67: slos[0].success.alerts[0].severity: unknown severity 'urgent' (use page or ticket)"},
    {"alert longer than the window", HEAD
     "    success:\n      window: 1d\n      alerts:\n        - name: f\n          long: 2d\n"
     "          short: 1h\n          burn_rate: 2\n",
     "8:17: slos[0].success.alerts[0].long: alert 'f': must be in (0, the SLO window] (1d here)"},
    {"default alerts longer than the window", HEAD
     "    success:\n      window: 1d\n      alerts: default\n",
     "6:15: slos[0].success.alerts: [3].long: alert 'ticket-3d': must be in (0, the SLO window]"},
    {"alert short not below long", HEAD
     "    success:\n      alerts:\n        - {name: f, long: 1h, short: 1h, burn_rate: 2}\n",
     "6:38: slos[0].success.alerts[0].short: alert 'f': must be >= bucket and < long"},
    {"alert named like a trigger", HEAD
     "    success:\n      alerts:\n        - {name: page, long: 1h, short: 5m, burn_rate: 2}\n",
     "6:18: slos[0].success.alerts[0].name: 'page' is reserved for on_breach.when"},
    {"duplicate alert names", HEAD
     "    success:\n      alerts:\n        - {name: f, long: 1h, short: 5m, burn_rate: 2}\n"
     "        - {name: f, long: 6h, short: 30m, burn_rate: 2}\n",
     "7:18: slos[0].success.alerts[1].name: duplicate alert name 'f' (also alerts[0])"},
    {"cost not an amount", HEAD "    cost: {per_day_usd: ten}\n",
     "4:25: slos[0].cost.per_day_usd: expected an amount in USD with at most 9 decimal places, "
     "found 'ten'"},
    {"cost with no target", HEAD "    cost: {window: 1h}\n",
     "4:11: slos[0].cost: set at least one of max_per_request_usd, p95_per_request_usd and "
     "per_day_usd"},
    {"cost of zero", HEAD "    cost:\n      max_per_request_usd: 0\n",
     "5:28: slos[0].cost.max_per_request_usd: must be more than zero"},
    {"breaker failure rate zero", HEAD "    circuit_breaker: {failure_rate: 0%}\n",
     "4:37: slos[0].circuit_breaker.failure_rate: must be in (0, 100]"},
    {"breaker minimum above window", HEAD
     "    circuit_breaker:\n      minimum_calls: 50\n      window: 10\n",
     "5:22: slos[0].circuit_breaker.minimum_calls: must be in [1, window]"},
    {"breaker unknown key", HEAD "    circuit_breaker: {open_duration: 30s}\n",
     "4:23: slos[0].circuit_breaker: unknown key 'open_duration' (allowed: failure_rate, "},
    {"breaker count not a number", HEAD "    circuit_breaker: {window: lots}\n",
     "4:31: slos[0].circuit_breaker.window: expected a non-negative integer, found 'lots'"},
    {"on_breach not a list", HEAD "    success: {}\n    on_breach: {when: page}\n",
     "5:16: slos[0].on_breach: expected a list, found a mapping"},
    {"unknown action", HEAD "    success: {}\n    on_breach:\n      - {when: page, action: shutdown}\n",
     "6:30: slos[0].on_breach[0].action: unknown action 'shutdown' (use log, downgrade, disable, "
     "rate_limit or escalate)"},
    {"action missing when", HEAD "    success: {}\n    on_breach:\n      - {action: log}\n",
     "6:9: slos[0].on_breach[0]: missing required key 'when'"},
    {"unknown trigger", HEAD "    success: {}\n    on_breach:\n      - {when: pager, action: log}\n",
     "6:16: slos[0].on_breach[0].when: unknown trigger 'pager' (use page, ticket, latency, cost, "
     "breaker_open, any or an alert rule name: page-1h, page-6h, ticket-1d, ticket-3d)"},
    {"trigger that cannot fire", HEAD
     "    success: {}\n    on_breach:\n      - {when: latency, action: log}\n",
     "6:16: slos[0].on_breach[0].when: 'latency' can never fire: this SLO has no latency target"},
    {"downgrade without a model", HEAD
     "    success: {}\n    on_breach:\n      - {when: page, action: downgrade}\n",
     "6:9: slos[0].on_breach[0]: model: downgrade needs a model"},
    {"model on another action", HEAD
     "    success: {}\n    on_breach:\n      - {when: page, action: disable, model: m}\n",
     "6:46: slos[0].on_breach[0].model: model applies only to downgrade, not disable"},
    {"downgrading tool calls", HEAD
     "    match: {kind: tool}\n    success: {}\n    on_breach:\n"
     "      - {when: page, action: downgrade, model: m}\n",
     "7:30: slos[0].on_breach[0].action: downgrade changes the model of model calls"},
    {"bad rate", HEAD
     "    success: {}\n    on_breach:\n      - {when: page, action: rate_limit, rate: 10/day}\n",
     "6:48: slos[0].on_breach[0].rate: invalid rate limit '10/day': unknown unit 'day'"},
    {"rate limit without a rate", HEAD
     "    success: {}\n    on_breach:\n      - {when: page, action: rate_limit}\n",
     "6:9: slos[0].on_breach[0]: rate: must be more than zero per second"},
    {"duplicate slo id",
     "version: 1\nslos:\n  - id: a\n    success: {}\n  - id: b\n    success: {}\n  - id: a\n"
     "    success: {}\n",
     "7:9: slos[2].id: duplicate slo id 'a' (first defined at line 3)"},
};

TEST(SloConfig, ErrorsNameLineColumnAndField) {
  EXPECT_GE(std::size(kErrorCases), 25u);
  for (const ErrorCase& c : kErrorCases) {
    auto parsed = ParseSloYaml(c.yaml, "t.yaml");
    ASSERT_FALSE(parsed.ok()) << c.name << ": parsed although it should not";
    EXPECT_TRUE(parsed.status().IsInvalidArgument()) << c.name << ": " << parsed.status().ToString();
    const std::string want = std::string("t.yaml:") + c.error;
    const std::string& got = parsed.status().message();
    EXPECT_EQ(got.substr(0, want.size()), want) << c.name << "\n   got: " << got;
  }
}

TEST(SloConfig, NeverThrowsOnDamagedInput) {
  const std::string doc(kExample);
  for (size_t n = 0; n <= doc.size(); n += 5) {
    auto parsed = ParseSloYaml(std::string_view(doc).substr(0, n), "prefix.yaml");
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().message().rfind("prefix.yaml", 0), 0u)
          << parsed.status().ToString();
    }
  }
  std::mt19937 rng(11);
  const char junk[] = "[]{}:,-*&!|>'\"#%@` \n\t\\?0a\x01\xff";
  for (int i = 0; i < 2000; ++i) {
    std::string damaged = doc;
    for (int k = 0; k < 3; ++k) damaged[rng() % damaged.size()] = junk[rng() % (sizeof(junk) - 1)];
    auto parsed = ParseSloYaml(damaged, "damaged.yaml");
    if (!parsed.ok()) EXPECT_FALSE(parsed.status().message().empty());
  }
}

// ValidateSloSpec names fields as the struct does.
TEST(SloConfig, ValidateNamesStructFields) {
  struct Case {
    const char* name;
    void (*damage)(SloSpec*);
    const char* error;
  };
  const Case cases[] = {
      {"no id", [](SloSpec* s) { s->id.clear(); }, "slo '': id: must not be empty"},
      {"empty glob list", [](SloSpec* s) { s->agents.clear(); },
       "slo 'x': agents: must not be empty"},
      {"nothing", [](SloSpec* s) { s->success.reset(); },
       "slo 'x': nothing to monitor: set latency, success, cost or circuit_breaker"},
      {"target", [](SloSpec* s) { s->success->target = 1; },
       "slo 'x': success.target: must be in (0, 1)"},
      {"per-run window", [](SloSpec* s) { s->success->window_kind = Window::Kind::kPerRun; },
       "slo 'x': success.window_kind: must be rolling, daily, weekly or monthly"},
      {"short window",
       [](SloSpec* s) { s->success->alerts[1].short_window_ns = 10 * kNsPerHour; },
       "slo 'x': success.alerts[1].short_window_ns: alert 'page-6h': must be >= bucket_ns"},
      {"calendar alert too long",
       [](SloSpec* s) {
         s->success->window_kind = Window::Kind::kDaily;
         s->success->alerts[0].long_window_ns = 40 * kNsPerDay;
       },
       "slo 'x': success.alerts[0].long_window_ns: alert 'page-1h': must be in (0, the SLO "
       "window_ns] (31 days for a calendar window)"},
      {"breaker", [](SloSpec* s) { s->breaker.emplace().half_open_probes = 0; },
       "slo 'x': breaker.half_open_probes: must be >= 1"},
      {"rate", [](SloSpec* s) { s->on_breach.push_back({"page", BreachAction::Kind::kRateLimit}); },
       "slo 'x': on_breach[0].rate_per_second: must be more than zero per second"},
      {"when", [](SloSpec* s) { s->on_breach.push_back({"cost", BreachAction::Kind::kLog}); },
       "slo 'x': on_breach[0].when: 'cost' can never fire: this SLO has no cost objective"},
  };
  for (const Case& c : cases) {
    SloSpec spec;
    spec.id = "x";
    spec.success.emplace();
    ASSERT_TRUE(ValidateSloSpec(spec).ok());
    c.damage(&spec);
    const Status s = ValidateSloSpec(spec);
    EXPECT_TRUE(s.IsInvalidArgument()) << c.name;
    EXPECT_EQ(s.message().rfind(c.error, 0), 0u) << c.name << "\n   got: " << s.message();
  }
}

}  // namespace
}  // namespace bastion
