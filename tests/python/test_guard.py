"""bastion.Guard from Python: the lifecycle, approvals, budgets, records."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path

import pytest

import bastion

NOON = 1_795_262_400 * 10**9  # 2026-11-21T12:00:00Z
USAGE = {"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100}


from helpers import guard_records as records


@pytest.fixture
def guard(tmp_path: Path) -> bastion.Guard:
    root = tmp_path / "bastion"
    root.mkdir()
    (root / "budgets.yaml").write_text("""version: 1
budgets:
  - id: per-user
    scope: user
    limit_usd: 0.02
    window: daily
    alerts:
      - {at: 60%, action: downgrade, model: gpt-4o-mini}
""")
    g = bastion.Guard.open(root, clock=bastion.ManualClock(NOON))
    yield g
    g.close()


def test_embedded_defaults_just_work(tmp_path: Path) -> None:
    with bastion.Guard.open(tmp_path / "fresh") as g:
        assert (tmp_path / "fresh" / "ledger").is_dir()
        assert g.budgets is None and g.slos is None
        assert "gpt-4o" in g.pricing
        call = g.begin_model("gpt-4o", "hello", agent_id="a")
        end = call.end("hi there", usage=USAGE)
        assert end.cost_usd == Decimal("0.0035")  # 1000 x $2.50/M + 100 x $10/M
        assert g.policy_version == call.decision.policy_version


def test_model_call_is_redacted_priced_and_recorded(guard: bastion.Guard) -> None:
    call = guard.begin_model("gpt-4o", "mail bob@example.com the invoice", agent_id="support",
                             user_id="u1", run_id="run-1", input_tokens=1000,
                             max_output_tokens=100)
    assert call.allowed and call.effect == "modify"
    assert call.input == "mail [EMAIL] the invoice"
    assert call.estimate_usd == Decimal("0.0035")
    end = call.end("sent to jane@example.com", usage=USAGE, latency=0.8)
    assert end.output == "sent to [EMAIL]"
    assert end.cost_usd == Decimal("0.0035")
    assert guard.budgets.usage_of("per-user", "u1")["spent_usd"] == Decimal("0.0035")
    recs = records(guard)
    assert [(r["action"], r["attributes"]["phase"]) for r in recs] == [
        ("model_call", "decision"), ("model_call", "outcome")]
    assert recs[1]["cost_usd"] == Decimal("0.0035")
    assert recs[1]["duration_ns"] == 800_000_000
    assert {r["span_id"] for r in recs} == {call.span_id}
    assert not any("@example.com" in (r["input_summary"] or "") + (r["output_summary"] or "")
                   for r in recs)


def test_budget_downgrades_then_denies(guard: bastion.Guard) -> None:
    first = guard.begin_model("gpt-4o", "x", user_id="u2", input_tokens=1000, max_output_tokens=100)
    first.end("ok", usage={"input_tokens": 4000, "output_tokens": 100, "total_tokens": 4100})
    # $0.011 spent + $0.0035 reserved = 72.5% of $0.02: the downgrade is in force.
    second = guard.begin_model("gpt-4o", "x", user_id="u2", input_tokens=1000,
                               max_output_tokens=100)
    assert second.model == "gpt-4o-mini" and second.effect == "modify"
    second.end("ok", usage=USAGE)
    third = guard.begin_model("gpt-4o-mini", "x", user_id="u2", input_tokens=100_000)
    assert third.effect == "deny"
    assert third.decision.reasons[0]["policy_id"] == "budget:per-user"
    with pytest.raises(bastion.NotFoundError):
        third.end("")


def test_tool_approval_approve_and_reject(guard: bastion.Guard) -> None:
    fields = dict(agent_id="support-bot", agent_role="support", user_id="u1", run_id="r",
                  resource_id="order/A-1001")
    call = guard.begin_tool("issue_refund", "write", args={"order": "A-1001"}, **fields)
    assert call.needs_approval
    with pytest.raises(bastion.StateError, match="awaiting approval"):
        call.end("refunded")
    call.approve("manager@acme", "ok")
    assert call.allowed
    call.end("refunded")
    other = guard.begin_tool("issue_refund", "write", args={"order": "A-1002"}, **fields)
    other.reject("manager@acme", "fraud")
    assert other.effect == "deny"
    with pytest.raises(bastion.InvalidArgumentError, match="approved_by"):
        guard.begin_tool("issue_refund", "write", **fields).approve("")
    shape = [(r["action"], r["approval_status"] or r["effect"]) for r in records(guard)]
    assert shape[:5] == [("tool_call", "pending"), ("approval", "approved"),
                         ("tool_call", "allow"), ("tool_call", "pending"),
                         ("approval", "rejected")]


def test_idempotency_key_makes_a_repeated_begin_free(guard: bastion.Guard) -> None:
    kwargs = dict(agent_id="support-bot", agent_role="support", resource_id="order/A-1",
                  idempotency_key="thread-9/call-1")
    a = guard.begin_tool("issue_refund", "write", **kwargs)
    b = guard.begin_tool("issue_refund", "write", **kwargs)
    assert b.resumed and b.id == a.id
    assert len(records(guard)) == 1


def test_streaming_chunks(guard: bastion.Guard) -> None:
    call = guard.begin_model("gpt-4o", "hi", user_id="u3", input_tokens=10, max_output_tokens=10)
    assert call.chunk("reach me at ") == (False, "reach me at ")
    stop, text = call.chunk("jane@example.com please")
    assert not stop and "[EMAIL]" in text and "jane@" not in text
    call.end("done", usage={"input_tokens": 10, "output_tokens": 10, "total_tokens": 20})


def test_failed_call_releases_its_reservation(guard: bastion.Guard) -> None:
    call = guard.begin_model("gpt-4o", "hi", user_id="u4", input_tokens=100, max_output_tokens=100)
    assert guard.budgets.usage_of("per-user", "u4")["reserved_usd"] > 0
    end = call.end(ok=False, error_class="timeout")
    assert end.cost_usd is None
    row = guard.budgets.usage_of("per-user", "u4")
    assert row["reserved_usd"] == 0 and row["spent_usd"] == 0
    assert records(guard)[-1]["attributes"]["error"] == "timeout"


def test_concurrent_calls_from_threads(guard: bastion.Guard) -> None:
    errors: list[BaseException] = []
    allowed = [0] * 4

    def worker(n: int) -> None:
        try:
            for i in range(50):
                c = guard.begin_tool("lookup_order", "read", agent_id="support-bot",
                                     agent_role="support", run_id=f"r{n}",
                                     resource_id=f"order/{i}")
                if c.allowed:  # the shipped permissions rate-limit lookups
                    c.end("found")
                    allowed[n] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(allowed) > 0
    assert len(records(guard)) == 200 + sum(allowed)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"input_tokens": -1}, bastion.InvalidArgumentError, "input_tokens must be >= 0"),
    ({"input_tokens": "10"}, TypeError, "input_tokens must be int, got str"),
    ({"max_output_tokens": True}, TypeError, "max_output_tokens must be int, got bool"),
    ({"idempotency_key": b"k"}, TypeError, "idempotency_key must be str, got bytes"),
    ({"agent_id": 7}, TypeError, "call field 'agent_id' must be str, got int"),
    ({"user_id": "\ud800"}, bastion.InvalidArgumentError, "'user_id' is not valid UTF-8"),
    ({"colour": "red"}, bastion.InvalidArgumentError, "unknown call field 'colour'"),
])
def test_bad_arguments_are_clear_errors(guard: bastion.Guard, kwargs: dict, error: type,
                                        match: str) -> None:
    with pytest.raises(error, match=match):
        guard.begin_model("gpt-4o", "hi", **kwargs)
    assert records(guard) == []  # nothing was checked, reserved or recorded


def test_begin_takes_its_fields_by_position_or_by_name(guard: bastion.Guard) -> None:
    by_name = guard.begin_model(model="gpt-4o", input="hi", user_id="u-1")
    assert (by_name.model, by_name.input) == ("gpt-4o", "hi")
    # The class's methods (as a subclass would call them) take the same arguments.
    through_class = bastion.Guard.begin_model(guard, "gpt-4o", input="hi", user_id="u-1")
    assert (through_class.model, through_class.input) == ("gpt-4o", "hi")
    fields = dict(agent_id="support-bot", agent_role="support", user_id="u-1",
                  resource_id="order/A-1")
    tool = guard.begin_tool(tool="issue_refund", operation="write", args={"order": "A-1"},
                            input="refund it", **fields)
    positional = guard.begin_tool("issue_refund", "write", {"order": "A-1"}, "refund it",
                                  **fields)
    assert tool.needs_approval and positional.needs_approval
    assert tool.input == positional.input == "refund it"
    tools = [(r["tool"], r["operation"], r["input_summary"]) for r in records(guard)
             if r.get("tool")]
    assert tools == [("issue_refund", "write", "refund it")] * 2


@pytest.mark.parametrize("begin,args,kwargs,match", [
    ("begin_model", (), {"input": "hi"}, r"begin_model\(\) missing required argument: 'model'"),
    ("begin_tool", (), {"operation": "read"},
     r"begin_tool\(\) missing required argument: 'tool'"),
    ("begin_model", ("gpt-4o", "hi", "x"), {}, "at most 2 positional arguments \\(3 given\\)"),
    ("begin_model", ("gpt-4o",), {"model": "gpt-4o-mini"},
     r"begin_model\(\) got multiple values for argument 'model'"),
    ("begin_tool", ("lookup_order", "read", {}, "hi"), {"input": "again"},
     r"begin_tool\(\) got multiple values for argument 'input'"),
    ("begin_model", (7,), {}, "call field 'model' must be str, got int"),
])
def test_bad_begin_arguments_are_type_errors(guard: bastion.Guard, begin: str, args: tuple,
                                             kwargs: dict, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        getattr(guard, begin)(*args, **kwargs)
    assert records(guard) == []


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((1,), {}, TypeError, "output must be str, got int"),
    (("a", "b"), {}, TypeError, "at most 1 positional argument"),
    (("a",), {"output": "b"}, TypeError, "multiple values for argument 'output'"),
    ((), {"colour": "red"}, TypeError, "unexpected keyword argument 'colour'"),
    ((), {"ok": "yes"}, TypeError, "ok must be bool, got str"),
    ((), {"latency": "fast"}, TypeError, "latency must be a number of seconds, got str"),
    ((), {"latency": -1.0}, bastion.InvalidArgumentError, "non-negative"),
    ((), {"usage": 5}, bastion.InvalidArgumentError, "usage must be a map"),
    ((), {"usage_provider": "acme", "usage": {"input_tokens": 1}},
     bastion.InvalidArgumentError, "acme"),
])
def test_bad_end_arguments_are_clear_errors(guard: bastion.Guard, args: tuple, kwargs: dict,
                                            error: type, match: str | None) -> None:
    call = guard.begin_model("gpt-4o", "hi", user_id="u-1")
    with pytest.raises(error, match=match):
        call.end(*args, **kwargs)
    # The call is still open: a correct end() finishes it.
    ended = call.end("hello", usage={"input_tokens": 3, "output_tokens": 2}, latency=0.5)
    assert ended.cost_usd is not None


def test_output_held_for_review_is_released_only_by_a_verdict(tmp_path: Path) -> None:
    root = tmp_path / "bastion"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "review.lua").write_text("""
