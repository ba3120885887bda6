"""Human approvals: the interrupts guarded calls raise and the resume values
that answer them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Interrupt

#: The "type" of every interrupt value this package raises.
APPROVAL_TYPE = "bastion.approval"

_APPROVE_WORDS = frozenset({"approve", "approved", "accept", "accepted", "allow"})
_REJECT_WORDS = frozenset({"reject", "rejected", "deny", "denied"})


def approve(by: str, reason: str = "") -> dict[str, Any]:
    """The resume value approving a pending call: Command(resume=approve("alice"))."""
    return {"type": "approve", "by": by, "reason": reason}


def reject(by: str, reason: str = "") -> dict[str, Any]:
    """The resume value rejecting a pending call: Command(resume=reject("bob", "too much"))."""
    return {"type": "reject", "by": by, "reason": reason}


def pending_approvals(graph: Any, config: RunnableConfig) -> list[Interrupt]:
    """The approval interrupts this package raised that are pending in a thread.

    Resume them by id: Command(resume={i.id: approve("alice") for i in pending})."""
    state = graph.get_state(config)
    return [i for i in state.interrupts
            if isinstance(i.value, Mapping) and i.value.get("type") == APPROVAL_TYPE]


def parse_resume(value: Any, default_by: str) -> tuple[bool, str, str]:
    """(approved, by, reason) from a resume value; anything unrecognised rejects."""
    if isinstance(value, bool):
        return value, default_by, ""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _APPROVE_WORDS or word in _REJECT_WORDS:
            return word in _APPROVE_WORDS, default_by, ""
    elif isinstance(value, Mapping):
        approved: bool | None = None
        if isinstance(value.get("approved"), bool):
            approved = value["approved"]
        elif isinstance(value.get("type"), str):
            word = value["type"].strip().lower()
            if word in _APPROVE_WORDS or word in _REJECT_WORDS:
                approved = word in _APPROVE_WORDS
        if approved is not None:
            by = next((v for k in ("by", "approved_by", "rejected_by", "user")
                       if isinstance(v := value.get(k), str) and v), default_by)
            reason = next((v for k in ("reason", "message")
                           if isinstance(v := value.get(k), str) and v), "")
            return approved, by, reason
    shown = repr(value)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return False, default_by, f"unrecognised approval response {shown}"


def who(by: str, reason: str) -> str:
    return f"{by}: {reason}" if reason else by
