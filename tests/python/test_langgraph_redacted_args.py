"""bastion.langgraph when policies redact a tool call's arguments, against
real LangGraph: redacted arguments that still parse run the tool with them;
arguments the redaction left unparseable fail closed — the tool never runs, the
graph's state says why, and the ledger's outcome record carries the reason."""

import asyncio

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langchain")

from langchain.agents import create_agent  # noqa: E402
from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, MessagesState, StateGraph  # noqa: E402

import bastion  # noqa: E402
from bastion.langgraph import BastionMiddleware, GuardDenied, guarded_tool_node  # noqa: E402
from helpers import guard_records, record_phase  # noqa: E402

# Redacts card numbers wherever they appear in a tool call's arguments (the
# canonical JSON the guard checks). A card given as a JSON number becomes
# `"card": [CREDIT_CARD]`, which is not JSON.
CARD_POLICY = """
return {
  id = "card-args",
  before_tool = function(call, input)
    local hits = pii.find(input.text, {"credit_card"})
    if #hits > 0 then return redact(hits, "card number in tool arguments") end
  end,
}
"""

# Replaces the whole argument object: what is left parses, but is no object.
WHOLE_POLICY = """
return {
  id = "whole-args",
  before_tool = function(call, input)
    return redact({{start = 1, stop = #input.text}}, "arguments withheld", {label = "[1, 2]"})
  end,
}
"""

CARD = 4111111111111111  # passes the Luhn check

RAN: list[tuple] = []


@tool
def charge(card: int | str, amount: float) -> str:
    """Charges a card."""
    RAN.append(("charge", card, amount))
    return f"charged {amount}"


@tool
async def acharge(card: int | str, amount: float) -> str:
    """Charges a card (async)."""
    RAN.append(("charge", card, amount))
    return f"charged {amount}"


acharge.name = "charge"


@pytest.fixture(autouse=True)
def _fresh():
    RAN.clear()


def open_guard(tmp_path, policy: str = CARD_POLICY) -> bastion.Guard:
    root = tmp_path / "g"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "args.lua").write_text(policy)
    return bastion.Guard.open(root)


def tool_graph(guard, tools=(charge,), **settings):
    builder = StateGraph(MessagesState)
    builder.add_node("tools", guarded_tool_node(list(tools), guard, agent_id="billing-bot",
                                                **settings))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    return builder.compile(checkpointer=InMemorySaver())


def asked(args: dict, id: str = "c1") -> dict:
    call = {"name": "charge", "args": args, "id": id, "type": "tool_call"}
    return {"messages": [HumanMessage("pay"), AIMessage(content="", tool_calls=[call])]}


def thread(name: str) -> dict:
    return {"configurable": {"thread_id": name}}


def outcome(guard) -> dict:
    records = [r for r in guard_records(guard) if record_phase(r) == "outcome"]
    assert len(records) == 1, records
    return records[0]


def test_redacted_arguments_that_parse_run_the_tool_with_them(tmp_path):
    with open_guard(tmp_path) as guard:
        out = tool_graph(guard).invoke(asked({"card": "4111 1111 1111 1111", "amount": 5}),
                                       thread("t1"), version="v2")
        result = out.value["messages"][-1]
        assert isinstance(result, ToolMessage) and result.status != "error", result
        assert RAN == [("charge", "[CREDIT_CARD]", 5)]
        assert "error" not in (outcome(guard)["attributes"] or {})


@pytest.mark.parametrize("policy, problem", [
    (CARD_POLICY, "not JSON"),
    (WHOLE_POLICY, "JSON an array, not an object"),
])
def test_unparseable_redacted_arguments_fail_closed(tmp_path, policy, problem):
    with open_guard(tmp_path, policy) as guard:
        out = tool_graph(guard).invoke(asked({"card": CARD, "amount": 5}), thread("t1"),
                                       version="v2")
        assert RAN == []  # the unredacted card never reached the tool
        result = out.value["messages"][-1]
        assert isinstance(result, ToolMessage)
        assert result.status == "error" and result.tool_call_id == "c1"
        assert result.content.startswith(
            "Tool call 'charge' not run: policy redactions left its arguments unusable")
        assert problem in result.content
        assert str(CARD) not in result.content
        records = guard_records(guard)
        assert [(r["tool"], record_phase(r)) for r in records] == [
            ("charge", "decision"), ("charge", "outcome")]
        assert records[0]["effect"] == "modify"
        assert records[1]["attributes"]["error"] == "redacted_arguments_invalid"
        assert records[0]["reasons"][0]["policy_id"] in ("card-args", "whole-args")
        assert str(CARD) not in records[0]["input_summary"]


def test_unparseable_redacted_arguments_raise_with_on_deny_raise(tmp_path):
    with open_guard(tmp_path) as guard:
        graph = tool_graph(guard, on_deny="raise")
        with pytest.raises(GuardDenied, match="not run: policy redactions") as caught:
            graph.invoke(asked({"card": CARD, "amount": 5}), thread("t1"), version="v2")
        assert caught.value.decision.effect == "modify"
        assert RAN == []
        assert outcome(guard)["attributes"]["error"] == "redacted_arguments_invalid"


def test_unparseable_redacted_arguments_fail_closed_async(tmp_path):
    with open_guard(tmp_path) as guard:
        graph = tool_graph(guard, tools=(acharge,))
        out = asyncio.run(graph.ainvoke(asked({"card": CARD, "amount": 5}), thread("t1"),
                                        version="v2"))
        assert RAN == []
        assert out.value["messages"][-1].status == "error"
        assert outcome(guard)["attributes"]["error"] == "redacted_arguments_invalid"


class OneToolCall(BaseChatModel):
    """Asks for one charge, then answers."""

    i: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.i += 1
        if self.i == 1:
            call = {"name": "charge", "args": {"card": CARD, "amount": 5}, "id": "c1",
                    "type": "tool_call"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            message = AIMessage(content="done")
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self


def test_agent_middleware_fails_closed_too(tmp_path):
    with open_guard(tmp_path) as guard:
        agent = create_agent(OneToolCall(), tools=[charge],
                             middleware=[BastionMiddleware(guard, agent_id="billing-bot")])
        out = agent.invoke({"messages": [HumanMessage("pay")]})
        assert RAN == []
        shown = [m for m in out["messages"] if isinstance(m, ToolMessage)]
        assert len(shown) == 1 and shown[0].status == "error"
        assert "not run: policy redactions" in shown[0].content
        tool_records = [r for r in guard_records(guard) if r["tool"] == "charge"]
        assert tool_records[-1]["attributes"]["error"] == "redacted_arguments_invalid"
