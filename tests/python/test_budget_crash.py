"""Budget state across kill -9: open reservations are not handed back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

import bastion

CONFIG = "version: 1\nbudgets:\n  - {id: per-user, scope: user, limit_usd: 1.00, window: monthly}\n"

# $0.30 settled, then two $0.30 holds still open when the process is killed.
CHILD = textwrap.dedent("""
    import sys, bastion
    state, flush_interval, config = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    budgets = bastion.Budgets.open(yaml=config, state_path=state, flush_interval=flush_interval)
    budgets.settle(budgets.reserve("0.30", user="alice"), "0.30")
    held = [budgets.reserve("0.30", user="alice") for _ in range(2)]
    print("ready", flush=True)
    sys.stdin.read()   # killed while waiting here
""")


def run_and_kill(state: Path, flush_interval: float) -> None:
    kill_when_ready(CHILD, str(state), str(flush_interval), CONFIG)


def kill_when_ready(script: str, *args: str) -> None:
    """Runs `script` in a child process and SIGKILLs it once it prints ready."""
    with subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True) as child:
        assert child.stdout is not None and child.stderr is not None
        try:
            line = child.stdout.readline()
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        assert line == "ready\n", child.stderr.read()
    assert child.returncode == -signal.SIGKILL


def test_write_through_keeps_open_reservations_across_kill_9(tmp_path: Path) -> None:
    state = tmp_path / "budgets"
    run_and_kill(state, flush_interval=0)
    with bastion.Budgets.open(yaml=CONFIG, state_path=str(state), flush_interval=0) as budgets:
        restored = budgets.restored
        assert restored["abandoned_reservations"] == 2
        assert restored["abandoned_usd"] == Decimal("0.6")
        usage = budgets.usage_of("per-user", "alice")
        assert usage["spent_usd"] + usage["reserved_usd"] == Decimal("0.9")
        with pytest.raises(bastion.BudgetExceededError) as refused:
            budgets.reserve("0.20", user="alice")
        assert refused.value.budget == "per-user"
        budgets.reserve("0.10", user="alice")   # exactly up to the limit


def test_a_clean_close_keeps_everything_at_any_flush_interval(tmp_path: Path) -> None:
    state = tmp_path / "budgets"
    with bastion.Budgets.open(yaml=CONFIG, state_path=str(state), flush_interval=3600) as b:
        b.settle(b.reserve("0.30", user="alice"), "0.30")
        b.reserve("0.30", user="alice")
    with bastion.Budgets.open(yaml=CONFIG, state_path=str(state)) as b:
        assert b.usage_of("per-user", "alice")["spent_usd"] == Decimal("0.6")


# A guard that saves each reservation before it admits the call: killed while
# the model call runs, its hold is charged on restart.
GUARD_CHILD = textwrap.dedent("""
    import sys, bastion
    guard = bastion.Guard.open(sys.argv[1], budget_flush_interval=0)
    call = guard.begin_model("gpt-4o", "hello", user_id="alice", max_output_tokens=4000)
    assert call.decision.effect == "allow", call.decision
    print("ready", flush=True)
    sys.stdin.read()   # killed while the model call runs
""")


def test_a_guard_with_write_through_budgets_keeps_a_running_calls_hold(tmp_path: Path) -> None:
    root = tmp_path / "guard"
    root.mkdir()
    (root / "budgets.yaml").write_text(CONFIG)
    kill_when_ready(GUARD_CHILD, str(root))
    with bastion.Budgets.open(yaml=CONFIG, state_path=str(root / "state")) as budgets:
        assert budgets.restored["abandoned_reservations"] == 1
        assert budgets.restored["abandoned_usd"] > 0
        usage = budgets.usage_of("per-user", "alice")
        assert usage["spent_usd"] == budgets.restored["abandoned_usd"]


def test_guard_budget_flush_interval_is_checked(tmp_path: Path) -> None:
    with pytest.raises(bastion.InvalidArgumentError, match="budget_flush_interval"):
        bastion.Guard.open(tmp_path / "g", budget_flush_interval=-1)
