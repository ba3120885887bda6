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
