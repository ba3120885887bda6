"""Policy evaluation from Python, beside in-run baselines.

    .venv/bin/python bench/policy_bench.py

Measures the median and p99 of one before_tool decision by the shipped default
bundle, called with a dict (argument conversion included), against a bare
Python function call taking the same dict, and an empty decision (a bundle
whose only policy returns nil) to show the fixed cost of crossing into C++.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import bastion

CALL = {
    "agent_id": "support-bot", "agent_role": "support", "user_id": "u-42",
    "tenant_id": "acme", "tool": "search_kb", "operation": "read",
    "resource_id": "kb/shipping", "args": {"query": "where is my order", "top_k": 5},
    "run_id": "run-7", "step_index": 3, "run_steps": 3, "run_tool_calls": 1,
    "risk_level": "low",
}


def sample(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t)
    return out


def summary(ns: list[float]) -> dict[str, float]:
    s = sorted(ns)
    return {"median_us": statistics.median(s) / 1e3, "p99_us": s[int(len(s) * 0.99)] / 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("--json")
    args = ap.parse_args()

    engine = bastion.PolicyEngine.load(bastion.default_policies())
    empty = bastion.PolicyEngine.from_sources(
        [("nop.lua", "return { id = 'nop', before_tool = function() return nil end }")])
    assert engine.evaluate("before_tool", CALL).effect == "allow"

    def bare(hook, call):  # the same call shape, doing nothing
        return call

    results = {}
    for name, fn in (
        ("bare_python_call", lambda: bare("before_tool", CALL)),
        ("empty_bundle_evaluate", lambda: empty.evaluate("before_tool", CALL)),
        ("default_bundle_evaluate", lambda: engine.evaluate("before_tool", CALL)),
    ):
        sample(fn, 2000)  # warm up
        for k, v in summary(sample(fn, args.n)).items():
            results[f"{name}_{k}"] = v
    results["default_vs_empty_bundle"] = (results["default_bundle_evaluate_median_us"]
                                          / results["empty_bundle_evaluate_median_us"])
    width = max(map(len, results))
    for k, v in results.items():
        print(f"{k:<{width}}  {v:,.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
