"""Calls keyed by an idempotency key survive the process that began them.

A first process begins calls that need a human and exits (or is killed -9);
a second process opens the same guard directory, begins the calls again with
the same keys, and resolves them: one decision record per call, budgets
charged once, the ledger verifies."""

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
from helpers import child_env, guard_records, record_phase

POLICY = """
return {
  id = "needs-a-human",
  before_tool = function(call)
    if call.tool == "issue_refund" then return require_approval("refunds need a human") end
  end,
  before_model = function(call)
    if string.find(call.input, "WIRE", 1, true) then
      return require_approval("payments need a human")
    end
  end,
}
"""

BUDGETS = "version: 1\nbudgets:\n  - {id: per-user, scope: user, limit_usd: 1.00, window: daily}\n"

# The calls the first process begins; the second begins them again by key.
CALLS = textwrap.dedent("""
    def refund(guard):
        return guard.begin_tool("issue_refund", "write", args={"order": "A-1", "usd": 30},
                                agent_id="support", user_id="alice", resource_id="order/A-1",
                                risk_level="high", idempotency_key="thread-1/call-1")

    def wire(guard):
        return guard.begin_model("gpt-4o", "WIRE $30 to bob", agent_id="support",
                                 user_id="alice", input_tokens=1000, max_output_tokens=1000,
                                 idempotency_key="thread-1/model-1")
""")

USAGE = {"input_tokens": 1000, "output_tokens": 10, "total_tokens": 1010}

FIRST = CALLS + textwrap.dedent("""
    import sys, bastion
    guard = bastion.Guard.open(sys.argv[1], budget_flush_interval=float(sys.argv[4]))
    a, b = refund(guard), wire(guard)
    assert a.state == "awaiting_approval" and b.state == "awaiting_approval", (a.state, b.state)
    if sys.argv[3] in ("approved", "ended"):
        a.approve("ann"); b.approve("ann")
    if sys.argv[3] == "ended":
        a.end("refunded")
        b.end("sent", usage={"input_tokens": 1000, "output_tokens": 10, "total_tokens": 1010})
    print(b.estimate_usd, flush=True)
    if sys.argv[2] == "exit":
        guard.close()
    else:
        sys.stdin.read()   # killed -9 while the calls wait for a human
""")

namespace: dict[str, object] = {}
exec(CALLS, namespace)
refund, wire = namespace["refund"], namespace["wire"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "guard"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "approve.lua").write_text(POLICY)
    (root / "budgets.yaml").write_text(BUDGETS)
    return root


def first_process(root: Path, how: str, upto: str = "pending", flush: float = 1.0) -> Decimal:
    """Runs the first process (its calls left `upto` pending, approved or ended;
    then it exits or is killed -9); returns the model call's estimate."""
    with subprocess.Popen([sys.executable, "-c", FIRST, str(root), how, upto, str(flush)],
                          stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=child_env()) as child:
        assert child.stdout is not None and child.stderr is not None
        try:
            line = child.stdout.readline()
            if how == "kill":
                os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=60)
        assert line, child.stderr.read()
    assert child.returncode == (-signal.SIGKILL if how == "kill" else 0), child.returncode
    return Decimal(line.strip())


def alice(guard: bastion.Guard) -> dict[str, Decimal]:
    assert guard.budgets is not None
    return guard.budgets.usage_of("per-user", "alice")


