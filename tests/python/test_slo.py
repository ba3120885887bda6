"""SLO monitoring from Python: signals, responses, escalation, summary, policies."""

from __future__ import annotations

import sys
import threading
from decimal import Decimal

import pytest

import bastion

NOON = 1_795_262_400 * 10**9  # 2026-11-21T12:00:00Z

CONFIG = """
version: 1
slos:
  - id: models
    match: {kind: model, agent: "support-*"}
    group_by: [model]
    latency: {p99: 2s, timeout: 10s, window: 1h}
    success: {target: 99.9%, window: 30d, exclude: [client_cancelled]}
    cost: {max_per_request_usd: 0.50, per_day_usd: 5}
    circuit_breaker: {failure_rate: 50%, minimum_calls: 10, window: 20, open_for: 30s,
                      half_open_probes: 2}
    on_breach:
      - {when: page, action: downgrade, model: small}
      - {when: page, action: escalate}
      - {when: cost, action: rate_limit, rate: 1/s}
  - id: optional-search
    match: {kind: tool, tool: "web_search"}
    success: {target: 99%, window: 1d, alerts: [{name: fast, long: 1h, short: 5m, burn_rate: 10, severity: page}]}
    on_breach:
      - {when: fast, action: disable}
"""


@pytest.fixture
def clock() -> bastion.ManualClock:
    return bastion.ManualClock(NOON)


def traffic(slos: bastion.SloMonitor, clock: bastion.ManualClock, minutes: int,
            error_every: int = 0, model: str = "big", latency: float = 0.3) -> None:
    for _ in range(minutes):
        for i in range(10):
            failing = error_every > 0 and i % error_every == 0
            slos.record(kind="model", agent="support-1", model=model, success=not failing,
                        error_class="upstream_5xx" if failing else "", latency=latency)
        clock.advance(60)
        slos.evaluate()


def test_burn_rate_page_downgrades_and_escalates_once(clock: bastion.ManualClock) -> None:
    paged: list[dict] = []
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0,
                                   on_escalate=paged.append)
    traffic(slos, clock, 60)
    assert slos.admit(kind="model", agent="support-1", model="big")["downgrade_model"] is None
    traffic(slos, clock, 10, error_every=5)  # 20% errors: 200x the allowed rate
    admission = slos.admit(kind="model", agent="support-1", model="big")
    assert admission["downgrade_model"] == "small"
    assert "burn_rate:page-1h" in admission["reason"]
    # One call per signal that started firing, none repeated.
    assert len(paged) == len({e["signal"] for e in paged})
    assert {e["signal"] for e in paged} >= {"burn_rate:page-1h"}
    assert all(e["firing"] for e in paged)
    status = slos.get("models", "model=big")
    assert status["error_budget_remaining"] < 0
    assert "burn_rate:page-1h" in status["firing"]
    assert slos.burn_rate("models", 3600, "model=big") > 14.4
    # Errors stop: the short windows empty out and the page clears.
    traffic(slos, clock, 40)
    assert slos.admit(kind="model", agent="support-1", model="big")["downgrade_model"] is None
    assert "burn_rate:page-1h" not in slos.get("models", "model=big")["firing"]


def test_events_are_transitions(clock: bastion.ManualClock) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0)
    seen = []
    for minute in range(30):
        for i in range(10):
            slos.record(kind="model", agent="support-1", model="m", success=i > 2,
                        error_class="upstream_5xx", latency=0.1)
        clock.advance(60)
        seen += [(e["signal"], e["firing"]) for e in slos.evaluate()]
    # Each signal starts once and never repeats while it keeps firing.
    assert len(seen) == len(set(seen))
    assert ("burn_rate:page-1h", True) in seen


