"""What Bastion adds to a LangGraph agent step.

    python bench/langgraph_bench.py [--runs N] [--durability group|async|sync] [--history N]

One run is `create_agent(...).invoke(...)` of a LangChain v1 agent on a scripted
chat model: a model call that asks for a tool, the tool call, and a model call
that answers (three steps). The same agent runs without middleware, with a
pass-through middleware (what LangChain's wrapping of model and tool calls costs
by itself), and with `BastionMiddleware` (the shipped policy bundle and prices,
the tool call allowed, two ledger records per call), taking turns run by run so
all see the same machine. Prints the median time per run of each and the
overhead as a percentage of the run without middleware. With --history N the
conversation starts with N earlier exchanges, which every model call sends again.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

import bastion
from bastion.langgraph import BastionMiddleware

USAGE = {"input_tokens": 420, "output_tokens": 36, "total_tokens": 456}


class ScriptedModel(FakeMessagesListChatModel):
    """Cycles through its responses; tools are accepted and ignored."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self


class PassThrough(AgentMiddleware):
    """Wraps every model call and tool call, and does nothing else."""

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        return handler(request)

    def wrap_tool_call(self, request: Any, handler: Any) -> Any:
        return handler(request)


@tool
def lookup_order(order_id: str) -> str:
    """Looks up an order's status."""
    return f"order {order_id}: shipped yesterday"


def script() -> list[AIMessage]:
    return [
        AIMessage(content="", usage_metadata=USAGE, response_metadata={"model_name": "gpt-4o"},
                  tool_calls=[{"name": "lookup_order", "args": {"order_id": "A-1001"},
                               "id": "call-1", "type": "tool_call"}]),
        AIMessage(content="Your order shipped yesterday.", usage_metadata=USAGE,
                  response_metadata={"model_name": "gpt-4o"}),
    ]


def history(exchanges: int) -> list[dict[str, Any]]:
    """Earlier exchanges, each a question, a tool call, its result and an answer."""
    messages: list[dict[str, Any]] = []
    for i in range(exchanges):
        call = {"name": "lookup_order", "args": {"order_id": f"B-{i}"}, "id": f"call-h{i}"}
        messages += [
            {"role": "user", "content": f"Where is my order B-{i}?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": f"order B-{i}: shipped yesterday",
             "tool_call_id": call["id"]},
            {"role": "assistant", "content": f"Order B-{i} shipped yesterday."},
        ]
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--durability", default="group", choices=["group", "async", "sync"])
    parser.add_argument("--history", type=int, default=0,
                        help="earlier exchanges the conversation starts with")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        guard = bastion.Guard.open(Path(tmp) / "bastion", durability=args.durability)
        model = ScriptedModel(responses=script())
        agents = {
            "without middleware": create_agent(ScriptedModel(responses=script()),
                                               [lookup_order]),
            "pass-through": create_agent(ScriptedModel(responses=script()), [lookup_order],
                                         middleware=[PassThrough()]),
            # The shipped bundle's read-only agent: support-bot's grant of
            # lookup_order is rate-limited to 20 calls a second, which would
            # deny most of the tool calls here.
            "with Bastion": create_agent(model, [lookup_order], middleware=[
                BastionMiddleware(guard, agent_id="auditor", user_id="u-1",
                                  models={"gpt-4o": model},
                                  operations={"lookup_order": "read"},
                                  resources={"lookup_order": "order/{order_id}"})]),
        }
        question = {"messages": [*history(args.history),
                                 {"role": "user", "content": "Where is my order A-1001?"}]}

        def run(agent: Any) -> int:
            t0 = time.perf_counter_ns()
            out = agent.invoke(question)
            elapsed = time.perf_counter_ns() - t0
            assert out["messages"][-2].content == "order A-1001: shipped yesterday", out
            assert out["messages"][-1].content, out
            return elapsed

        for _ in range(50):  # warm up
            for agent in agents.values():
                run(agent)
        times: dict[str, list[int]] = {name: [] for name in agents}
        for _ in range(args.runs):
            for name, agent in agents.items():
                times[name].append(run(agent))
        guard.close()

    median = {name: statistics.median(ns) / 1e3 for name, ns in times.items()}
    bare = median["without middleware"]
    print(f"create_agent run (model -> tool -> model), {args.runs} runs, "
          f"{args.durability} records, {args.history} earlier exchanges:")
    for name, us in median.items():
        print(f"  {name:<19} median {us:9.1f} us")
    for name in ("pass-through", "with Bastion"):
        extra = median[name] - bare
        print(f"  {name + ' overhead':<28} {extra:9.1f} us per run ({extra / bare * 100:.1f}%), "
              f"{extra / 3:.1f} us per step")


if __name__ == "__main__":
    main()