def shape(guard: bastion.Guard) -> list[tuple[str, str]]:
    return [(r["tool"] or r["model"], record_phase(r)) for r in guard_records(guard)]


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_approved_in_a_second_process_is_recorded_and_charged_once(root: Path, how: str) -> None:
    estimate = first_process(root, how)
    assert estimate > 0
    with bastion.Guard.open(root) as guard:
        # The first process's hold is kept for the call, not charged as abandoned.
        assert alice(guard)["reserved_usd"] == estimate
        assert alice(guard)["spent_usd"] == 0
        a, b = refund(guard), wire(guard)
        assert a.resumed and b.resumed
        assert (a.state, b.state) == ("awaiting_approval", "awaiting_approval")
        assert a.needs_approval and b.estimate_usd == estimate
        a.approve("ann", "order checked")
        b.approve("ann")
        assert (a.state, b.state) == ("in_flight", "in_flight")
        assert a.end("refunded").output == "refunded"
        end = b.end("sent", usage={"input_tokens": 1000, "output_tokens": 10,
                                   "total_tokens": 1010})
        assert end.cost_usd is not None and end.cost_usd < estimate
        assert alice(guard)["reserved_usd"] == 0
        assert alice(guard)["spent_usd"] == end.cost_usd
        a.remember('{"content": "refunded", "tool_call_id": "call-1"}')
        records = shape(guard)
    assert records == [("issue_refund", "decision"), ("gpt-4o", "decision"),
                       ("issue_refund", "approval"), ("gpt-4o", "approval"),
                       ("issue_refund", "outcome"), ("gpt-4o", "outcome")]

    # A third opening: the calls are over, returned as they ended with the memo.
    with bastion.Guard.open(root) as guard:
        a, b = refund(guard), wire(guard)
        assert (a.state, b.state) == ("ended", "ended")
        assert a.memo == '{"content": "refunded", "tool_call_id": "call-1"}'
        assert b.memo is None
        assert a.ended is not None and a.ended.output == "refunded"
        assert alice(guard)["spent_usd"] == end.cost_usd
        with pytest.raises(bastion.NotFoundError):
            a.end("again")
        assert len(shape(guard)) == 6
    with bastion.Ledger.open(str(root / "ledger"), reader=True) as ledger:
        assert ledger.verify().ok


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_rejected_in_a_second_process_releases_the_hold(root: Path, how: str) -> None:
    estimate = first_process(root, how)
    with bastion.Guard.open(root) as guard:
        assert alice(guard)["reserved_usd"] == estimate
        a, b = refund(guard), wire(guard)
        a.reject("ann", "not this order")
        b.reject("ann")
        assert (a.state, b.state) == ("rejected", "rejected")
        assert a.effect == "deny" and b.effect == "deny"
        assert alice(guard)["reserved_usd"] == 0
        assert alice(guard)["spent_usd"] == 0
        records = shape(guard)
    assert records == [("issue_refund", "decision"), ("gpt-4o", "decision"),
                       ("issue_refund", "approval"), ("gpt-4o", "approval")]
    with bastion.Guard.open(root) as guard:
        assert alice(guard)["spent_usd"] == 0
        assert refund(guard).state == "rejected"


@pytest.mark.parametrize("flush", [0.0, 1.0])
def test_killed_while_the_approved_call_runs(root: Path, flush: float) -> None:
    estimate = first_process(root, "kill", "approved", flush)
    with bastion.Guard.open(root) as guard:
        assert alice(guard)["reserved_usd"] == estimate
        a, b = refund(guard), wire(guard)
        assert (a.state, b.state) == ("in_flight", "in_flight")
        assert b.effect == "allow" and b.resumed
        a.end("refunded")
        cost = b.end("sent", usage=USAGE).cost_usd
        assert alice(guard) == alice(guard) | {"reserved_usd": 0, "spent_usd": cost}
        assert [p for _, p in shape(guard)] == ["decision", "decision", "approval", "approval",
                                                "outcome", "outcome"]


@pytest.mark.parametrize("flush", [0.0, 1.0])
def test_killed_right_after_the_end(root: Path, flush: float) -> None:
    estimate = first_process(root, "kill", "ended", flush)
    with bastion.Guard.open(root) as guard:
        a, b = refund(guard), wire(guard)
        assert (a.state, b.state) == ("ended", "ended")
        assert b.ended is not None and b.ended.output == "sent"
        usage = alice(guard)
        assert usage["reserved_usd"] == 0
        # Charged once: the settlement when it was saved, else the hold at its
        # estimate (the budget state lost the settlement, not the hold).
        expected = b.ended.cost_usd if flush == 0 else usage["spent_usd"]
        assert usage["spent_usd"] == expected
        assert usage["spent_usd"] in (b.ended.cost_usd, estimate)
        assert len(shape(guard)) == 6


