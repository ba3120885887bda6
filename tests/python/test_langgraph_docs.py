"""The Python examples of docs/langgraph.md run as written, in order, in one
namespace, with scripted chat models standing in for `model` and `small_model`."""

import contextlib
import io
import re
from pathlib import Path

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langchain")

from test_langgraph import ScriptedChat, asks, call, says  # noqa: E402

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "langgraph.md"

# What `model` answers, example after example.
SCRIPT = [
    # the agent: an order lookup
    asks(call("lookup_order", {"order_id": "A-1001"}, "call_1")),
    says("It shipped yesterday."),
    # streaming: a reply with an e-mail address in it
    says("Write to jane@example.com today."),
    # approvals: a refund
    asks(call("issue_refund", {"order_id": "A-1001", "amount": 25.0}, "call_2")),
    says("Done: $25 refunded."),
    # approvals kept in the guard: a refund resumed with a persistent checkpointer
    asks(call("issue_refund", {"order_id": "A-7", "amount": 25.0}, "call_5")),
    says("Refunded."),
    # denials: a tool no grant covers
    asks(call("delete_customer", {"customer_id": "7"}, "call_3")),
    # plain LangGraph
    asks(call("lookup_order", {"order_id": "A-7"}, "call_4")),
    says("A-7 has shipped."),
]

EXPECTED_OUTPUT = """\
Order A-1001: shipped to [EMAIL]
model_call gpt-4o allow decision
model_call gpt-4o allow outcome
tool_call lookup_order allow decision
tool_call lookup_order modify outcome
model_call gpt-4o allow decision
model_call gpt-4o allow outcome
Write to [EMAIL] today.
{'order_id': 'A-1001', 'amount': 25.0}
['permissions', 'write-approval']
Refunded $25.00 on order A-1001
Refunded $25.00 on order A-7
permissions
Hello from the small model.
True
A-7 has shipped.
"""


def python_blocks() -> list[tuple[int, str]]:
    text = GUIDE.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)]


def test_guide_examples_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = ScriptedChat(responses=SCRIPT)
    small = ScriptedChat(model_name="gpt-4o-mini", responses=[says("Hello from the small model.")])
    namespace = {"__name__": "__doc_example__", "model": model, "small_model": small}
    out = io.StringIO()
    try:
        for line, code in python_blocks():
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"docs/langgraph.md:{line}", "exec"), namespace)
    finally:
        for name in ("guard", "shop"):
            if name in namespace:
                namespace[name].close()
    assert out.getvalue() == EXPECTED_OUTPUT
    assert (model.i, small.i) == (len(SCRIPT), 1)  # every scripted answer was asked for
