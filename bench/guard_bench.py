"""The full lifecycle of one guarded model call, from Python.

    python bench/guard_bench.py [--calls N] [--durability group|async|sync]

One call = Guard.begin_model + GuardedCall.end with a 5-policy bundle (PII
redaction of the prompt, a budget-aware downgrade, prompt-injection markers,
output PII redaction, a forbidden-output check), pricing, one budget, one SLO,
and two ledger records (the decision and the outcome). Each measured call is
paired with a bare Python function call in the same loop, so the ratio survives
a noisy machine. Prints medians and p99 of both.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import bastion

# The bundle, budget and SLO both guard benchmarks (this one and the C++
# bench/guard_bench.cc) measure.
CONFIG = Path(__file__).resolve().parent / "guard_config"

PROMPT = "Customer asks: where is order A-1001? It was due on Monday."
ANSWER = "Order A-1001 shipped yesterday and arrives tomorrow."
USAGE = {"input_tokens": 420, "output_tokens": 36, "total_tokens": 456,
         "input_token_details": {"cache_read": 256}}


def make_guard(root: Path, durability: str) -> bastion.Guard:
    shutil.copytree(CONFIG, root)
    return bastion.Guard.open(root, durability=durability)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--durability", default="group", choices=["group", "async", "sync"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        guard = make_guard(Path(tmp) / "bastion", args.durability)

        def guarded(i: int) -> None:
            call = guard.begin_model("gpt-4o", PROMPT, agent_id="support", user_id="u-1",
                                     run_id="run-1", step_index=i, input_tokens=420,
                                     max_output_tokens=256)
            call.end(ANSWER, usage=USAGE, latency=0.9)

        def bare(i: int) -> None:
            pass

        for i in range(500):  # warm up: Lua states, caches, allocator
            guarded(i)
        lifecycle: list[int] = []
        baseline: list[int] = []
        clock = time.perf_counter_ns
        for i in range(args.calls):
            t0 = clock()
            guarded(i)
            t1 = clock()
            bare(i)
            t2 = clock()
            lifecycle.append(t1 - t0)
            baseline.append(t2 - t1)
        guard.close()

    def pct(values: list[int], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e3

    med = statistics.median(lifecycle) / 1e3
    base = statistics.median(baseline) / 1e3
    print(f"guarded model call, {args.durability} records, {args.calls} calls:")
    print(f"  lifecycle  median {med:8.2f} us   p99 {pct(lifecycle, 0.99):8.2f} us")
    print(f"  bare call  median {base:8.2f} us   p99 {pct(baseline, 0.99):8.2f} us")
    print(f"  ratio (median) {med / base:.1f}x")


if __name__ == "__main__":
    main()