def test_a_key_reused_for_another_call_is_refused(root: Path) -> None:
    first_process(root, "exit")
    with bastion.Guard.open(root) as guard:
        with pytest.raises(bastion.InvalidArgumentError, match="thread-1/call-1"):
            guard.begin_tool("issue_refund", "write", agent_id="support", user_id="alice",
                             resource_id="order/B-2", idempotency_key="thread-1/call-1")


def test_remember_needs_a_key(root: Path) -> None:
    with bastion.Guard.open(root) as guard:
        call = guard.begin_tool("lookup", "read", agent_id="support")
        assert call.state == "in_flight" and call.memo is None
        with pytest.raises(bastion.Error, match="no idempotency key"):
            call.remember("x")


def test_a_damaged_journal_fails_the_open_naming_it(root: Path) -> None:
    first_process(root, "exit")
    for name in os.listdir(root / "calls"):
        if name.startswith("CURRENT"):
            (root / "calls" / name).write_text("garbage\n")
    with pytest.raises(bastion.Error, match="calls"):
        bastion.Guard.open(root)


def test_the_journal_lives_where_it_is_told(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "journal"
    with bastion.Guard.open(root, calls=elsewhere) as guard:
        refund(guard)
    assert (elsewhere / "CURRENT").exists() and not (root / "calls").exists()
    with pytest.raises(bastion.InvalidArgumentError, match="idempotency_retention"):
        bastion.Guard.open(root, idempotency_retention=-1)


def test_without_a_directory_the_journal_lives_in_memory(root: Path) -> None:
    with bastion.Guard.open(None, policies=root / "policies") as guard:
        a = refund(guard)
        a.approve("ann")
        a.end("refunded")
        assert a.state == "ended"
        a.remember("the tool message")
        again = refund(guard)
        assert again.resumed and again.state == "ended" and again.memo == "the tool message"
        assert again.ended is not None and again.ended.output == "refunded"
        assert again.id != a.id
        with pytest.raises(bastion.NotFoundError):
            again.end("twice")
    with bastion.Guard.open(None, policies=root / "policies") as guard:
        assert not refund(guard).resumed   # another process's memory


RUNNING = textwrap.dedent("""
    import os, signal, sys, bastion
    guard = bastion.Guard.open(sys.argv[1])
    call = guard.begin_model("gpt-4o", "hello", agent_id="support", user_id="alice",
                             idempotency_key="thread-2/model-1")
    assert call.state == "in_flight"
    os.kill(os.getpid(), signal.SIGKILL)   # while the call runs
""")


def test_a_low_risk_call_killed_while_it_runs_is_begun_anew(tmp_path: Path) -> None:
    # Allowed and not high risk: kept once it ends, so the process that died
    # while it ran left nothing under its key; the key begins it anew,
    # checked and recorded, as a call without a key. (An approved call,
    # above, is kept from its approval on and resumes.)
    root = tmp_path / "g"
    done = subprocess.run([sys.executable, "-c", RUNNING, str(root)],
                          capture_output=True, text=True, timeout=60, env=child_env())
    assert done.returncode == -signal.SIGKILL, done.stderr
    with bastion.Guard.open(root) as guard:
        before = len([r for r in guard_records(guard) if r["model"] == "gpt-4o"])
        call = guard.begin_model("gpt-4o", "hello", agent_id="support", user_id="alice",
                                 idempotency_key="thread-2/model-1")
        assert not call.resumed and call.state == "in_flight"
        call.end("hi", usage={"input_tokens": 5, "output_tokens": 1, "total_tokens": 6})
        again = guard.begin_model("gpt-4o", "hello", agent_id="support", user_id="alice",
                                  idempotency_key="thread-2/model-1")
        assert again.resumed and again.state == "ended"
        records = [(record_phase(r), r["span_id"]) for r in guard_records(guard)
                   if r["model"] == "gpt-4o"][before:]
    assert [p for p, _ in records] == ["decision", "outcome"]
    assert records[0][1] == records[1][1]
