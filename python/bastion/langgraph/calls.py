"""The skeleton every guarded model or tool call follows, and what it shares.

A guarded call is begun in the core with an idempotency key derived from the
graph (thread, task, tool call id). The core keeps the call under that key,
in the guard's directory: its decision, its reservation and its state
(awaiting approval, in flight, ended, output awaiting review), and a memo
that this package writes — the approval interrupts already answered and the
result handed back. That is the only memory of a call: LangGraph re-executes
a whole task when it resumes it, in this process or another, and the call is
then found by its key, its answered interrupts are consumed again in order
(LangGraph matches resume values to interrupts by position), and a call that
already ran returns what it returned, without running or recording again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.exceptions import ModelError
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.types import interrupt

from bastion.guard import CallDenied
from bastion.langgraph.approvals import APPROVAL_TYPE, parse_resume, who
from bastion.langgraph.context import Identity, RunContext

if TYPE_CHECKING:
    from bastion.guard import Guard

log = logging.getLogger("bastion.langgraph")

OnDeny = Literal["message", "raise"]


class GuardDeniedError(CallDenied, ModelError):
    """A guarded model or tool call was denied (raised with `on_deny="raise"`).

    A bastion.CallDenied and a RuntimeError, so LangGraph's default RetryPolicy
    does not retry it, and a langchain_core ModelError with is_retryable=False,
    so LangChain's ModelRetryMiddleware / ToolRetryMiddleware do not either.
    `decision` holds the reasons."""

    is_retryable = False


GuardDenied = GuardDeniedError  # the former name (the same class)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How denials and approvals are handled (what every guarded entry point takes)."""

    on_deny: OnDeny = "message"
    default_approver: str = "unknown"

    def __post_init__(self) -> None:
        if self.on_deny not in ("message", "raise"):
            raise ValueError(f"on_deny must be 'message' or 'raise', got {self.on_deny!r}")
        if not isinstance(self.default_approver, str) or not self.default_approver:
            raise ValueError("default_approver must be a non-empty str")


# --- text of messages ----------------------------------------------------------


