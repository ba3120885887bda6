"""Budgets shared by the worker processes of a fleet, on a real redis-server:
exact admission across processes and threads, a SIGKILLed worker's holds,
Redis going away under a guard."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

import bastion
from helpers import RedisServer

CONFIG = """
version: 1
budgets:
  - id: team
    scope: global
    limit_usd: 2.00
    window: daily
"""

# One worker process: 4 threads reserve $0.01 and settle it until each has
# been refused 20 times in a row; prints what it admitted, in cents.
WORKER = textwrap.dedent("""
    import sys, threading, time, bastion
    url, worker, leases = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    budgets = bastion.Budgets.open(yaml=sys.argv[4], store=url, worker=worker, leases=leases)
    admitted = []
    def run():
        n = refused = 0
        while refused < 20:
            try:
                hold = budgets.reserve("0.01")
            except bastion.BudgetExceededError:
                refused += 1
                time.sleep(0.002)
                continue
            refused = 0
            n += 1
            budgets.settle(hold, "0.01")
        admitted.append(n)
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    budgets.close()
    print(sum(admitted), flush=True)
""")


@pytest.mark.parametrize("leases", [True, False])
def test_four_processes_admit_exactly_up_to_the_limit(
        redis_server: RedisServer, leases: bool) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, redis_server.url, f"w{i}",
                          "1" if leases else "0", CONFIG],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    cents = 0
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        cents += int(out.strip())
    assert cents <= 200            # never over
    assert cents >= 190            # at least 95 % used
    with bastion.Budgets.open(yaml=CONFIG, store=redis_server.url, worker="reader") as b:
        usage = b.usage_of("team")
        assert usage["spent_usd"] == Decimal(cents) / 100
        assert usage["reserved_usd"] == 0
        assert usage["remaining_usd"] == Decimal(200 - cents) / 100


# A worker that holds a reservation on the server ($0.30, which also takes a
# lease) and three $0.05 holds under its lease, reports them, and waits to be
# killed.
VICTIM = textwrap.dedent("""
    import sys, time, bastion
    budgets = bastion.Budgets.open(yaml=sys.argv[2], store=sys.argv[1], worker="victim",
                                   worker_ttl=1.0)
    first = budgets.reserve("0.30")
    leased = [budgets.reserve("0.05") for _ in range(3)]
    budgets.flush()
    print("ready", flush=True)
    time.sleep(60)
""")


def test_a_killed_workers_holds_come_back_after_its_ttl(redis_server: RedisServer) -> None:
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, redis_server.url, CONFIG],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert victim.stdout is not None
    assert victim.stdout.readline().strip() == "ready"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    victim.stdout.close()
    killed_at = time.monotonic()

    with bastion.Budgets.open(yaml=CONFIG, store=redis_server.url, worker="survivor",
                              leases=False) as survivor:
        # Before the TTL runs out the victim's holds and lease still count,
        # and the survivor keeps working beside them.
        spent = Decimal(0)
        for _ in range(5):
            survivor.settle(survivor.reserve("0.02"), "0.02")
            spent += Decimal("0.02")
        usage = survivor.usage_of("team")
        if time.monotonic() - killed_at < 0.9:
            assert usage["reserved_usd"] == Decimal("0.45")
            assert usage["remaining_usd"] < Decimal("2.00") - Decimal("0.45") - spent
        time.sleep(max(0.0, killed_at + 1.3 - time.monotonic()))
        survivor.settle(survivor.reserve("0.02"), "0.02")   # the survivor goes on
        spent += Decimal("0.02")
        usage = survivor.usage_of("team")
        # Its reservation is charged at its estimate, the holds open under its
        # lease as last reported are charged, the rest of the lease is back.
        assert usage["spent_usd"] == spent + Decimal("0.45")
        assert usage["reserved_usd"] == 0
        assert usage["remaining_usd"] == Decimal("2.00") - spent - Decimal("0.45")


GUARD_BUDGETS = """
version: 1
budgets:
  - id: team
    scope: global
    limit_usd: 100.00
    window: daily
