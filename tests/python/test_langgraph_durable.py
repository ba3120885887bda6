"""Approvals that survive a restart, against real LangGraph with its SQLite
checkpointer: a graph paused for a human in one process is resumed in
another (after a clean exit or kill -9), and the pending call continues
where it stood, recorded once and charged once."""

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langchain")
pytest.importorskip("langgraph.checkpoint.sqlite")

import bastion  # noqa: E402
from helpers import guard_records, record_phase  # noqa: E402

# One process's part: `ask` runs the graph until it pauses for approval (then
# exits cleanly or is killed), `resume` answers the pause, `again` resumes
# the finished thread once more.
CHILD = r'''
import json, os, signal, sqlite3, sys
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command
import bastion
from bastion.langgraph import BastionMiddleware, approve, guarded_tool_node, reject

root, scenario, step, verdict = sys.argv[1:5]
work = os.path.dirname(root)

class Scripted(BaseChatModel):
    model_name: str = "gpt-4o"
    @property
    def _llm_type(self): return "scripted"
    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        with open(os.path.join(work, "model_calls.txt"), "a") as f: f.write("call\n")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            "Done.", usage_metadata={"input_tokens": 1000, "output_tokens": 200,
                                     "total_tokens": 1200}))])
    def bind_tools(self, tools, **kwargs): return self

@tool
def issue_refund(order_id: str, amount: float) -> str:
    """Refunds an order."""
    with open(os.path.join(work, "refunds.txt"), "a") as f: f.write(f"{order_id} {amount}\n")
    return f"refunded {amount} on {order_id}"
issue_refund.metadata = {"operation": "write", "resource": "order/{order_id}"}

guard = bastion.Guard.open(root, budget_flush_interval=0)
saver = SqliteSaver(sqlite3.connect(os.path.join(work, "checkpoints.sqlite"),
                                    check_same_thread=False))
if scenario == "model":
    graph = create_agent(Scripted(), tools=[], checkpointer=saver, middleware=[
        BastionMiddleware(guard, agent_id="support-bot", fields={"risk_level": "high"})])
    start = {"messages": [HumanMessage("hi")]}
else:
    builder = StateGraph(MessagesState)
    builder.add_node("tools", guarded_tool_node([issue_refund], guard, agent_id="support-bot"))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    graph = builder.compile(checkpointer=saver)
    start = {"messages": [HumanMessage("please"), AIMessage("", tool_calls=[{
        "name": "issue_refund", "args": {"order_id": "A-1", "amount": 25.0}, "id": "c1",
        "type": "tool_call"}])]}
cfg = {"configurable": {"thread_id": "t1"}}
if step == "ask":
    out = graph.invoke(start, cfg, version="v2")
    print(json.dumps([i.value for i in out.interrupts]), flush=True)
    if verdict == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
else:
    answer = approve("alice", "fine") if verdict == "approve" else reject("bob", "no")
    out = graph.invoke(Command(resume=answer), cfg, version="v2")
    print(json.dumps({"last": out.value["messages"][-1].content,
                      "interrupts": len(out.interrupts)}), flush=True)
guard.close()
'''

BUDGETS = "version: 1\nbudgets:\n  - {id: cap, scope: global, limit_usd: 5, window: daily}\n"


def run(root, scenario, step, verdict="") -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(root), scenario, step, verdict],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    if done.returncode not in (0, -9):
        raise AssertionError(done.stderr)
    return done.returncode, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def shape(records):
    return [(r["action"], r["model"] or r["tool"], r["effect"], record_phase(r),
             r["approval_status"]) for r in records]


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "g"
    root.mkdir()
    (root / "budgets.yaml").write_text(BUDGETS)
    return root


@pytest.mark.parametrize("exit_how", ["exit", "kill"])
def test_a_model_call_approved_in_another_process_is_recorded_and_charged_once(root, exit_how):
    code, out = run(root, "model", "ask", exit_how)
    assert code == (-9 if exit_how == "kill" else 0)
    [pending] = json.loads(out)
    assert (pending["kind"], pending["model"]) == ("model_call", "gpt-4o")

    code, out = run(root, "model", "resume", "approve")
    assert json.loads(out) == {"last": "Done.", "interrupts": 0}
    assert lines(root.parent / "model_calls.txt") == ["call"]

    run(root, "model", "again", "approve")  # a finished thread: nothing more
    assert lines(root.parent / "model_calls.txt") == ["call"]
    with bastion.Guard.open(root) as guard:
        records = guard_records(guard)
        assert shape(records) == [
            ("model_call", "gpt-4o", "require_approval", "decision", "pending"),
            ("approval", "gpt-4o", "allow", "approval", "approved"),
            ("model_call", "gpt-4o", "allow", "outcome", None)]
        assert records[1]["approved_by"] == "alice"
        assert len({r["span_id"] for r in records}) == 1
        usage = guard.budgets.usage_of("cap")
        assert usage["reserved_usd"] == Decimal(0)
        assert usage["spent_usd"] == records[2]["cost_usd"] > 0


@pytest.mark.parametrize("verdict", ["approve", "reject"])
def test_a_tool_call_answered_in_another_process_runs_at_most_once(root, verdict):
    code, out = run(root, "tool", "ask", "kill")
    assert code == -9
    [pending] = json.loads(out)
    assert pending["tool_call"]["id"] == "c1"
    assert lines(root.parent / "refunds.txt") == []

    _, out = run(root, "tool", "resume", verdict)
    result = json.loads(out)
    ran = lines(root.parent / "refunds.txt")
    if verdict == "approve":
        assert result["last"] == "refunded 25.0 on A-1" and ran == ["A-1 25.0"]
    else:
        assert result["last"] == "Tool call 'issue_refund' rejected by bob: no" and ran == []
    run(root, "tool", "again", verdict)
    assert lines(root.parent / "refunds.txt") == ran
    with bastion.Guard.open(root) as guard:
        expected = [("tool_call", "issue_refund", "require_approval", "decision", "pending")]
        if verdict == "approve":
            expected += [("approval", "issue_refund", "allow", "approval", "approved"),
                         ("tool_call", "issue_refund", "allow", "outcome", None)]
        else:
            expected += [("approval", "issue_refund", "deny", "approval", "rejected")]
        assert shape(guard_records(guard)) == expected
