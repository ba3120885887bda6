"""Streaming through bastion.langgraph against real LangGraph and LangChain:
every token a client can observe (stream_mode="messages", combined modes,
astream, astream_events, a model's own stream() in a node) has passed the
on_chunk policies; patterns split across chunks are caught; a deny stops the
stream; tool-call and usage chunks still flow; usage is counted once; an
abandoned stream is settled at what was produced."""

import asyncio
import json
from decimal import Decimal

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langchain")

from langchain.agents import create_agent  # noqa: E402
from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage  # noqa: E402
from langchain_core.messages.tool import tool_call_chunk  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, MessagesState, StateGraph  # noqa: E402

import bastion  # noqa: E402
from bastion.langgraph import (  # noqa: E402
    BastionMiddleware,
    GuardedChatModel,
    guard_graph,
    guard_model,
)
from helpers import guard_records, record_phase  # noqa: E402

USAGE = {"input_tokens": 50, "output_tokens": 12, "total_tokens": 62}
PII = ["alice@example.com", "4111 1111 1111 1111", "+1 415 555 0132"]


class ChunkedChat(BaseChatModel):
    """Streams scripted replies in the given pieces; the last chunk carries
    the tool calls and the usage, as provider integrations do."""

    replies: list  # each: (pieces, tool_calls)
    model_name: str = "gpt-4o"
    i: int = 0
    streamed: int = 0  # chunks the model produced

    @property
    def _llm_type(self) -> str:
        return "chunked"

    def _next(self) -> tuple[list, list]:
        assert self.i < len(self.replies), "the script ran out"
        reply = self.replies[self.i]
        self.i += 1
        return reply

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        pieces, calls = self._next()
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            content="".join(pieces), tool_calls=calls, usage_metadata=USAGE))])

    def _chunks(self):
        pieces, calls = self._next()
        for piece in pieces:
            self.streamed += 1
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        self.streamed += 1
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=USAGE, chunk_position="last",
            tool_call_chunks=[tool_call_chunk(name=c["name"], args=json.dumps(c["args"]),
                                              id=c["id"], index=j)
                              for j, c in enumerate(calls)]))

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        yield from self._chunks()

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        for chunk in self._chunks():
            await asyncio.sleep(0)
            yield chunk

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self


def split_everywhere(text: str) -> list[list[str]]:
    """`text` cut in two at every position, and one character at a time."""
    return [[text[:k], text[k:]] for k in range(1, len(text))] + [list(text)]


@tool
def lookup_order(order_id: str) -> str:
    """Looks up an order."""
    return f"Order {order_id}: shipped"


lookup_order.metadata = {"operation": "read", "resource": "order/{order_id}"}


@pytest.fixture
def guard(tmp_path):
    with bastion.Guard.open(tmp_path / "g") as g:
        yield g


def agent_of(guard, replies, **settings):
    model = ChunkedChat(replies=replies)
    agent = create_agent(model, tools=[lookup_order], system_prompt="Be brief.",
                         middleware=[BastionMiddleware(guard, agent_id="support-bot",
                                                       **settings)],
                         checkpointer=InMemorySaver())
    return agent, model


def thread(name: str) -> dict:
    return {"configurable": {"thread_id": name}}


def user(text: str) -> dict:
    return {"messages": [HumanMessage(text)]}


def model_tokens(events) -> list[str]:
    return [chunk.content for chunk, meta in events
            if meta["langgraph_node"] == "model" and isinstance(chunk, AIMessageChunk)
            and chunk.content]


def outcomes(guard, action="model_call") -> list[dict]:
    return [r for r in guard_records(guard)
            if r["action"] == action and record_phase(r) == "outcome"]


