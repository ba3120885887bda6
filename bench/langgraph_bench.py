"""What Bastion adds to a LangGraph agent step.

    python bench/langgraph_bench.py [--runs N] [--durability group|async|sync]

One run is `create_agent(...).invoke(...)` of a LangChain v1 agent on a scripted
chat model: a model call that asks for a tool, the tool call, and a model call
that answers (three steps). The same agent runs with and without
`BastionMiddleware` (the shipped policy bundle and prices, two ledger records per
call), alternating run by run so both see the same machine. Prints the median
time per run of each and the overhead as a percentage of the unguarded run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--durability", default="group", choices=["group", "async", "sync"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        guard = bastion.Guard.open(Path(tmp) / "bastion", durability=args.durability)
        model = ScriptedModel(responses=script())
        bare = create_agent(ScriptedModel(responses=script()), [lookup_order])
        guarded = create_agent(model, [lookup_order], middleware=[
            BastionMiddleware(guard, agent_id="support-bot", agent_role="support",
                              user_id="u-1", models={"gpt-4o": model})])
        question = {"messages": [{"role": "user", "content": "Where is my order A-1001?"}]}

        def run(agent: Any) -> int:
            t0 = time.perf_counter_ns()
            out = agent.invoke(question)
            elapsed = time.perf_counter_ns() - t0
            assert out["messages"][-1].content, out
            return elapsed

        for _ in range(50):  # warm up
            run(bare)
            run(guarded)
        bare_ns: list[int] = []
        guarded_ns: list[int] = []
        for _ in range(args.runs):
            bare_ns.append(run(bare))
            guarded_ns.append(run(guarded))
        guard.close()

    b = statistics.median(bare_ns) / 1e3
    g = statistics.median(guarded_ns) / 1e3
    print(f"create_agent run (model -> tool -> model), {args.runs} runs, {args.durability} records:")
    print(f"  without Bastion  median {b:9.1f} us")
    print(f"  with Bastion     median {g:9.1f} us")
    print(f"  overhead         {g - b:9.1f} us per run ({(g - b) / b * 100:.1f}%), "
          f"{(g - b) / 3:.1f} us per step")


if __name__ == "__main__":
    main()
