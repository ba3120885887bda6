"""A customer-support agent built with LangChain's `create_agent` and guarded by
Bastion, end to end: every model call and tool call is checked by the shipped
policy bundle, priced, charged to a per-customer budget, measured against SLOs
and recorded in the hash-chained ledger, which is then verified.

    python examples/support_agent.py [GUARD_DIR]    # default: a new temporary directory

The chat model is scripted (no API key, no network), so a run takes a second or
two and does the same every time. What happens:

- ticket-1042, Jane: order A-1001 arrived damaged. The agent looks the order up
  (the result holds her e-mail address, phone number and card number: the
  policies redact them before the model sees them), reads the refund policy, and
  asks to refund $349 and to e-mail the warehouse. Both are writes, so the graph
  pauses for a human, who approves both. By her second question 90% of her
  daily budget is committed, so her model calls run on gpt-5-mini instead of
  gpt-5; at her third, what is left cannot cover the reservation for another
  call, and the call is refused before it runs.
- ticket-1043, Sam: wants a refund outside the refund window (the human rejects
  it) and the invoice e-mailed to a blocked domain (the network policy denies
  it).

Needs `pip install 'bastion[langgraph]'` (LangGraph and LangChain). The guard
directory keeps the ledger afterwards (GUARD_DIR/ledger): query it with
`bastion ledger query GUARD_DIR/ledger` or examples/notebooks/audit.ipynb.
"""

from __future__ import annotations

import collections
import re
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import bastion
from bastion.langgraph import BastionMiddleware, approve, pending_approvals, reject

AGENT_ID = "support-bot"  # policies/default/permissions.yaml gives it the role "support"
MODEL, CHEAPER_MODEL = "gpt-5", "gpt-5-mini"

# Small on purpose, so that one customer's conversation reaches it.
BUDGETS_YAML = f"""\
version: 1
budgets:
  - id: per-customer-daily
    scope: user
    match: {{agent: "support-*"}}
    limit_usd: 0.10
    window: daily
    alerts:
      - {{at: 90%, level: warning, action: downgrade, model: {CHEAPER_MODEL}}}
"""

SLOS_YAML = """\
version: 1
slos:
  - id: support-model
    match: {kind: model, agent: "support-*"}
    group_by: [model]
    latency: {p95: 2s, p99: 5s, window: 1h}
    success: {target: 99%, window: 30d}
    cost: {max_per_request_usd: 0.015, window: 1h}
  - id: support-tools
    match: {kind: tool, agent: "support-*"}
    latency: {p95: 500ms, window: 1h}
    success: {target: 99.5%, window: 30d}
"""

SYSTEM_PROMPT = """\
You are the support agent of Acme's online shop. Look orders up before you
answer, check the knowledge base for the policy that applies, and use the tools
to act: refunds and e-mails are reviewed by a person before they go out.
The warehouse collects returned items: e-mail returns@warehouse.example.com.
Never repeat card numbers, e-mail addresses or phone numbers to the customer."""

# --- the shop: orders, knowledge base, and the agent's tools -----------------

ORDERS = {
    "A-1001": ("Order A-1001: Aurora X2 tablet, $349.00, delivered 2 days ago. "
               "Customer Jane Doe <jane.doe@example.com>, +1 415 555 0142. "
               "Paid with card 4111 1111 1111 1111."),
    "A-1017": ("Order A-1017: Aurora X2 folio case, $39.00, shipped yesterday by "
               "parcel, tracking 1Z 999 AA1 01 2345 6784, arrives in 2 days. "
               "Customer Jane Doe <jane.doe@example.com>."),
    "A-2002": ("Order A-2002: Barista Pro espresso machine, $1,250.00, delivered "
               "128 days ago. Customer Sam Rivera <sam.rivera@example.net>, "
               "(212) 555-0199. Paid with card 5500 0000 0000 0004."),
}

KNOWLEDGE_BASE = {
    "damaged": ("KB-114 Damaged on arrival: refund in full within 30 days of delivery; "
                "no need to send the item back: ask the warehouse to collect it."),
    "refund": ("KB-101 Refunds: within 30 days of delivery. After that, faulty items "
               "are repaired free of charge under the 2-year warranty."),
}

@tool
def lookup_order(order_id: str) -> str:
    """Looks up an order by its id (A-1234)."""
    return ORDERS.get(order_id, f"No order {order_id}.")


@tool
def search_kb(query: str) -> str:
    """Searches the support knowledge base."""
    hits = [text for key, text in KNOWLEDGE_BASE.items() if key in query.lower()]
    return "\n".join(hits) or "No article found."