@pytest.mark.parametrize("value", PII)
def test_pii_split_at_every_position_never_reaches_the_client(guard, value):
    text = f"Reach me at {value} today."
    for n, pieces in enumerate(split_everywhere(text)):
        agent, _ = agent_of(guard, [(pieces, [])])
        tokens = model_tokens(agent.stream(user("hi"), thread(f"t-{n}"), stream_mode="messages"))
        streamed = "".join(tokens)
        assert value not in streamed, pieces
        for part in (value[: len(value) // 2], value[len(value) // 2:]):
            assert part not in streamed, (pieces, streamed)
        assert streamed.startswith("Reach me at [") and streamed.endswith("] today.")
        state = agent.get_state(thread(f"t-{n}")).values["messages"][-1]
        assert state.content == streamed


def test_text_without_patterns_is_released_before_the_stream_ends(guard):
    words = ["The ", "order ", "ships ", "today ", "from ", "Berlin."]
    model = ChunkedChat(replies=[(words, [])])
    seen_at = [(model.streamed, chunk.content)
               for chunk in guard_model(model, guard, agent_id="writer").stream("hi")
               if chunk.content]
    # A word is shown as soon as the space after it has arrived: each chunk
    # here ends with one, so it goes out at once; only the last word, with no
    # space after it, waits for the end of the stream (the closing chunk).
    assert seen_at == [(n + 1, w) for n, w in enumerate(words[:-1])] + [(7, "Berlin.")]


def test_async_stream_and_combined_modes_are_guarded(guard):
    text = ["Mail ali", "ce@exam", "ple.com or call +1 415 ", "555 0132."]
    agent, _ = agent_of(guard, [(text, [])])

    async def run():
        out = []
        async for mode, event in agent.astream(user("hi"), thread("t-a"),
                                               stream_mode=["messages", "updates"]):
            if mode == "messages":
                out.append(event)
        return out

    streamed = "".join(model_tokens(asyncio.run(run())))
    assert streamed == "Mail [EMAIL] or call [PHONE]."


def test_astream_events_see_only_guarded_chunks(guard):
    text = ["Card: 4111 1111", " 1111 1111, mail bob@", "example.org"]
    agent, _ = agent_of(guard, [(text, [])])

    async def run():
        out = []
        async for event in agent.astream_events(user("hi"), thread("t-e"), version="v2"):
            if event["event"] == "on_chat_model_stream":
                out.append(event["data"]["chunk"].content)
        return out

    streamed = "".join(c for c in asyncio.run(run()) if isinstance(c, str))
    assert streamed == "Card: [CREDIT_CARD], mail [EMAIL]"


def test_a_deny_on_chunk_stops_the_stream_and_the_ledger_says_where(guard):
    text = ["Here is the ", "memo. ", "INTERNAL ", "USE ", "ONLY: ", "margins ", "are ", "40%."]
    agent, model = agent_of(guard, [(text, [])])
    tokens = model_tokens(agent.stream(user("hi"), thread("t-d"), stream_mode="messages"))
    streamed = "".join(tokens)
    assert "margins" not in streamed and "40%" not in streamed and "ONLY" not in streamed
    assert model.streamed < len(text) + 1  # the model's stream was closed early
    last = agent.get_state(thread("t-d")).values["messages"][-1]
    assert last.content.startswith("Model output stopped by policy")
    assert "forbidden-output" in last.content
    [outcome] = outcomes(guard)
    attributes = outcome["attributes"]
    assert outcome["effect"] == "deny" and attributes["error"] == "stream_stopped"
    # The provider's usage chunk never came: settled at an estimate of what
    # was produced (4 characters a token).
    assert outcome["output_tokens"] == (len("".join(text[:5])) + 3) // 4
    assert outcome["input_tokens"] > 0
    assert attributes["stream_stop_policies"] == "forbidden-output"
    shown = len("".join(tokens).encode())
    assert int(attributes["stream_stop_byte"]) == shown == int(attributes["stream_released_bytes"])


def test_tool_call_chunks_and_usage_still_flow_and_usage_is_counted_once(guard):
    agent, _ = agent_of(guard, [
        ([], [{"name": "lookup_order", "args": {"order_id": "A-1"}, "id": "c1"}]),
        (["It ", "ships."], []),
    ])
    chunks = [chunk for chunk, meta in agent.stream(user("Where is A-1?"), thread("t-t"),
                                                    stream_mode="messages")
              if meta["langgraph_node"] == "model"]
    calls = [c for chunk in chunks for c in getattr(chunk, "tool_call_chunks", [])]
    assert [c["name"] for c in calls] == ["lookup_order"]
    assert "".join(c.content for c in chunks if isinstance(c.content, str)) == "It ships."
    messages = agent.get_state(thread("t-t")).values["messages"]
    assert messages[-2].content == "Order A-1: shipped"
    counted = [(r["input_tokens"], r["output_tokens"]) for r in outcomes(guard)]
    assert counted == [(50, 12), (50, 12)]


def test_a_models_own_stream_inside_a_guarded_node(guard):
    llm = guard_model(ChunkedChat(replies=[(["write to carol@exa", "mple.net now"], [])]))
    assert isinstance(llm, GuardedChatModel)

    def chat(state):
        text = "".join(chunk.content for chunk in llm.stream(state["messages"]))
        return {"messages": [AIMessage(text)]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    graph = guard_graph(builder, guard, agent_id="writer").compile()
    streamed = "".join(chunk.content for chunk, meta in graph.stream(
        user("hi"), stream_mode="messages") if isinstance(chunk, AIMessageChunk))
    assert streamed == "write to [EMAIL] now"
    [outcome] = outcomes(guard)
    assert outcome["agent_id"] == "writer" and outcome["output_tokens"] == 12


def test_an_abandoned_stream_is_settled_at_what_was_produced(tmp_path):
    root = tmp_path / "g"
    root.mkdir()
    (root / "budgets.yaml").write_text(
        "version: 1\nbudgets:\n  - {id: cap, scope: global, limit_usd: 10, window: daily}\n")
    with bastion.Guard.open(root) as guard:
        llm = guard_model(ChunkedChat(replies=[(["one ", "two ", "three ", "four"], [])]),
                          guard, agent_id="writer")
        stream = llm.stream("count")
        first = next(stream)
        assert first.content == "one "
        stream.close()
        [outcome] = outcomes(guard)
        assert outcome["effect"] is not None
        assert outcome["output_tokens"] >= 1 and outcome["input_tokens"] >= 1
        spent = guard.budgets.usage_of("cap")
        assert spent["spent_usd"] > Decimal(0) and spent["reserved_usd"] == Decimal(0)


def test_callbacks_see_only_guarded_tokens_and_chunks(guard):
    from langchain_core.callbacks import BaseCallbackHandler

    class Seen(BaseCallbackHandler):
        def __init__(self):
            self.tokens, self.texts = [], []

        def on_llm_new_token(self, token, *, chunk=None, **kwargs):
            self.tokens.append(token)
            self.texts.append(chunk.text if chunk is not None else "")

    seen = Seen()
    llm = guard_model(ChunkedChat(replies=[(["mail dave@exa", "mple.com or ", "4111 1111 ",
                                             "1111 1111"], [])]), guard, agent_id="writer")
    reply = "".join(c.content for c in llm.stream("hi", config={"callbacks": [seen]}))
    shown = "".join(seen.tokens)
    assert shown == "".join(seen.texts) == reply == "mail [EMAIL] or [CREDIT_CARD]"
