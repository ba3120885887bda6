"""Configured budgets from Python: holds, refusals, responses, persistence."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest

import bastion

NOON = 1_795_262_400 * 10**9  # 2026-11-21T12:00:00Z

CONFIG = """
version: 1
time_zone: America/New_York
budgets:
  - id: per-user-daily
    scope: user
    match: {agent: "support-*"}
    limit_usd: 1.00
    window: daily
    alerts:
      - {at: 50%, level: warning, action: notify}
      - {at: 80%, level: warning, action: downgrade, model: small-model}
  - id: tenant-monthly
    scope: tenant
    limit_usd: 10
    window: monthly
"""


@pytest.fixture
def clock() -> bastion.ManualClock:
    return bastion.ManualClock(NOON)


def open_budgets(clock: bastion.ManualClock, **kwargs: object) -> bastion.Budgets:
    return bastion.Budgets.open(yaml=CONFIG, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_reserve_settle_and_usage(clock: bastion.ManualClock) -> None:
    with open_budgets(clock) as budgets:
        hold = budgets.reserve("0.60", user="alice", tenant="acme", agent="support-1")
        assert hold.budgets == [("per-user-daily", "alice"), ("tenant-monthly", "acme")]
        assert [a["percent"] for a in hold.alerts] == [50]
        settled = budgets.settle(hold, Decimal("0.65"))
        assert settled["overshoot_usd"] == Decimal("0.05")
        row = budgets.usage_of("per-user-daily", "alice")
        assert row["spent_usd"] == Decimal("0.65")
        assert row["remaining_usd"] == Decimal("0.35")
        assert row["window"].startswith("daily America/New_York [2026-11-21T00:00:00")
        assert {r["budget"] for r in budgets.usage()} == {"per-user-daily", "tenant-monthly"}


def test_refusal_is_a_typed_error_and_holds_nothing(clock: bastion.ManualClock) -> None:
    with open_budgets(clock) as budgets:
        budgets.settle(budgets.reserve(0.9, user="bob", tenant="t", agent="support-2"), 0.9)
        with pytest.raises(bastion.BudgetExceededError, match="per-user-daily") as info:
            budgets.reserve(0.2, user="bob", tenant="t", agent="support-2")
        assert isinstance(info.value, bastion.StateError)
        assert info.value.budget == "per-user-daily"
        assert budgets.usage_of("tenant-monthly", "t")["reserved_usd"] == 0


def test_downgrade_in_force_and_window_rollover_in_local_time(clock: bastion.ManualClock) -> None:
    with open_budgets(clock) as budgets:
        first = budgets.reserve(0.85, user="carol", agent="support-1")
        assert first.downgrade_model == "small-model"
        budgets.settle(first, 0.85)
        assert budgets.reserve(0.01, user="carol", agent="support-1").downgrade_model == "small-model"
        # 12:00Z is 07:00 in New York; the local day ends at 05:00Z tomorrow.
        clock.advance(17 * 3600)
        assert budgets.reserve(0.01, user="carol", agent="support-1").downgrade_model is None


def test_release_returns_the_money_and_twice_is_an_error(clock: bastion.ManualClock) -> None:
    with open_budgets(clock) as budgets:
        hold = budgets.reserve(0.5, user="d", agent="support-1")
        budgets.release(hold)
        assert budgets.usage_of("per-user-daily", "d")["reserved_usd"] == 0
        with pytest.raises(bastion.StateError, match="not outstanding"):
            budgets.release(hold)


def test_many_threads_never_overshoot(clock: bastion.ManualClock) -> None:
    with open_budgets(clock) as budgets:
        admitted: list[Decimal] = []
        lock = threading.Lock()

        def worker() -> None:
            for _ in range(300):
                try:
                    budgets.reserve("0.003", user="shared", agent="support-x")
                except bastion.BudgetExceededError:
                    continue
                with lock:
                    admitted.append(Decimal("0.003"))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(admitted) <= Decimal("1.00")
        assert sum(admitted) == budgets.usage_of("per-user-daily", "shared")["reserved_usd"]
        assert len(admitted) == 333


def test_state_survives_a_restart(tmp_path: Path, clock: bastion.ManualClock) -> None:
    state = tmp_path / "state"
    with open_budgets(clock, state_path=state) as budgets:
        budgets.settle(budgets.reserve(0.4, user="e", agent="support-1", tenant="t"), 0.4)
        budgets.reserve(0.1, user="e", agent="support-1", tenant="t")  # in flight at exit
    with open_budgets(clock, state_path=state) as budgets:
        assert budgets.restored["budgets_restored"] == 2
        assert budgets.restored["abandoned_reservations"] == 2
        assert budgets.usage_of("per-user-daily", "e")["spent_usd"] == Decimal("0.5")
        assert budgets.stats("per-user-daily")["settled"] == 2


def test_second_opener_is_busy(tmp_path: Path, clock: bastion.ManualClock) -> None:
    with open_budgets(clock, state_path=tmp_path / "s"):
        with pytest.raises(bastion.BusyError):
            open_budgets(clock, state_path=tmp_path / "s")


def test_closed_budgets_refuse_work(clock: bastion.ManualClock) -> None:
    budgets = open_budgets(clock)
    budgets.close()
    assert budgets.closed
    with pytest.raises(bastion.StateError, match="closed"):
        budgets.reserve(1, user="x")
    budgets.close()  # idempotent


@pytest.mark.parametrize("amount,error", [
    (-1, bastion.InvalidArgumentError),
    ("abc", bastion.InvalidArgumentError),
    ("0.0000000001", bastion.InvalidArgumentError),
    (True, TypeError),
    (None, TypeError),
    ([1], TypeError),
])
def test_bad_amounts(clock: bastion.ManualClock, amount: object, error: type) -> None:
    with open_budgets(clock) as budgets:
        with pytest.raises(error):
            budgets.reserve(amount, user="x")  # type: ignore[arg-type]


def test_bad_config_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("version: 1\nbudgets:\n  - {id: a, scope: user, limit_usd: ten, "
                    "window: daily}\n")
    with pytest.raises(bastion.InvalidArgumentError,
                       match=r"budgets.yaml:3:\d+: budgets\[0\].limit_usd"):
        bastion.Budgets.open(path)
    with pytest.raises(bastion.NotFoundError, match="cannot read budgets file"):
        bastion.Budgets.open(tmp_path / "missing.yaml")
    with pytest.raises(bastion.InvalidArgumentError, match="is a directory"):
        bastion.Budgets.open(tmp_path)


@pytest.mark.parametrize("amount,match", [
    ("0.0000000001", r"estimate_usd: '0.0000000001' is more precise than 1e-9 USD"),
    (Decimal("1E-10"), r"estimate_usd: '1E-10' is more precise than 1e-9 USD"),
    ("99999999999", r"estimate_usd: '99999999999' is out of range"),
    (-0.5, r"estimate_usd must be a non-negative amount of USD, got -0.5"),
    (Decimal("-1"), r"estimate_usd: '-1' is not a non-negative decimal amount"),
    (float("nan"), r"estimate_usd: nan USD is not a finite amount"),
    (float("inf"), r"estimate_usd: inf USD is not a finite amount"),
    (1e10, r"estimate_usd: 10000000000 USD is out of range"),
])
def test_bad_amounts_say_what_and_why(clock: bastion.ManualClock, amount: object,
                                      match: str) -> None:
    with open_budgets(clock) as budgets:
        with pytest.raises(bastion.InvalidArgumentError, match=match):
            budgets.reserve(amount, user="x")  # type: ignore[arg-type]


@pytest.mark.parametrize("amount,held", [
    (0.1, Decimal("0.1")),                 # the float's repr, not 0.1000000000000000055...
    (0.1 + 0.2, Decimal("0.3")),           # 0.30000000000000004 rounds to the nano-USD
    (1e-9, Decimal("0.000000001")),
    (5e-10, Decimal("0")),                 # a tie goes to the even nano-USD
    (1.5e-9, Decimal("0.000000002")),
    (0.0000000025, Decimal("0.000000002")),
    (Decimal("0.100000000000"), Decimal("0.1")),  # zeros past 9 places are exact
    (7, Decimal("7")),
])
def test_floats_round_to_the_nano_usd_and_decimals_are_exact(
        clock: bastion.ManualClock, amount: object, held: Decimal) -> None:
    with open_budgets(clock) as budgets:
        hold = budgets.reserve(amount, user="x")  # type: ignore[arg-type]
        assert hold.estimate_usd == held
        assert type(hold.estimate_usd) is Decimal


def test_every_usd_amount_returned_is_a_decimal(clock: bastion.ManualClock) -> None:
    def usd_values(d: dict) -> list[tuple[str, object]]:
        return [(k, v) for k, v in d.items() if k.endswith("_usd")]

    with open_budgets(clock) as budgets:
        hold = budgets.reserve("0.85", user="alice", tenant="acme", agent="support-1")
        settled = budgets.settle(hold, 0.9)
        found = usd_values(settled)
        for alert in hold.alerts + settled["alerts"]:
            found += usd_values(alert)
        for row in budgets.usage():
            found += usd_values(row)
            assert type(row["used"]) is float  # a ratio, not money
        found += usd_values(budgets.stats("per-user-daily"))
        found += usd_values(budgets.restored)
        assert len(found) > 20
        assert [k for k, v in found if type(v) is not Decimal] == []
        assert budgets.usage_of("per-user-daily", "alice")["used"] == pytest.approx(0.9)
