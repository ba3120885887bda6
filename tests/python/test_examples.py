"""The examples run end to end: the README's main job (examples/support_agent.py,
a guarded LangGraph agent) and examples/ledger_demo.py."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bastion

REPO = Path(__file__).resolve().parents[2]


def test_ledger_demo_runs_and_its_ledger_verifies(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    out = subprocess.run([sys.executable, str(REPO / "examples" / "ledger_demo.py"), str(path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verify: OK" in out.stdout
    assert "A prompt as recorded (PII redacted by policy): 'Customer [EMAIL]" in out.stdout
    with bastion.Ledger.open(str(path), reader=True) as ledger:
        assert ledger.verify().ok
        records = list(ledger.query(limit=None))
        assert len(records) == ledger.head()["seq"] > 60
        # (The demo prints the 4 newest denials; which ones depends on its threads.)
        assert {"policy_id": "network-allowlist",
                "message": "domain mailer.evil.example is not in the allowlist"} in [
            reason for r in records if r["effect"] == "deny" for reason in r["reasons"]]
        assert all(r["policy_version"] for r in records if r["action"] != "approval")
        assert not any("@mail.example.com" in (r["input_summary"] or "") for r in records)


# --- examples/support_agent.py: a LangGraph agent guarded end to end ----------

# What the customers typed and the tools returned: none of it may reach the ledger.
CUSTOMER_PII = ("jane.doe@example.com", "+1 415 555 0142", "4111 1111 1111 1111",
                "5105 1051 0510 5100", "sam.rivera@example.net", "(212) 555-0199",
                "5500 0000 0000 0004")


def run_support_agent(guard_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "examples" / "support_agent.py"),
                           str(guard_dir)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_support_agent_runs_and_its_ledger_tells_what_happened(tmp_path: Path) -> None:
    pytest.importorskip("langgraph")
    pytest.importorskip("langchain")
    guard_dir = tmp_path / "guard"
    out = run_support_agent(guard_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "downgraded from 'gpt-5' to 'gpt-5-mini'" in text
    assert "90% of $0.1 reached" in text
    assert "refused: spent $" in text
    assert "approved by alice: photo of the damage checked" in text
    assert "rejected by bob: delivered 128 days ago" in text
    assert "network-allowlist: domain evil.example.com is blocked" in text
    assert "verify: OK" in text
    assert "approvals: 2 approved, 1 rejected" in text

    with bastion.Ledger.open(str(guard_dir / "ledger"), reader=True) as ledger:
        report = ledger.verify()
        assert report.ok, report
        records = list(ledger.query(limit=None, newest_first=False))
    assert len(records) == ledger_head_seq(guard_dir)
    assert all(r["policy_version"] for r in records)

    def phase(r: dict) -> str:
        return (r["attributes"] or {}).get("phase", "")

    def policies(r: dict) -> set[str]:
        return {reason["policy_id"] for reason in r["reasons"]}

    jane = [r for r in records if r["user_id"] == "u-1001"]
    model_decisions = [r for r in jane if r["action"] == "model_call" and phase(r) == "decision"]
    # Jane's calls: gpt-5 first, then downgraded by her budget, then refused by it.
    downgraded = [r for r in model_decisions if r["model"] == "gpt-5-mini"]
    assert downgraded and all(r["effect"] == "modify" and "budget:per-customer-daily"
                              in policies(r) for r in downgraded)
    assert model_decisions[0]["model"] == "gpt-5"
    halted = model_decisions[-1]
    assert halted["effect"] == "deny" and policies(halted) == {"budget:per-customer-daily"}
    assert halted["seq"] > max(r["seq"] for r in downgraded)
    assert "refused" in halted["reasons"][0]["message"]
    [alert] = [r for r in records if r["action"] == "budget_alert"]
    assert alert["attributes"]["action"] == "downgrade" and alert["model"] == "gpt-5-mini"

    # Every model call that ran is priced; the budget's saved state agrees with the ledger.
    outcomes = [r for r in records if r["action"] == "model_call" and phase(r) == "outcome"]
    assert {r["model"] for r in outcomes} == {"gpt-5", "gpt-5-mini"}
    assert all(r["cost_usd"] > 0 for r in outcomes)
    assert any(r["reasoning_tokens"] and r["cache_read_tokens"] for r in outcomes)
    first = bastion.default_pricing().price("gpt-5", {
        "input_tokens": 3150, "output_tokens": 980, "total_tokens": 4130,
        "output_token_details": {"reasoning": 896}}, provider="langchain")
    assert outcomes[0]["cost_usd"] == first.usd
    with bastion.Budgets.open(str(guard_dir / "budgets.yaml"),
                              state_path=str(guard_dir / "state")) as budgets:
        for user in ("u-1001", "u-2002"):
            spent = sum(r["cost_usd"] for r in outcomes if r["user_id"] == user)
            usage = budgets.usage_of("per-customer-daily", user)
            assert usage["spent_usd"] == spent
            assert usage["reserved_usd"] == 0

    # Approvals: the refund of A-1001 and the warehouse e-mail approved, A-2002's rejected.
    approvals = {(r["tool"], r["resource_id"], r["approval_status"], r["approved_by"])
                 for r in records if r["action"] == "approval"}
    assert approvals == {("issue_refund", "order/A-1001", "approved", "alice"),
                         ("send_email", None, "approved", "alice"),
                         ("issue_refund", "order/A-2002", "rejected", "bob")}
    ran = {(r["tool"], r["resource_id"]) for r in records
           if r["action"] == "tool_call" and phase(r) == "outcome"}
    assert ("issue_refund", "order/A-1001") in ran and ("issue_refund", "order/A-2002") not in ran

    # The e-mail to the blocked domain was denied and never sent.
    emails = [r for r in records if r["tool"] == "send_email" and phase(r) == "decision"]
    [blocked] = [r for r in emails if "evil.example.com" in r["input_summary"]]
    assert blocked["effect"] == "deny" and policies(blocked) == {"network-allowlist"}
    assert not [r for r in records if r["span_id"] == blocked["span_id"] and r is not blocked]
    [allowed] = [r for r in emails if "@warehouse.example.com" in r["input_summary"]]
    assert allowed["effect"] == "require_approval"
    assert [phase(r) for r in records if r["span_id"] == allowed["span_id"]] == [
        "decision", "approval", "outcome"]

    # Personal data: redacted in the summaries, and nowhere in any record.
    for r in records:
        for value in r.values():
            if isinstance(value, str):
                assert not any(pii in value for pii in CUSTOMER_PII), (r["seq"], value)
        for reason in r["reasons"]:
            assert not any(pii in reason["message"] for pii in CUSTOMER_PII)
    summaries = " ".join(r[f] or "" for r in records for f in ("input_summary", "output_summary"))
    for label in ("[EMAIL]", "[PHONE]", "[CREDIT_CARD]"):
        assert label in summaries

    # The guard directory is the example's own: it does not reuse one.
    again = run_support_agent(guard_dir)
    assert again.returncode != 0 and "is not empty" in again.stderr


def test_support_agent_model_never_sees_raw_customer_pii(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What the scripted model was sent, call by call: the customers' messages and
    the order records carry their e-mail addresses, phone and card numbers."""
    pytest.importorskip("langgraph")
    pytest.importorskip("langchain")
    example = load_example("support_agent")
    prompts: list[str] = []
    generate = example.ScriptedChatModel._generate

    def spy(self: Any, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        prompts.append("\n".join(str(m.content) for m in messages))
        return generate(self, messages, *args, **kwargs)

    monkeypatch.setattr(example.ScriptedChatModel, "_generate", spy)
    with contextlib.redirect_stdout(io.StringIO()):
        assert example.main(["support_agent.py", str(tmp_path / "guard")]) == 0
    assert len(prompts) == 11
    assert "reach me at [EMAIL] or [PHONE]" in prompts[0] and "[CREDIT_CARD]" in prompts[1]
    assert not any(pii in prompts[0] for pii in CUSTOMER_PII)
    # Later calls send the whole conversation again: the earlier messages too
    # reach the model only as the guard redacted them.
    leaked = [i for i, p in enumerate(prompts) if any(pii in p for pii in CUSTOMER_PII)]
    assert leaked == []


def ledger_head_seq(guard_dir: Path) -> int:
    with bastion.Ledger.open(str(guard_dir / "ledger"), reader=True) as ledger:
        return ledger.head()["seq"]


# --- docs/quickstart.md ---------------------------------------------------------


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  REPO / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its Python blocks run in order in one namespace, each printing what the
    plain block after it shows; `model` is the support agent's scripted model."""
    pytest.importorskip("langgraph")
    pytest.importorskip("langchain")
    example = load_example("support_agent")
    tokens = example.usage(1_200, 150, cache_read=1_024, reasoning=64)
    model = example.ScriptedChatModel(messages=iter([
        example.calls(("call_1", "lookup_order", {"order_id": "A-1001"}), tokens=tokens),
        example.says("It shipped yesterday.", tokens=tokens),
        example.calls(("call_2", "issue_refund", {"order_id": "A-1001", "amount": 25.0}),
                      tokens=tokens),
        example.says("Done: $25 refunded.", tokens=tokens),
        example.calls(("call_3", "issue_refund", {"order_id": "A-1002", "amount": 900.0}),
                      tokens=tokens),
        example.says("A manager will look at refunds above $500.", tokens=tokens),
    ]))
    text = (REPO / "docs" / "quickstart.md").read_text()
    blocks = [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
              for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__doc_example__", "model": model}
    ran = 0
    try:
        for i, (lang, code, line) in enumerate(blocks):
            if lang != "python":
                continue
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"docs/quickstart.md:{line}", "exec"), namespace)
            ran += 1
            shown = blocks[i + 1] if i + 1 < len(blocks) else None
            if shown is not None and shown[0] == "":
                assert out.getvalue() == shown[1], f"docs/quickstart.md:{line}"
    finally:
        if "guard" in namespace:
            namespace["guard"].close()
    assert ran == 5
    with pytest.raises(StopIteration):  # every scripted answer was asked for
        next(model.messages)