def test_breaker_opens_refuses_then_recovers(clock: bastion.ManualClock) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock)
    for _ in range(10):
        slos.record(kind="model", agent="support-1", model="flaky", success=False,
                    error_class="upstream_5xx", latency=0.1)
    refused = slos.admit(kind="model", agent="support-1", model="flaky")
    assert not refused["allowed"]
    assert "circuit breaker open until" in refused["reason"]
    assert slos.get("models", "model=flaky")["breaker"] == "open"
    clock.advance(31)
    for _ in range(2):
        assert slos.admit(kind="model", agent="support-1", model="flaky")["allowed"]
    assert not slos.admit(kind="model", agent="support-1", model="flaky")["allowed"]  # probes out
    for _ in range(2):
        slos.record(kind="model", agent="support-1", model="flaky", success=True, latency=0.1)
    assert slos.get("models", "model=flaky")["breaker"] == "closed"


def test_optional_tool_is_disabled_while_failing(clock: bastion.ManualClock) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0)
    for _ in range(10):
        for i in range(10):
            slos.record(kind="tool", agent="a", tool="web_search", success=i > 1,
                        error_class="timeout", latency=0.2)  # 20% errors: 20x the allowance
        clock.advance(60)
        slos.evaluate()
    verdict = slos.admit(kind="tool", agent="a", tool="web_search")
    assert not verdict["allowed"] and "disabled" in verdict["reason"]
    assert slos.admit(kind="tool", agent="a", tool="other_tool")["allowed"]


def test_cost_signals_and_rate_limit(clock: bastion.ManualClock) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0)
    slos.record(kind="model", agent="support-1", model="m", latency=0.2, cost_usd="0.75")
    events = slos.evaluate()
    assert ("cost_per_request", True) in [(e["signal"], e["firing"]) for e in events]
    assert slos.admit(kind="model", agent="support-1", model="m")["allowed"]
    refused = slos.admit(kind="model", agent="support-1", model="m")
    assert not refused["allowed"]
    status = slos.get("models", "model=m")
    assert status["cost_max_per_request_usd"] == Decimal("0.75")
    assert status["cost_today_usd"] == Decimal("0.75")


def test_latency_quantiles_and_timeouts(clock: bastion.ManualClock) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0)
    for i in range(1000):
        slos.record(kind="model", agent="support-1", model="slow", latency=0.001 * (i + 1))
    slos.record(kind="model", agent="support-1", model="slow", latency=11)  # past the timeout
    status = slos.get("models", "model=slow")
    assert status["errors"] == 1  # the timeout counts against the SLO
    exact_p99 = 0.001 * 991
    assert abs(status["p99_ns"] / 1e9 - exact_p99) <= 0.01 * exact_p99 + 1e-9
    assert status["p99_target_ns"] == 2 * 10**9


def test_escalation_callback_errors_do_not_break_the_monitor(
        clock: bastion.ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))

    def boom(event: dict) -> None:
        raise RuntimeError("pager down")

    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0, on_escalate=boom)
    traffic(slos, clock, 10, error_every=2)
    assert "burn_rate:page-1h" in slos.get("models", "model=big")["firing"]
    assert reported and all(isinstance(e, RuntimeError) for e in reported)


def test_many_threads_record_while_one_evaluates(clock: bastion.ManualClock) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0)

    def worker(n: int) -> None:
        for i in range(2000):
            slos.record(kind="model", agent="support-1", model=f"m{n % 2}", latency=0.05)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for _ in range(50):
        slos.evaluate()
        slos.status()
    for t in threads:
        t.join()
    assert sum(s["calls"] for s in slos.status() if s["slo"] == "models") == 8000


def test_summary_renders_budgets_and_slos(clock: bastion.ManualClock) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0)
    traffic(slos, clock, 3)
    budgets = bastion.Budgets.open(
        yaml="version: 1\nbudgets:\n  - {id: daily, scope: user, limit_usd: 2, window: daily}\n",
        clock=clock)
    budgets.settle(budgets.reserve("0.5", user="alice"), "0.5")
    s = bastion.summary(budgets=budgets, slos=slos)
    text = str(s)
    assert "daily" in text and "alice" in text and "25.0%" in text
    assert "model=big" in text and "99.9%" in text
    html = s._repr_html_()
    assert html.count("<table>") == 2 and "model=big" in html
    frames = s.to_pandas()
    assert list(frames[0]["key"]) == ["alice"]
    assert "error_budget_remaining" in frames[1].columns
    only_slos = str(bastion.summary(slos=slos))
    assert "Budgets" not in only_slos
    with pytest.raises(TypeError, match="budgets must be bastion.Budgets"):
        bastion.summary(budgets="x")  # type: ignore[arg-type]