return {
  id = "payments-need-review",
  after_model = function(call, out)
    if string.find(out.text, "wire", 1, true) then
      return require_approval("payment instructions need a human")
    end
  end,
}""")
    with bastion.Guard.open(root) as guard:
        shown = []
        for verdict in ("approve", "reject", "areject"):
            call = guard.begin_model("gpt-4o", "how do I pay?", user_id="u-1")
            ended = call.end("Send a wire transfer today", latency=0.1,
                             usage={"input_tokens": 10, "output_tokens": 5})
            assert ended.awaiting_approval and ended.withheld
            assert "wire" not in ended.output and "need a human" in ended.output
            assert ended.held_output == "Send a wire transfer today"
            assert ended.cost_usd is not None  # the call ran: it is charged
            with pytest.raises(bastion.StateError, match="awaits review"):
                call.end("again")
            with pytest.raises(bastion.InvalidArgumentError, match="approved_by"):
                call.approve_output("")
            if verdict == "approve":
                shown.append(call.approve_output("ann"))
            elif verdict == "reject":
                shown.append(call.reject_output("bob", "fraud risk"))
            else:
                shown.append(asyncio.run(call.areject_output("carol")))
            with pytest.raises(bastion.NotFoundError):
                call.approve_output("ann")
        assert shown == ["Send a wire transfer today",
                         "[withheld: output rejected by bob: fraud risk]",
                         "[withheld: output rejected by carol]"]
        recs = records(guard)
    assert [(r["action"], r["effect"], r["approval_status"], r["approved_by"])
            for r in recs[1::3] + recs[2::3]] == [
        ("model_call", "require_approval", "pending", None),
        ("model_call", "require_approval", "pending", None),
        ("model_call", "require_approval", "pending", None),
        ("approval", "allow", "approved", "ann"),
        ("approval", "deny", "rejected", "bob"),
        ("approval", "deny", "rejected", "carol")]
    assert all(r["attributes"]["stage"] == "output" for r in recs[2::3])
    assert recs[1]["output_summary"] == "Send a wire transfer today"


def test_closed_guard_refuses_work(tmp_path: Path) -> None:
    g = bastion.Guard.open(tmp_path / "g")
    g.close()
    g.close()
    with pytest.raises(bastion.StateError, match="closed"):
        g.begin_model("gpt-4o", "hi")


def test_bad_configuration_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "g"
    root.mkdir()
    (root / "slos.yaml").write_text("version: 1\nslos:\n  - id: a\n    latency: {p99: soon}\n")
    with pytest.raises(bastion.InvalidArgumentError, match=r"slos.yaml:4:\d+"):
        bastion.Guard.open(root)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        bastion.Guard.open(tmp_path / "file")


def test_asyncio_calls(guard: bastion.Guard) -> None:

    async def run() -> list[str]:
        async def one(i: int) -> str:
            call = await guard.abegin_model("gpt-4o", f"question {i}", user_id=f"a{i}",
                                            input_tokens=10, max_output_tokens=10)
            end = await call.aend(f"answer {i}", usage={"input_tokens": 10,
                                                         "output_tokens": 5,
                                                         "total_tokens": 15})
            return end.output
        return list(await asyncio.gather(*(one(i) for i in range(8))))

    assert asyncio.run(run()) == [f"answer {i}" for i in range(8)]
    assert len(records(guard)) == 16
