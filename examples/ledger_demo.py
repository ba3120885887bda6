"""Writes the audit trail of a few customer-support agent runs into a ledger,
verifies the hash chain, and queries it.

    python examples/ledger_demo.py ./demo-ledger
"""

from __future__ import annotations

import sys
import threading
import time
import uuid

import bastion


def run_agent(ledger: bastion.Ledger, run: int, user: str) -> None:
    """One agent run: plan with a model, look an order up, maybe try a refund."""
    run_id = f"run-{run}"
    trace_id = uuid.uuid4().hex
    common = dict(agent_id="support-bot", agent_role="support", user_id=user,
                  tenant_id="acme", run_id=run_id, trace_id=trace_id,
                  policy_version="demo-1")
    ledger.append(action="model_call", model="gpt-4o-mini", step_index=0,
                  span_id=uuid.uuid4().hex[:16], effect="allow", risk_level="low",
                  input_summary=f"customer {user} asks where order A-{run} is",
                  output_summary="call lookup_order", input_tokens=812, output_tokens=45,
                  cache_read_tokens=512, cost_usd="0.000198", duration_ns=640_000_000,
                  **common)
    ledger.append(action="tool_call", tool="lookup_order", operation="read",
                  resource_id=f"order/A-{run}", step_index=1, span_id=uuid.uuid4().hex[:16],
                  effect="allow", risk_level="low", duration_ns=35_000_000,
                  attributes={"order_id": f"A-{run}"}, **common)
    if run % 3 == 0:
        # A refund needs a human; the decision is recorded before anything runs.
        ledger.append(action="tool_call", tool="issue_refund", operation="write",
                      resource_id=f"order/A-{run}", step_index=2,
                      span_id=uuid.uuid4().hex[:16], effect="require_approval",
                      risk_level="high", durability="sync",
                      reasons=[("write-tools-need-approval", "refunds need a human")],
                      **common)
        approved = run % 2 == 0
        ledger.append(action="approval", tool="issue_refund", step_index=2,
                      approval_status="approved" if approved else "rejected",
                      approved_by="ops-lead@acme.example", effect="allow" if approved else "deny",
                      durability="sync", **common)
    if run % 5 == 0:
        ledger.append(action="tool_call", tool="send_email", operation="write", step_index=3,
                      span_id=uuid.uuid4().hex[:16], effect="deny", risk_level="medium",
                      reasons=[("network-allowlist", "domain mailer.evil.example is not allowed")],
                      **common)


def main(path: str) -> int:
    started = time.perf_counter()
    with bastion.Ledger.open(path) as ledger:
        threads = [threading.Thread(target=lambda r=r: run_agent(ledger, r, f"u-{r % 4}"))
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
            for r in ledger.query(effect=effect, action="tool_call", limit=5):
                reason = r["reasons"][0]["message"] if r["reasons"] else ""
                print(f"  #{r['seq']:<4} {r['run_id']:<7} {r['tool']:<13} {effect:<17} {reason}")

        print("\nEverything user u-2 did in run-6, oldest first:")
        for r in ledger.query(user_id="u-2", run_id="run-6", newest_first=False, limit=None):
            what = r["tool"] or r["model"]
            print(f"  #{r['seq']:<4} step {r['step_index']}  {r['action']:<11} {what:<13} "
                  f"{r['effect'] or '-':<17} {r['approval_status'] or ''}")

        try:
            df = ledger.query(limit=None).to_pandas()
        except ImportError:
            return 0
        print("\nCost and tokens by action (pandas):")
        summary = df.groupby("action").agg(records=("seq", "count"),
                                           cost_usd=("cost_usd", "sum"),
                                           input_tokens=("input_tokens", "sum"))
        print(summary.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "./demo-ledger"))