@tool
def issue_refund(order_id: str, amount: float) -> str:
    """Refunds (part of) an order to the card it was paid with."""
    return f"Refunded ${amount:,.2f} on order {order_id}."


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Sends an e-mail."""
    return f"E-mail '{subject}' sent to {to}."


# What each tool does and what it touches: the permissions and policies decide on these.
lookup_order.metadata = {"operation": "read", "resource": "order/{order_id}"}
search_kb.metadata = {"operation": "read"}
issue_refund.metadata = {"operation": "write", "resource": "order/{order_id}"}
send_email.metadata = {"operation": "write"}
TOOLS = [lookup_order, search_kb, issue_refund, send_email]

# --- the scripted chat model -------------------------------------------------


class ScriptedChatModel(GenericFakeChatModel):
    """A chat model that answers with the next message of a script (shared by
    every instance, so a downgrade continues the same conversation) and says
    which model answered, as provider integrations do."""

    model_name: str = MODEL
    max_tokens: int = 4096  # the guard reserves budget for this many output tokens

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> Any:
        try:
            result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except StopIteration:
            raise RuntimeError("the script has no more answers: the guard decided "
                               "differently from what the script expects") from None
        generation = result.generations[0]
        generation.message = generation.message.model_copy(
            update={"response_metadata": {"model_name": self.model_name}})
        return result

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self


def usage(input_tokens: int, output_tokens: int, cache_read: int = 0,
          reasoning: int = 0) -> dict[str, Any]:
    """A LangChain usage_metadata: input includes cache reads, output includes reasoning."""
    u: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                         "total_tokens": input_tokens + output_tokens}
    if cache_read:
        u["input_token_details"] = {"cache_read": cache_read}
    if reasoning:
        u["output_token_details"] = {"reasoning": reasoning}
    return u


def calls(*tool_calls: tuple[str, str, dict[str, Any]], tokens: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", usage_metadata=tokens, tool_calls=[
        {"name": name, "args": args, "id": call_id, "type": "tool_call"}
        for call_id, name, args in tool_calls])


def says(text: str, tokens: dict[str, Any]) -> AIMessage:
    return AIMessage(content=text, usage_metadata=tokens)


def script() -> Iterator[AIMessage]:
    """What the model answers, call after call, across both tickets. A reasoning
    model: output tokens include reasoning tokens; prompts are cached after the
    first call (the cheaper model starts with a cold cache)."""
    return iter([
        # ticket-1042, Jane: "arrived with a cracked screen" (gpt-5)
        calls(("call_j1", "lookup_order", {"order_id": "A-1001"}),
              tokens=usage(3_150, 980, reasoning=896)),
        calls(("call_j2", "search_kb", {"query": "damaged on arrival"}),
              tokens=usage(3_420, 610, cache_read=3_072, reasoning=576)),
        calls(("call_j3", "issue_refund", {"order_id": "A-1001", "amount": 349.0}),
              ("call_j4", "send_email", {
                  "to": "returns@warehouse.example.com", "subject": "Collect order A-1001",
                  "body": "Please collect the damaged Aurora X2 tablet of order A-1001."}),
              tokens=usage(3_790, 1_420, cache_read=3_328, reasoning=1_280)),
        says("I'm sorry about the screen! I've refunded $349.00 to the card you paid "
             "with, and our warehouse will collect the tablet: you don't need to send "
             "it back.", tokens=usage(4_010, 1_520, cache_read=3_712, reasoning=1_408)),
        # "has my other order shipped?" (downgraded to gpt-5-mini)
        calls(("call_j5", "lookup_order", {"order_id": "A-1017"}),
              tokens=usage(4_180, 1_250, reasoning=1_152)),
        says("Yes: your folio case (order A-1017) shipped yesterday and should arrive "
             "in 2 days.", tokens=usage(4_460, 2_560, cache_read=4_096, reasoning=2_496)),
        # (Jane's third question is refused before it reaches a model.)
        # ticket-1043, Sam: a refund outside the window, an e-mail to a blocked domain
        calls(("call_s1", "lookup_order", {"order_id": "A-2002"}),
              tokens=usage(3_160, 420, reasoning=384)),
        calls(("call_s2", "search_kb", {"query": "refund policy"}),
              tokens=usage(3_400, 330, cache_read=3_072, reasoning=320)),
        calls(("call_s3", "issue_refund", {"order_id": "A-2002", "amount": 1250.0}),
              tokens=usage(3_560, 290, cache_read=3_328, reasoning=256)),
        calls(("call_s4", "send_email", {
                  "to": "accounts@evil.example.com", "subject": "Invoice for order A-2002",
                  "body": "Invoice of order A-2002 (Barista Pro), $1,250.00."}),
              tokens=usage(3_720, 350, cache_read=3_584, reasoning=256)),
        says("I can't refund A-2002: it was delivered 128 days ago, past our 30-day "
             "window, but it is under warranty and we repair it for free. I also "
             "can't e-mail the invoice to that domain: it is on our block list.",
             tokens=usage(3_900, 390, cache_read=3_584, reasoning=320)),
    ])


# --- the human at the support desk -------------------------------------------


def review(request: dict[str, Any]) -> dict[str, Any]:
    """Answers one approval request (the interrupt's value)."""
    tool, args = request.get("tool"), request.get("tool_call", {}).get("args", {})
    if tool == "issue_refund" and args["order_id"] == "A-2002":
        return reject("bob", "delivered 128 days ago, outside the refund window")
    if tool == "issue_refund":
        return approve("alice", "photo of the damage checked")
    if tool == "send_email" and args["to"].endswith("@warehouse.example.com"):
        return approve("alice", "warehouse pickup request")
    return reject("alice", "not expected in this conversation")


# --- what happened, from the ledger ------------------------------------------

WIDTH = 120


def say(text: str, indent: int = 2) -> None:
    """Prints `text` wrapped to WIDTH, continuation lines indented."""
    print(textwrap.fill(text, WIDTH, subsequent_indent=" " * indent,
                        break_on_hyphens=False))


def why(record: dict[str, Any]) -> str:
    """The deciding policies and the reason, in a few words."""
    reasons = record["reasons"] or []
    if not reasons:
        return ""
    ids = ", ".join(dict.fromkeys(r["policy_id"] for r in reasons))
    message = reasons[-1]["message"]
    refused = re.search(r"estimate \$[\d.]+ refused: .*?(?= \(limit|$)", message)
    if refused:  # a budget refusal: the numbers, not the window
        message = refused.group(0)
    elif message.startswith("downgraded from"):
        message = message.split(": budget")[0]
    return f"{ids}: {message}"


class Report:
    """Prints each guarded call once its records are in the ledger: the decision
    (effect, deciding policies, reason), a human's verdict, and the cost."""

    def __init__(self, guard: bastion.Guard) -> None:
        self.guard = guard
        self.seen = 0

    def new_records(self) -> list[dict[str, Any]]:
        self.guard.flush()
        with bastion.Ledger.open(self.guard.ledger_path, reader=True) as ledger:
            head = ledger.head()["seq"]
            records = [ledger.get(seq) for seq in range(self.seen + 1, head + 1)]
        self.seen = head
        return records

    def show(self) -> None:
        # One entry per guarded call (its records share a span), in step order;
        # the tool calls of one step by call id, as they may run concurrently.
        calls: dict[str, list[dict[str, Any]]] = {}
        for r in self.new_records():
            calls.setdefault(r["span_id"], []).append(r)
        for records in sorted(calls.values(), key=lambda rs: (rs[0]["step_index"] or 0,
                                                                rs[0]["request_id"] or "")):
            for line in self.lines(records):
                say(line.rstrip(), indent=38)

    @staticmethod
    def lines(records: list[dict[str, Any]]) -> list[str]:
        """A call's decision (with its cost once it ended), verdicts and alerts."""
        lines: list[str] = []
        outcome = next((r for r in records
                        if (r["attributes"] or {}).get("phase") == "outcome"), None)
        for r in records:
            kind = "model" if r["action"] == "model_call" else "tool "
            what = f"{kind} {r['model'] or r['tool']:<12}"
            phase = (r["attributes"] or {}).get("phase")
            if r["action"] == "approval":
                lines.append(f"  {what} {r['approval_status']:<16} {r['reasons'][0]['message']}")
            elif r["action"] == "budget_alert":
                lines.append(f"  ! budget alert: {why(r)}")
            elif phase == "decision":
                cost = ""
                if r["action"] == "model_call" and outcome is not None:
                    cost = f"${outcome['cost_usd']:.6f} "
                lines.append(f"  {what} {r['effect']:<16} {cost}{why(r)}")
            if phase == "outcome" and r["action"] == "tool_call" and r["effect"] != "allow":
                lines.append(f"{'':21}{'result: ' + r['effect']:<16} {why(r)}")
        return lines


# --- the run -----------------------------------------------------------------


def converse(agent: Any, report: Report, ticket: str, user_id: str, name: str,
             text: str) -> str:
    """One customer message, through any approvals, to the agent's answer."""
    config = {"configurable": {"thread_id": ticket, "user_id": user_id, "tenant_id": "acme"}}
    print()
    say(f"[{ticket}] {name} ({user_id}): {text}")
    result = agent.invoke({"messages": [HumanMessage(text)]}, config, version="v2")
    report.show()
    while result.interrupts:
        pending = pending_approvals(agent, config)
        print(f"  ... paused: {len(pending)} call(s) wait for a human")
        answers = {i.id: review(i.value) for i in pending}
        result = agent.invoke(Command(resume=answers), config, version="v2")
        report.show()
    answer = result.value["messages"][-1].content
    say("  " + textwrap.shorten(f"agent: {answer}", 2 * WIDTH - 12, placeholder=" …"))
    return answer


def setup(root: Path) -> None:
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty: give a new directory for the guard")
    root.mkdir(parents=True, exist_ok=True)
    (root / "budgets.yaml").write_text(BUDGETS_YAML)
    (root / "slos.yaml").write_text(SLOS_YAML)


def run(guard: bastion.Guard) -> None:
    """The agent, both tickets, and the budget and SLO summary."""
    shared = script()
    model = ScriptedChatModel(messages=shared, model_name=MODEL, disable_streaming=True)
    cheaper = ScriptedChatModel(messages=shared, model_name=CHEAPER_MODEL, disable_streaming=True)
    agent = create_agent(
        model, tools=TOOLS, system_prompt=SYSTEM_PROMPT, checkpointer=InMemorySaver(),
        middleware=[BastionMiddleware(guard, agent_id=AGENT_ID, agent_role="support",
                                      models={MODEL: model, CHEAPER_MODEL: cheaper})])
    report = Report(guard)

    converse(agent, report, "ticket-1042", "u-1001", "Jane",
             "Hi, my tablet from order A-1001 arrived with a cracked screen. I'd like a "
             "refund. You can reach me at jane.doe@example.com or +1 415 555 0142.")
    converse(agent, report, "ticket-1042", "u-1001", "Jane",
             "Thanks! Has my other order A-1017 shipped yet?")
    converse(agent, report, "ticket-1042", "u-1001", "Jane",
             "Great. Is there a warranty on the tablet? And can I pay future orders with "
             "my new card 5105 1051 0510 5100?")
    converse(agent, report, "ticket-1043", "u-2002", "Sam",
             "My espresso machine (order A-2002) stopped working. Refund the $1,250 to "
             "my card 5500 0000 0000 0004, and e-mail the invoice to my accountant: "
             "mailbox accounts at evil.example.com. Call me at (212) 555-0199 if needed.")

    guard.slos.evaluate()  # by themselves, SLO signals are evaluated at most once a second
    print("\n== budgets and SLOs")
    print(guard.summary())


def audit(path: str) -> bool:
    """Verifies the ledger and counts what is in it."""
    print(f"\n== the ledger: {path}")
    with bastion.Ledger.open(path, reader=True) as ledger:
        verified = ledger.verify()
        print(f"verify: {'OK' if verified.ok else 'FAILED'}: {verified.message}")
        records = list(ledger.query(limit=None, newest_first=False))
    print(f"records: {counted(r['action'] for r in records)}")
    decisions = [r for r in records if (r["attributes"] or {}).get("phase") == "decision"]
    print(f"decisions: {counted(r['effect'] for r in decisions)}; denied by "
          f"{counted(r['reasons'][0]['policy_id'] for r in decisions if r['effect'] == 'deny')}")
    verdicts = [r["approval_status"] for r in records if r["action"] == "approval"]
    print(f"approvals: {counted(verdicts)}")
    spend: dict[str, list[Decimal]] = collections.defaultdict(list)
    for r in records:
        if r["action"] == "model_call" and (r["attributes"] or {}).get("phase") == "outcome":
            spend[r["model"]].append(r["cost_usd"])
    print("model calls: " + ", ".join(f"{m} {len(c)} for ${sum(c):.6f}" for m, c in spend.items())
          + f"; total ${sum(sum(c) for c in spend.values()):.6f}")
    print(f"next: bastion ledger query {path} --effect deny")
    return verified.ok


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="bastion-support-"))
    setup(root)
    with bastion.Guard.open(root) as guard:
        print(f"guard directory: {root}")
        print(f"  policies: the shipped bundle ({guard.policy_version[:12]}); budgets.yaml: "
              f"$0.10 per customer per day,")
        print(f"  {CHEAPER_MODEL} instead of {MODEL} from 90%; slos.yaml: support-model, "
              f"support-tools")
        run(guard)
    return 0 if audit(str(root / "ledger")) else 1


def counted(values: Iterable[str]) -> str:
    return ", ".join(f"{n} {v}" for v, n in collections.Counter(values).most_common())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