"""


def test_a_guard_fails_closed_while_redis_is_down_and_recovers(
        redis_server: RedisServer, tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(GUARD_BUDGETS)
    guard = bastion.Guard.open(tmp_path / "g", budgets=budgets, store=redis_server.url,
                               store_timeout=0.5)
    try:
        call = guard.begin_model("gpt-4o", "hi", agent_id="a")
        assert call.decision.effect == "allow"
        call.end("hello", usage={"prompt_tokens": 10, "completion_tokens": 5})
        redis_server.stop()
        # Money already leased may still be admitted until the worker's
        # background report finds the server gone (one report interval).
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(bastion.UnavailableError) as down:
            guard.begin_model("gpt-4o", "hi", agent_id="a")
        assert time.monotonic() - started < 1.0
        assert redis_server.url in str(down.value)
        assert isinstance(down.value, ConnectionError)
        redis_server.start()
        deadline = time.monotonic() + 5
        while True:
            try:
                call = guard.begin_model("gpt-4o", "hi", agent_id="a")
                break
            except bastion.UnavailableError:
                assert time.monotonic() < deadline, "the guard did not reconnect"
                time.sleep(0.05)
        assert call.decision.effect == "allow"
        call.end("hello", usage={"prompt_tokens": 10, "completion_tokens": 5})
    finally:
        guard.close()
    with bastion.Budgets.open(yaml=GUARD_BUDGETS, store=redis_server.url) as b:
        assert b.usage_of("team")["spent_usd"] > 0   # the call after the restart


def test_degraded_mode_admits_up_to_the_cap_and_is_recorded(
        redis_server: RedisServer, tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(GUARD_BUDGETS)
    guard = bastion.Guard.open(tmp_path / "g", budgets=budgets, store=redis_server.url,
                               store_timeout=0.3, store_degraded_cap="0.02")
    usage = {"prompt_tokens": 1000, "completion_tokens": 100}
    try:
        guard.begin_model("gpt-4o", "hi", agent_id="a", max_output_tokens=100).end(
            "hello", usage=usage)
        redis_server.stop()
        time.sleep(0.3)
        # While Redis is away the process admits on its own, up to its cap.
        admitted = refused = 0
        for _ in range(10):
            call = guard.begin_model("gpt-4o", "hi", agent_id="a", max_output_tokens=100)
            if call.allowed:
                admitted += 1
                call.end("hello", usage=usage)
            else:
                refused += 1
        assert admitted >= 1 and refused >= 1
        redis_server.start()
        deadline = time.monotonic() + 5
        while True:
            call = guard.begin_model("gpt-4o", "hi", agent_id="a", max_output_tokens=100)
            if call.allowed:  # still degraded and at the cap: denied
                call.end("hello", usage=usage)
            with bastion.Ledger.open(str(tmp_path / "g" / "ledger"), reader=True) as reader:
                phases = [r["action"] for r in sorted(reader.query(), key=lambda r: r["seq"])
                          if r["action"].startswith("store_")]
            if "store_restored" in phases:
                break
            assert time.monotonic() < deadline, f"no store_restored record: {phases}"
            time.sleep(0.05)
    finally:
        guard.close()
    assert phases == ["store_degraded", "store_restored"]
    with bastion.Ledger.open(str(tmp_path / "g" / "ledger"), reader=True) as reader:
        degraded = [r for r in reader.query(action="store_degraded")][0]
    assert degraded["attributes"]["store"] == "budgets"
    assert redis_server.url in degraded["attributes"]["detail"]


def test_budgets_open_with_a_store_has_the_same_api(redis_server: RedisServer) -> None:
    yaml = CONFIG.replace("limit_usd: 2.00", "limit_usd: 1.00") + \
        "    alerts:\n      - {at: 50%, level: warning, action: notify}\n"
    with bastion.Budgets.open(yaml=yaml, store=redis_server.url, worker="a") as a, \
            bastion.Budgets.open(yaml=yaml, store=redis_server.url, worker="b",
                                 leases=False) as b:
        assert a.ids == ["team"]
        hold = a.reserve("0.40")
        assert a.settle(hold, "0.45")["overshoot_usd"] == Decimal("0.05")
        with pytest.raises(bastion.StateError):
            a.settle(hold, "0.45")
        hold = b.reserve("0.10")
        assert [x["percent"] for x in hold.alerts] == [50]   # fired once, fleet-wide
        b.release(hold)
        with pytest.raises(bastion.BudgetExceededError) as refused:
            b.reserve("0.60")
        assert refused.value.budget == "team"
        a.flush()
        rows = b.usage()
        assert [(r["budget"], r["spent_usd"]) for r in rows] == [("team", Decimal("0.45"))]
        with pytest.raises(bastion.StateError, match="per process"):
            b.stats("team")
    assert a.closed
    with pytest.raises(bastion.StateError):
        a.reserve("0.01")
    with pytest.raises(bastion.InvalidArgumentError, match="store_timeout"):
        bastion.Budgets.open(yaml=yaml, store=redis_server.url, store_timeout=0)
    with pytest.raises(bastion.InvalidArgumentError, match="state_path or store"):
        bastion.Budgets.open(yaml=yaml, store=redis_server.url, state_path="x")
    redis_server.stop()
    with pytest.raises(bastion.UnavailableError):
        bastion.Budgets.open(yaml=yaml, store=redis_server.url, store_timeout=0.3)
