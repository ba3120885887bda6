"""What a guarded call costs from Python, beside the policy decisions it makes.

    .venv/bin/python bench/call_bench.py [--calls N] [--durability group|async|sync] [--json FILE]

One guard, opened with `Guard.open` defaults on a directory holding one budget
and one SLO (bench/guard_config/budgets.yaml, slos.yaml): the shipped policy
bundle, the shipped prices, default durability. Measured in one run, each
beside its in-run baseline, interleaved call by call so that the machine's
load moves both alike:

- model call: `begin_model` + `end` (two policy evaluations, a reservation,
  pricing, a settle, an SLO record, two ledger records) vs the same bundle's
  `before_model` + `after_model` evaluations alone (`PolicyEngine.evaluate`
  with the same fields, from Python);
- denied tool call: a write-tool call the bundle's permissions refuse
  (`begin_tool`, which records the denial) vs that bundle's `before_tool`
  evaluation alone;
- high-risk calls from threads: write-tool calls the shipped bundle holds for
  approval, approved and run; the approval record reaches disk (sync) before
  the tool runs. 8 threads vs 1 thread (throughput ratio: the threads share
  fsyncs).

Prints medians, p99 and the ratios; --json writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import bastion

CONFIG = Path(__file__).resolve().parent / "guard_config"

PROMPT = "Customer asks: where is order A-1001? It was due on Monday."
ANSWER = "Order A-1001 shipped yesterday and arrives tomorrow."
USAGE = {"input_tokens": 420, "output_tokens": 36, "total_tokens": 456,
         "input_token_details": {"cache_read": 256}}
WHO = {"agent_id": "support-bot", "user_id": "u-1", "run_id": "run-1"}


def open_guard(root: Path, durability: str = "group") -> bastion.Guard:
    root.mkdir(parents=True)
    for name in ("budgets.yaml", "slos.yaml"):
        shutil.copy(CONFIG / name, root / name)
    return bastion.Guard.open(root, durability=durability)


def paired(a, b, n: int) -> tuple[list[int], list[int]]:
    """Times a(i) and b(i) alternately, n times each, after a warm-up."""
    for i in range(min(n, 500)):
        a(i)
        b(i)
    ta: list[int] = []
    tb: list[int] = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        a(i)
        t1 = clock()
        b(i)
        t2 = clock()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return ta, tb


def stats(ns: list[int]) -> dict[str, float]:
    s = sorted(ns)
    return {"median_us": statistics.median(s) / 1e3, "p99_us": s[int(len(s) * 0.99)] / 1e3}


def threaded_rate(fn, threads: int, seconds: float) -> float:
    """Calls of fn per second from `threads` threads together."""
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def work(k: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            fn(k * 1_000_000 + i)
            i += 1
        done[k] = i

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=3.0, help="per threaded run")
    ap.add_argument("--durability", default="group", choices=["group", "async", "sync"],
                    help="of ordinary records (default: Guard.open's, group)")
    ap.add_argument("--json")
    args = ap.parse_args()
    results: dict[str, float] = {}

    engine = bastion.PolicyEngine.load(bastion.default_policies())
    with tempfile.TemporaryDirectory() as tmp:
        guard = open_guard(Path(tmp) / "guard", args.durability)

        def guarded_model(i: int) -> None:
            call = guard.begin_model("gpt-4o", PROMPT, step_index=i, input_tokens=420,
                                     max_output_tokens=256, **WHO)
            assert call.allowed
            call.end(ANSWER, usage=USAGE, latency=0.9)

        before = {"model": "gpt-4o", "input": PROMPT, **WHO}
        after = {**before, "output": ANSWER,
                 "tokens": {"input": 420, "output": 36, "cache_read": 256}}

        def evaluations(i: int) -> None:
            before["step_index"] = after["step_index"] = i
            engine.evaluate("before_model", before)
            engine.evaluate("after_model", after)

        a, b = paired(guarded_model, evaluations, args.calls)
        for k, v in stats(a).items():
            results[f"model_call_{k}"] = v
        for k, v in stats(b).items():
            results[f"model_evaluations_{k}"] = v
        results["model_call_vs_evaluations"] = (results["model_call_median_us"]
                                                / results["model_evaluations_median_us"])

        # Denied: the read-only auditor may not write.
        denied = {"agent_id": "auditor", "user_id": "u-1", "run_id": "run-2"}

        def guarded_denied(i: int) -> None:
            call = guard.begin_tool("issue_refund", "write", {"order": "A-1001"},
                                    step_index=i, **denied)
            assert call.effect == "deny"

        tool = {"tool": "issue_refund", "operation": "write", "args": {"order": "A-1001"},
                **denied}

        def denied_evaluation(i: int) -> None:
            tool["step_index"] = i
            engine.evaluate("before_tool", tool)

        a, b = paired(guarded_denied, denied_evaluation, args.calls)
        for k, v in stats(a).items():
            results[f"denied_tool_call_{k}"] = v
        for k, v in stats(b).items():
            results[f"denied_evaluation_{k}"] = v
        results["denied_call_vs_evaluation"] = (results["denied_tool_call_median_us"]
                                                / results["denied_evaluation_median_us"])
        guard.close()

        # Allowed high-risk: a write the support role may make without approval.
        guard = open_guard(Path(tmp) / "guard-threads", args.durability)

        def high_risk(i: int) -> None:
            call = guard.begin_tool("send_email", "write", {"to": "a@support.example.com"},
                                    step_index=i, **WHO)
            assert call.needs_approval, call.decision  # the shipped bundle asks a human
            call.approve("ops@example.com")  # durable before the tool runs
            call.end("sent")

        threaded_rate(high_risk, 1, 0.3)  # warm up
        one = threaded_rate(high_risk, 1, args.seconds)
        eight = threaded_rate(high_risk, 8, args.seconds)
        guard.close()
    results["high_risk_calls_per_s_1_thread"] = one
    results["high_risk_calls_per_s_8_threads"] = eight
    results["high_risk_8_threads_vs_1"] = eight / one

    width = max(map(len, results))
    for k, v in results.items():
        print(f"{k:<{width}}  {v:,.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
