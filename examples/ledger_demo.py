"""A customer-support agent's calls, decided by the shipped policy bundle and
recorded in a hash-chained ledger; then the ledger is verified and queried.

    python examples/ledger_demo.py ./demo-ledger
"""

from __future__ import annotations

import sys
import threading
import time
import uuid

import bastion

ENGINE = bastion.PolicyEngine.load(bastion.default_policies())


def guarded(ledger: bastion.Ledger, hook: str, call: dict, record: dict) -> bastion.Decision:
    """Asks the policies about one call and records their decision."""
    decision = ENGINE.evaluate(hook, call)
    durability = "sync" if decision.effect in ("deny", "require_approval") else "group"
    ledger.append(record, effect=decision.effect, policy_version=decision.policy_version,
                  reasons=[(r["policy_id"], r["message"]) for r in decision.reasons],
                  risk_level=decision.risk_level, durability=durability)
    return decision


def run_agent(ledger: bastion.Ledger, run: int, user: str) -> None:
    """One agent run: a model call, an order lookup, maybe a refund or an e-mail."""
    who = {"agent_id": "support-bot", "agent_role": "support"}
    ctx = {"user_id": user, "tenant_id": "acme", "run_id": f"run-{run}",
           "trace_id": uuid.uuid4().hex, **who}
    prompt = f"Customer {user}@mail.example.com asks where order A-{run} is"
    d = guarded(ledger, "before_model",
                {**who, "model": "gpt-4o-mini", "input": prompt, "run_id": f"run-{run}"},
                {**ctx, "action": "model_call", "model": "gpt-4o-mini", "step_index": 0,
                 "input_summary": d_apply(prompt), "input_tokens": 812, "output_tokens": 45,
                 "cache_read_tokens": 512, "cost_usd": "0.000198", "duration_ns": 640_000_000})
    order = f"order/A-{run}"
    guarded(ledger, "before_tool",
            {**who, "tool": "lookup_order", "operation": "read", "resource_id": order,
             "run_tool_calls": 0},
            {**ctx, "action": "tool_call", "tool": "lookup_order", "operation": "read",
             "resource_id": order, "step_index": 1, "attributes": {"order_id": f"A-{run}"}})
    if run % 3 == 0:
        d = guarded(ledger, "before_tool",
                    {**who, "tool": "issue_refund", "operation": "write", "resource_id": order,
                     "args": {"amount": 25}, "run_tool_calls": 1},
                    {**ctx, "action": "tool_call", "tool": "issue_refund", "operation": "write",
                     "resource_id": order, "step_index": 2})
        if d.effect == "require_approval":
            approved = run % 2 == 0
            ledger.append(ctx, action="approval", tool="issue_refund", step_index=2,
                          approval_status="approved" if approved else "rejected",
                          approved_by="ops-lead@acme.example",
                          effect="allow" if approved else "deny", durability="sync")
    if run % 5 == 0:
        to = "billing@mailer.evil.example" if run % 10 else "jane@shop.example.com"
        guarded(ledger, "before_tool",
                {**who, "tool": "send_email", "operation": "write", "args": {"to": to},
                 "run_tool_calls": 2},
                {**ctx, "action": "tool_call", "tool": "send_email", "operation": "write",
                 "step_index": 3})


def d_apply(text: str) -> str:
    """What the ledger keeps of a prompt: the text after the PII policy's redactions."""
    return ENGINE.evaluate("before_model", input=text).apply(text, "input")


def main(path: str) -> int:
    started = time.perf_counter()
    print(f"policy bundle {ENGINE.version[:12]}: {', '.join(ENGINE.policy_ids)}")
    with bastion.Ledger.open(path) as ledger:
        threads = [threading.Thread(target=run_agent, args=(ledger, r, f"u-{r % 4}"))
                   for r in range(1, 31)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ledger.flush()
        head = ledger.head()
        print(f"wrote {head['seq']} records from 30 concurrent agent runs "
              f"in {1000 * (time.perf_counter() - started):.1f} ms")
        print(f"chain head #{head['seq']}: {head['hash']}")

        report = ledger.verify()
        print(f"verify: {'OK' if report.ok else 'FAILED'} — {report.message}")
        if not report.ok:
            return 1

        print("\nDecisions that stopped or paused a tool call (newest first):")
        for effect in ("deny", "require_approval"):
            for r in ledger.query(effect=effect, action="tool_call", limit=4):
                reason = r["reasons"][0] if r["reasons"] else {"policy_id": "", "message": ""}
                print(f"  #{r['seq']:<4} {r['run_id']:<7} {r['tool']:<13} {effect:<17} "
                      f"{reason['policy_id']}: {reason['message']}")

        print("\nEverything in run-6, oldest first:")
        for r in ledger.query(run_id="run-6", newest_first=False, limit=None):
            what = r["tool"] or r["model"]
            print(f"  #{r['seq']:<4} step {r['step_index']}  {r['action']:<11} {what:<13} "
                  f"{r['effect'] or '-':<17} {r['approval_status'] or ''}")
        first = ledger.query(action="model_call", newest_first=False, limit=1)[0]
        print(f"\nA prompt as recorded (PII redacted by policy): {first['input_summary']!r}")

        try:
            df = ledger.query(limit=None).to_pandas()
        except ImportError:
            return 0
        print("\nRecords, cost and tokens by action and decision (pandas):")
        summary = df.groupby(["action", "effect"]).agg(records=("seq", "count"),
                                                       cost_usd=("cost_usd", "sum"),
                                                       input_tokens=("input_tokens", "sum"))
        print(summary.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "./demo-ledger"))
