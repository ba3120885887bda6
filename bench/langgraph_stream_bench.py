"""What guarding a streamed model call adds, per chunk and to the first token.

    python bench/langgraph_stream_bench.py [--runs N] [--chunks N] [--durability group|async|sync]

One run streams a scripted chat model's reply of --chunks chunks (a word
each, with an e-mail address, a card number and a phone number among them)
through LangChain's `model.stream(...)`. The same model streams unguarded and
through `guard_model(model, guard)` (the shipped policy bundle: on_chunk
redaction and forbidden-output checks on every chunk, and a decision and an
outcome record per call), taking turns run by run so both see the same
machine. Prints the median time per run, the time to the first token, and
the added latency per chunk: (guarded - unguarded - the per-call cost of
beginning and ending the call) / chunks, where the per-call cost is measured
by a guarded run of the same reply as one chunk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

import bastion
from bastion.langgraph import guard_model

USAGE = {"input_tokens": 420, "output_tokens": 400, "total_tokens": 820}
WORDS = ("Your order A-1001 shipped yesterday from our Berlin warehouse and should arrive "
         "within two days; write to jane.doe@example.com or call +1 415 555 0132 if it does "
         "not, and we will refund the card 4111 1111 1111 1111 in full. ").split(" ")


class Streamer(BaseChatModel):
    """Streams the same reply, a word a chunk, the last chunk with the usage."""

    chunks: int
    model_name: str = "gpt-4o"

    @property
    def _llm_type(self) -> str:
        return "streamer"

    def _pieces(self) -> list[str]:
        return [(" " if i else "") + WORDS[i % len(WORDS)] for i in range(self.chunks)]

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        from langchain_core.messages import AIMessage
        return ChatResult(generations=[ChatGeneration(
            message=AIMessage("".join(self._pieces()), usage_metadata=USAGE))])

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Any:
        for piece in self._pieces():
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=USAGE,
                                                         chunk_position="last"))


def timed(model: Any) -> tuple[int, int]:
    """(nanoseconds to the first token, nanoseconds in all)."""
    t0 = time.perf_counter_ns()
    first = 0
    for chunk in model.stream("Where is my order?"):
        if not first and chunk.content:
            first = time.perf_counter_ns() - t0
    return first, time.perf_counter_ns() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--durability", default="group", choices=["group", "async", "sync"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        guard = bastion.Guard.open(Path(tmp) / "bastion", durability=args.durability)
        bare = Streamer(chunks=args.chunks)
        guarded = guard_model(Streamer(chunks=args.chunks), guard, agent_id="auditor")
        one_chunk = guard_model(Streamer(chunks=1), guard, agent_id="auditor")
        bare_one = Streamer(chunks=1)
        text = "".join(c.content for c in guarded.stream("x"))
        assert "jane.doe@example.com" not in text and "[EMAIL]" in text, text
        models = {"unguarded": bare, "guarded": guarded, "unguarded, 1 chunk": bare_one,
                  "guarded, 1 chunk": one_chunk}
        for _ in range(20):
            for model in models.values():
                timed(model)
        first: dict[str, list[int]] = {name: [] for name in models}
        total: dict[str, list[int]] = {name: [] for name in models}
        for _ in range(args.runs):
            for name, model in models.items():
                f, t = timed(model)
                first[name].append(f)
                total[name].append(t)
        guard.close()

    med = {name: statistics.median(ns) / 1e3 for name, ns in total.items()}
    ttft = {name: statistics.median(ns) / 1e3 for name, ns in first.items()}
    per_call = med["guarded, 1 chunk"] - med["unguarded, 1 chunk"]
    per_chunk = (med["guarded"] - med["unguarded"] - per_call) / args.chunks
    print(f"model.stream() of {args.chunks} chunks, {args.runs} runs, "
          f"{args.durability} records:")
    for name in models:
        print(f"  {name:<20} median {med[name]:10.1f} us, first token after "
              f"{ttft[name]:8.1f} us")
    print(f"  per call (begin + end, 1 chunk)  {per_call:8.1f} us")
    print(f"  added per chunk                  {per_chunk:8.2f} us")
    print(f"  first token held                 {ttft['guarded'] - ttft['unguarded']:8.1f} us "
          f"(of which beginning the call {per_call:.1f} us at most)")


if __name__ == "__main__":
    main()