def text_of(content: Any) -> str:
    """The text of a message's content (a string, or text content blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    return str(content)


def with_text(content: Any, text: str) -> Any:
    """`content` with its text replaced by `text` (as text_of reads it); other
    content blocks (images, tool use, ...) are kept."""
    if not isinstance(content, list):
        return text
    out: list[Any] = []
    placed = False
    for block in content:
        is_text = isinstance(block, str) or (
            isinstance(block, Mapping) and block.get("type") == "text")
        if not is_text:
            out.append(block)
        elif not placed:
            out.append({"type": "text", "text": text})
            placed = True
    if not placed:
        out.insert(0, {"type": "text", "text": text})
    return out


# Messages in a memo: their own JSON (pydantic's serializer, several times
# faster than a dict built for json.dumps), under their type.
_MESSAGE_TYPES: dict[str, type[BaseMessage]] = {
    "ai": AIMessage, "tool": ToolMessage, "human": HumanMessage, "system": SystemMessage}


def message_json(message: BaseMessage) -> list[str] | None:
    """[type, JSON] of a message, or None for a type a memo cannot hold."""
    if type(message) not in _MESSAGE_TYPES.values():
        return None
    return [message.type, message.model_dump_json()]


def message_of(data: list[str]) -> BaseMessage:
    return _MESSAGE_TYPES[data[0]].model_validate_json(data[1])


def reasons(decision: Any) -> str:
    return "; ".join(f"{r['policy_id']}: {r['message']}" for r in decision.reasons) or (
        "no reason given")


# --- the memory of a call --------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Memo:
    """What this package keeps with a call in the core (GuardedCall.memo)."""

    asked: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # answered interrupts
    raw: Any = None                       # the encoded result the call ended with, as it came
    review: dict[str, Any] | None = None  # the output review interrupt, once asked for
    held: Any = None                      # the encoded result the review releases
    result: Any = None                    # the encoded result handed back, when not `raw`'s

    def dump(self) -> str:
        return json.dumps({"asked": self.asked, "raw": self.raw, "review": self.review,
                           "held": self.held, "result": self.result},
                          ensure_ascii=False, default=str)

    @classmethod
    def load(cls, text: str | None) -> Memo:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(asked=list(data.get("asked") or []), raw=data.get("raw"),
                   review=data.get("review"), held=data.get("held"), result=data.get("result"))


class _Local:
    """Results the memo cannot hold as JSON (a Command with arbitrary values, a
    structured response of the caller's own type), by the call's key, in this
    process only."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._values: OrderedDict[str, Any] = OrderedDict()

    def put(self, key: str, value: Any) -> str:
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self._size:
                self._values.popitem(last=False)
        return key

    def get(self, key: str) -> Any:
        with self._lock:
            return self._values.get(key)


_LOCAL = _Local()


@dataclasses.dataclass(slots=True)
class Step:
    """One guarded call between before() and after()."""

    context: RunContext
    key: str                  # the call's idempotency key ("" = none)
    name: str                 # tool or model name
    request: Any              # the (possibly rewritten) request for the handler
    call: Any = None          # the GuardedCall
    memo: Memo = dataclasses.field(default_factory=Memo)
    answers: list[Any] = dataclasses.field(default_factory=list)  # of memo.asked, replayed
    result: Any = None        # set: return this without calling the handler
    started: float = 0.0
    extra: Any = None         # what the kind keeps between before() and after()


class CallFlow:
    """Begin, deny, ask, run, end, review: what model and tool calls share.

    A subclass says how its kind begins a call and what the graph gets back
    in each case (a ToolMessage, an AIMessage)."""

    kind: str  # "tool" or "model"

    def __init__(self, guard: Guard, who: Identity, settings: Settings) -> None:
        self.guard = guard
        self.who = who
        self.settings = settings

    # -- what each kind says --

    def begin(self, request: Any) -> Step:
        raise NotImplementedError

    def denied(self, step: Step) -> Any:
        raise NotImplementedError

    def approval_payload(self, step: Step) -> dict[str, Any]:
        raise NotImplementedError

    def rejected(self, step: Step, by: str) -> Any:
        raise NotImplementedError

    def prepare(self, step: Step) -> None:
        """Rewrites step.request after the guard's changes (or sets step.result)."""

    def end(self, step: Step, result: Any, memo: str | None) -> Any:
        """Ends the call with what the handler returned (keeping `memo` with it):
        the CallEnd."""
        raise NotImplementedError

    def shown(self, step: Step, result: Any, end: Any) -> tuple[Any, Callable[[], dict[str, Any]]]:
        """(`result` as the guard's `end` lets it be shown, the review payload maker)."""
        raise NotImplementedError

    def withhold(self, step: Step, result: Any, review: dict[str, Any], by: str) -> Any:
        raise NotImplementedError

    def lost(self, step: Step) -> Any:
        """What a call that ended in an earlier execution returns when its result was not kept."""
        raise NotImplementedError

    def encode(self, result: Any) -> Any:
        """`result` as JSON, or None when it cannot be."""
        raise NotImplementedError

    def decode(self, data: Any) -> Any:
        raise NotImplementedError

    # -- the skeleton --

    def _ask(self, step: Step, payload: dict[str, Any]) -> tuple[bool, str, str]:
        answer = parse_resume(interrupt(payload), self.settings.default_approver)
        step.memo.asked.append(payload)
        self._remember(step)
        return answer

    def _remember(self, step: Step) -> None:
        if step.key:
            step.call.remember(step.memo.dump())

    def _store(self, step: Step, result: Any) -> Any:
        data = self.encode(result)
        if data is None and step.key:
            data = {"local": _LOCAL.put(f"{id(self)}/{step.key}", result)}
        return data

    def _load(self, data: Any) -> Any:
        if isinstance(data, Mapping) and "local" in data:
            return _LOCAL.get(data["local"])
        return self.decode(data)

    def _final(self, step: Step, result: Any) -> Any:
        step.memo.result = self._store(step, result)
        self._remember(step)
        return result

    def before(self, request: Any) -> Step:
        step = self.begin(request)
        call = step.call
        if call.effect == "deny":
            if self.settings.on_deny == "raise":
                raise GuardDeniedError.from_decision(call.decision, self._what(step))
            step.result = self.denied(step)
            return step
        if call.resumed:
            step.memo = Memo.load(call.memo)
            # Consume the interrupts an earlier execution had answered, in order.
            step.answers = [interrupt(payload) for payload in step.memo.asked]
        state = call.state
        if state in ("ended", "rejected"):
            step.result = self._recall(step)
            return step
        if state == "awaiting_review":
            step.result = self._review(step)
            return step
        if state == "awaiting_approval":
            approved, by, reason = self._ask(step, self.approval_payload(step))
            if not approved:
                call.reject(by, reason)
                step.result = self._final(step, self.rejected(step, who(by, reason)))
                return step
            call.approve(by, reason)
        self.prepare(step)
        step.started = time.monotonic()
        return step

    def _recall(self, step: Step) -> Any:
        """The result of a call that ended in an earlier execution."""
        memo = step.memo
        if memo.result is not None:
            result = self._load(memo.result)
            if result is not None:
                return result
        ended = step.call.ended
        if memo.raw is not None and ended is not None:
            raw = self._load(memo.raw)
            if raw is not None:
                return self.shown(step, raw, ended)[0]
        if step.answers:
            # Rejected, or reviewed, then stopped before the result was kept.
            approved, by, reason = parse_resume(step.answers[-1], self.settings.default_approver)
            if memo.review is not None and memo.held is not None:
                held = self._load(memo.held)
                return held if approved else self.withhold(step, held, memo.review,
                                                           who(by, reason))
            if not approved:
                return self.rejected(step, who(by, reason))
        return self.lost(step)

    def after(self, step: Step, result: Any) -> Any:
        memo: str | None = None
        if step.key:
            # Kept with the end, in one write: a re-execution finds the call
            # ended and shows this result as the end let it be shown.
            step.memo.raw = self._store(step, result)
            memo = step.memo.dump()
        end = self.end(step, result, memo)
        result, review = self.shown(step, result, end)
        if end.awaiting_approval:
            step.memo.review = review()
            step.memo.held = self._store(step, result)
            self._remember(step)
            return self._review(step)
        return result

    def _review(self, step: Step) -> Any:
        """Asks a human about held output, has the guard record the verdict, and
        returns the output, or what replaces it when rejected."""
        memo = step.memo
        review = memo.review or {}
        approved, by, reason = self._ask(step, review)
        result = self._load(memo.held)
        if approved:
            step.call.approve_output(by, reason)
        else:
            step.call.reject_output(by, reason)
            result = self.withhold(step, result, review, who(by, reason))
        memo.review, memo.held = None, None
        return self._final(step, result)

    def failed(self, step: Step, exc: BaseException) -> None:
        """The handler raised: the call ends as failed (see `ends_on`)."""
        raise NotImplementedError

    def _what(self, step: Step) -> str:
        return f"{self.kind} call '{step.name}'" if self.kind == "tool" else (
            f"model call to '{step.name}'")

    def review_payload(self, step: Step, kind: str, end: Any,
                       **specifics: Any) -> dict[str, Any]:
        return {"type": APPROVAL_TYPE, "kind": kind, "call_id": step.call.id, **specifics,
                "agent_id": step.context.agent_id, "thread_id": step.context.thread_id,
                "run_id": step.context.run_id,
                "reasons": [dict(r) for r in end.decision.reasons]}