def test_policies_read_slo_and_budget_state(clock: bastion.ManualClock) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0)
    budgets = bastion.Budgets.open(
        yaml="version: 1\nbudgets:\n  - {id: daily, scope: user, limit_usd: 1, window: daily}\n",
        clock=clock)
    engine = bastion.PolicyEngine.from_sources([("p.lua", """
return {
  id = "guard",
  before_model = function(call)
    local s = slo.get("models")
    if s.error_budget_remaining < 0 then
      return downgrade("small", "error budget overspent")
    end
    if budget.remaining("daily") < 0.10 then return deny("budget nearly spent") end
  end,
}
""")])
    engine.attach(budgets=budgets, slos=slos, pricing=bastion.default_pricing())
    call = {"agent_id": "support-1", "user_id": "alice", "model": "big"}
    assert engine.evaluate("before_model", call).effect == "allow"
    budgets.settle(budgets.reserve("0.95", user="alice"), "0.95")
    assert engine.evaluate("before_model", call).effect == "deny"
    traffic(slos, clock, 10, error_every=2)
    d = engine.evaluate("before_model", {**call, "user_id": "bob"})
    assert d.effect == "modify" and d.model_downgrade == "small"
    engine.attach()  # detached: the helpers raise and the policy fails closed
    d = engine.evaluate("before_model", call)
    assert d.effect == "deny" and "no budgets, SLOs or prices" in d.errors[0]["message"]


@pytest.mark.parametrize("yaml_text,match", [
    ("version: 1\nslos:\n  - id: a\n    latency: {p99: fast}\n", r"<slos>:4:\d+: slos\[0\].latency.p99"),
    ("version: 1\nslos:\n  - id: a\n    sucess: {}\n", r"did you mean 'success'"),
    ("version: 1\nslos: [\n", r"<slos>:\d+:\d+: malformed YAML"),
])
def test_bad_yaml_names_where(yaml_text: str, match: str) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match=match):
        bastion.SloMonitor.open(yaml=yaml_text)


@pytest.mark.parametrize("kwargs,error", [
    ({"kind": "agent"}, bastion.InvalidArgumentError),
    ({"latency": -1.0}, bastion.InvalidArgumentError),
    ({"cost_usd": "-1"}, bastion.InvalidArgumentError),
    ({"cost_usd": -0.1}, bastion.InvalidArgumentError),
    ({"cost_usd": "0.0000000001"}, bastion.InvalidArgumentError),
    ({"cost_usd": float("nan")}, bastion.InvalidArgumentError),
    ({"cost_usd": True}, TypeError),
    ({"success": "yes"}, TypeError),
])
def test_bad_record_arguments(kwargs: dict, error: type) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG)
    with pytest.raises(error):
        slos.record(**kwargs)


def test_cost_figures_are_decimals_and_floats_round_like_budgets(
        clock: bastion.ManualClock) -> None:
    slos = bastion.SloMonitor.open(yaml=CONFIG, clock=clock, evaluate_every=0)
    # 0.55 + 0.2 is 0.7500000000000001: rounded to the nano-USD, as budgets do.
    slos.record(kind="model", agent="support-1", model="m", latency=0.2, cost_usd=0.55 + 0.2)
    slos.record(kind="model", agent="support-1", model="m", latency=0.2,
                cost_usd=Decimal("0.000000001"))
    status = slos.get("models", "model=m")
    costs = {k: v for k, v in status.items() if k.startswith("cost_")}
    assert set(costs) == {"cost_today_usd", "cost_p95_per_request_usd",
                          "cost_max_per_request_usd"}
    assert all(type(v) is Decimal for v in costs.values()), costs
    assert costs["cost_today_usd"] == Decimal("0.750000001")
    assert costs["cost_max_per_request_usd"] == Decimal("0.75")
    events = slos.evaluate()
    details = [e["detail"] for e in events if e["signal"] == "cost_per_request"]
    # The same digits as the status, in the one format of amounts in messages.
    assert details and "most expensive call $0.75 in" in details[0], details
