"""Guarding LangGraph graphs and LangChain agents with a bastion.Guard.

    import bastion
    from bastion.langgraph import BastionMiddleware, guard_graph, guarded_tool_node

    guard = bastion.Guard.open("./bastion")

    # LangChain v1 agents: one middleware guards every model call and tool call.
    agent = create_agent(model, tools, checkpointer=InMemorySaver(),
                         middleware=[BastionMiddleware(guard, agent_id="support-bot")])

    # Raw LangGraph: a guarded ToolNode, and every node run in a guarded context.
    builder.add_node("tools", guarded_tool_node(tools, guard))
    graph = guard_graph(builder, guard, agent_id="support-bot").compile(checkpointer=...)

Tool calls that need a human pause the graph with `interrupt()`; resume with
`Command(resume={"approved": True, "by": "alice"})` (see `approve`, `reject`).
Denied calls become a ToolMessage / AIMessage the model sees, or raise
`GuardDenied` with `on_deny="raise"`. See docs/langgraph.md.

Needs langgraph and langchain-core (`pip install 'bastion[langgraph]'`);
`BastionMiddleware` also needs langchain. `import bastion` does not import this
module.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from bastion.guard import CallDenied, Guard

try:
    from langchain_core.exceptions import ModelError
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
    from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
    from langgraph.config import get_config
    from langgraph.errors import GraphBubbleUp, ParentCommand
    from langgraph.prebuilt import ToolNode
    from langgraph.runtime import get_runtime
    from langgraph.types import Command, Interrupt, interrupt
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "bastion.langgraph needs langgraph and langchain-core: pip install 'bastion[langgraph]'"
    ) from exc

try:
    from langchain.agents.middleware import AgentMiddleware, ModelResponse
except ImportError:  # pragma: no cover - langchain is optional for raw LangGraph
    AgentMiddleware = None  # type: ignore[assignment,misc]
    ModelResponse = None  # type: ignore[assignment,misc]

__all__ = [
    "APPROVAL_TYPE",
    "BastionMiddleware",
    "GuardDenied",
    "RunContext",
    "approve",
    "current_context",
    "guard_graph",
    "guard_node",
    "guarded_tool_node",
    "pending_approvals",
    "reject",
    "tool_call_wrappers",
]

log = logging.getLogger("bastion.langgraph")

OnDeny = Literal["message", "raise"]

#: The "type" of every interrupt value this module raises.
APPROVAL_TYPE = "bastion.approval"

_APPROVE_WORDS = frozenset({"approve", "approved", "accept", "accepted", "allow"})
_REJECT_WORDS = frozenset({"reject", "rejected", "deny", "denied"})


class GuardDeniedError(CallDenied, ModelError):
    """A guarded model or tool call was denied (raised with `on_deny="raise"`).

    A bastion.CallDenied and a RuntimeError, so LangGraph's default RetryPolicy
    does not retry it, and a langchain_core ModelError with is_retryable=False,
    so LangChain's ModelRetryMiddleware / ToolRetryMiddleware do not either.
    `decision` holds the reasons."""

    is_retryable = False


GuardDenied = GuardDeniedError  # the former name (the same class)


# --- run context -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Who is calling, within which run: the fields a guarded call carries.

    Set for the duration of a guarded node (`guard_node`, `guard_graph`) and of
    a guarded tool call (then `parent_span_id` is that call's span, so agents
    invoked by the tool record it as their parent). `current_context()` returns
    it; `begin_model` / `begin_tool` begin calls with these fields."""

    guard: Guard | None = None
    agent_id: str = ""
    agent_role: str = ""
    parent_agent_id: str = ""
    user_id: str = ""
    tenant_id: str = ""
    run_id: str = ""
    thread_id: str = ""
    trace_id: str = ""
    parent_span_id: str = ""
    step_index: int | None = None
    node: str = ""
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def fields(self, **overrides: Any) -> dict[str, Any]:
        """The keyword arguments for Guard.begin_model / begin_tool (empty ones left out)."""
        out: dict[str, Any] = dict(self.extra)
        for name in ("agent_id", "agent_role", "parent_agent_id", "user_id", "tenant_id",
                     "run_id", "thread_id", "trace_id", "parent_span_id"):
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.step_index is not None:
            out["step_index"] = self.step_index
        attributes = dict(self.attributes)
        if self.node:
            attributes.setdefault("langgraph_node", self.node)
        if attributes:
            out["attributes"] = attributes
        out.update(overrides)
        return out

    def begin_model(self, model: str, input: str = "", **fields: Any) -> Any:
        """guard.begin_model with this context's fields (explicit fields win)."""
        return self._guard().begin_model(model, input, **self.fields(**fields))

    def begin_tool(self, tool: str, operation: str = "", args: Any = None, input: str = "",
                   **fields: Any) -> Any:
        """guard.begin_tool with this context's fields (explicit fields win)."""
        return self._guard().begin_tool(tool, operation, args, input, **self.fields(**fields))

    def _guard(self) -> Guard:
        if self.guard is None:
            raise RuntimeError("this RunContext has no guard")
        return self.guard


_CURRENT: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "bastion_langgraph_context", default=None)


def current_context() -> RunContext | None:
    """The RunContext of the guarded node or tool call running now, or None."""
    return _CURRENT.get()


@dataclasses.dataclass(frozen=True)
class _Agent:
    """Who the guarded code acts as; empty fields are inherited or left out."""

    agent_id: str = ""
    agent_role: str = ""
    parent_agent_id: str = ""
    user_id: str = ""
    tenant_id: str = ""
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    fields: Mapping[str, Any] | Callable[[RunnableConfig | None], Mapping[str, Any]] | None = None


class _Runs:
    """One run id (and trace id) per graph invocation.

    LangGraph gives every invocation one RunControl, shared with its subgraphs;
    the run id is the config's own (`run_id` in the invoke config, or the
    metadata's `run_id` as LangGraph Platform sets it) or a new UUID. Entries
    hold their RunControl, so an id() is never reused while remembered."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._runs: OrderedDict[int, tuple[Any, str]] = OrderedDict()

    def run_id(self, control: Any, explicit: str) -> str:
        if control is None:
            return explicit
        with self._lock:
            entry = self._runs.get(id(control))
            if entry is not None and entry[0] is control and (not explicit or entry[1] == explicit):
                self._runs.move_to_end(id(control))
                return entry[1]
            run_id = explicit or str(uuid.uuid4())
            self._runs[id(control)] = (control, run_id)
            while len(self._runs) > self._size:
                self._runs.popitem(last=False)
            return run_id


_RUNS = _Runs()


@functools.lru_cache(maxsize=4096)
def _trace_id_of(run_id: str) -> str:
    """A W3C-style trace id (32 hex digits) for a run id (remembered: every
    guarded call of a run asks for it)."""
    if not run_id:
        return ""
    try:
        return uuid.UUID(run_id).hex
    except ValueError:
        return hashlib.sha256(run_id.encode()).hexdigest()[:32]


def _config() -> RunnableConfig | None:
    try:
        return get_config()
    except RuntimeError:
        return None


def _runtime() -> Any:
    try:
        return get_runtime()
    except (RuntimeError, KeyError):
        return None


def _from_context(context: Any, name: str) -> str:
    if context is None:
        return ""
    value = context.get(name) if isinstance(context, Mapping) else getattr(context, name, None)
    return value if isinstance(value, str) else ""


@dataclasses.dataclass(slots=True)
class _GraphInfo:
    run_id: str = ""
    thread_id: str = ""
    step_index: int | None = None
    node: str = ""
    task_id: str = ""
    user_id: str = ""
    tenant_id: str = ""


def _graph_info(config: RunnableConfig | None) -> _GraphInfo:
    if config is None:
        return _GraphInfo()
    conf = config.get("configurable") or {}
    meta = config.get("metadata") or {}
    runtime = _runtime()
    execution = getattr(runtime, "execution_info", None)
    explicit = (getattr(execution, "run_id", None) or meta.get("run_id")
                or config.get("run_id") or "")
    step = meta.get("langgraph_step")
    context = getattr(runtime, "context", None)
    return _GraphInfo(
        run_id=_RUNS.run_id(getattr(runtime, "control", None), str(explicit)),
        thread_id=str(conf.get("thread_id") or meta.get("thread_id") or ""),
        step_index=step if isinstance(step, int) and not isinstance(step, bool) else None,
        node=str(meta.get("langgraph_node") or ""),
        task_id=str(getattr(execution, "task_id", "") or ""),
        user_id=str(conf.get("user_id") or "") or _from_context(context, "user_id"),
        tenant_id=str(conf.get("tenant_id") or "") or _from_context(context, "tenant_id"),
    )


def _resolve(guard: Guard | None, agent: _Agent,
             config: RunnableConfig | None = None) -> tuple[RunContext, _GraphInfo]:
    """The context for code running now: this graph's config, under the
    context of an enclosing guarded node or call (a parent agent) if any."""
    if config is None:
        config = _config()
    info = _graph_info(config)
    outer = _CURRENT.get()
    extra: dict[str, Any] = {}
    if agent.fields is not None:
        extra = dict(agent.fields(config) if callable(agent.fields) else agent.fields)
    run_id, trace_id, thread_id = info.run_id, _trace_id_of(info.run_id), info.thread_id
    agent_id, role, parent_agent = agent.agent_id, agent.agent_role, agent.parent_agent_id
    user_id = agent.user_id or info.user_id
    tenant_id = agent.tenant_id or info.tenant_id
    attributes = dict(agent.attributes)
    parent_span = ""
    if outer is not None:
        # Nested: same run and trace as the enclosing node or call.
        run_id, trace_id = outer.run_id or run_id, outer.trace_id or trace_id
        thread_id = thread_id or outer.thread_id
        parent_span = outer.parent_span_id
        same_agent = not agent_id or agent_id == outer.agent_id
        agent_id = agent_id or outer.agent_id
        if same_agent:
            role = role or outer.agent_role
            parent_agent = parent_agent or outer.parent_agent_id
            attributes = {**outer.attributes, **attributes}
            extra = {**outer.extra, **extra}
        else:
            parent_agent = parent_agent or outer.agent_id
        user_id = user_id or outer.user_id
        tenant_id = tenant_id or outer.tenant_id
    context = RunContext(
        guard=guard, agent_id=agent_id, agent_role=role, parent_agent_id=parent_agent,
        user_id=user_id, tenant_id=tenant_id, run_id=run_id, thread_id=thread_id,
        trace_id=trace_id, parent_span_id=parent_span, step_index=info.step_index,
        node=info.node, attributes=attributes, extra=extra,
    )
    return context, info


# --- guarded nodes -----------------------------------------------------------


def _agent(agent_id: str, agent_role: str, parent_agent_id: str, user_id: str, tenant_id: str,
           attributes: Mapping[str, str] | None, fields: Any) -> _Agent:
    return _Agent(agent_id=agent_id, agent_role=agent_role, parent_agent_id=parent_agent_id,
                  user_id=user_id, tenant_id=tenant_id, attributes=dict(attributes or {}),
                  fields=fields)


def guard_node(
    guard: Guard,
    node: Callable[..., Any] | Runnable | None = None,
    /,
    *,
    agent_id: str = "",
    agent_role: str = "",
    parent_agent_id: str = "",
    user_id: str = "",
    tenant_id: str = "",
    attributes: Mapping[str, str] | None = None,
    fields: Mapping[str, Any] | Callable[[RunnableConfig | None], Mapping[str, Any]] | None = None,
) -> Any:
    """Runs a LangGraph node in a guarded RunContext.

    Use as `@guard_node(guard, agent_id="planner")` or `guard_node(guard, fn, ...)`.
    The wrapper keeps the node's signature (functools.wraps) and stays async for
    an async node, so LangGraph still injects config / runtime / store / writer.
    While the node runs, `current_context()` holds the agent fields, the run id
    and trace id of this invocation, the thread id and step, and every guarded
    call inside (a guarded ToolNode, BastionMiddleware, `ctx.begin_model(...)`)
    carries them. Subgraphs the node calls inherit the run and trace, and
    record this node's agent as their parent agent."""
    agent = _agent(agent_id, agent_role, parent_agent_id, user_id, tenant_id, attributes, fields)

    def decorate(fn: Callable[..., Any] | Runnable) -> Any:
        if isinstance(fn, Runnable):
            return _wrap_runnable(fn, guard, agent, getattr(fn, "name", None))
        if _is_async(fn):
            @functools.wraps(fn)
            async def anode(*args: Any, **kwargs: Any) -> Any:
                context, _ = _resolve(guard, agent)
                token = _CURRENT.set(context)
                try:
                    return await fn(*args, **kwargs)
                finally:
                    _CURRENT.reset(token)

            return anode

        @functools.wraps(fn)
        def snode(*args: Any, **kwargs: Any) -> Any:
            context, _ = _resolve(guard, agent)
            token = _CURRENT.set(context)
            try:
                return fn(*args, **kwargs)
            finally:
                _CURRENT.reset(token)

        return snode

    return decorate if node is None else decorate(node)


def _is_async(fn: Any) -> bool:
    """An async function, or an object with an async __call__."""
    return inspect.iscoroutinefunction(fn) or (
        callable(fn) and inspect.iscoroutinefunction(fn.__call__))


def _wrap_runnable(inner: Runnable, guard: Guard, agent: _Agent, name: str | None) -> Runnable:
    """A node runnable that runs `inner` (with the node's own config, so its
    injection, subgraph checkpoints and interrupts work as before) in a context."""

    def run(state: Any, config: RunnableConfig) -> Any:
        context, _ = _resolve(guard, agent, config)
        token = _CURRENT.set(context)
        try:
            return inner.invoke(state, config)
        finally:
            _CURRENT.reset(token)

    async def arun(state: Any, config: RunnableConfig) -> Any:
        context, _ = _resolve(guard, agent, config)
        token = _CURRENT.set(context)
        try:
            return await inner.ainvoke(state, config)
        finally:
            _CURRENT.reset(token)

    wrapped = RunnableLambda(run, afunc=arun, name=name)
    wrapped._bastion_guarded = True  # type: ignore[attr-defined]
    return wrapped


def guard_graph(
    graph: Any,
    guard: Guard,
    *,
    nodes: Iterable[str] | None = None,
    agent_id: str = "",
    agent_role: str = "",
    parent_agent_id: str = "",
    user_id: str = "",
    tenant_id: str = "",
    attributes: Mapping[str, str] | None = None,
    fields: Mapping[str, Any] | Callable[[RunnableConfig | None], Mapping[str, Any]] | None = None,
) -> Any:
    """Runs every node of a StateGraph (or those named in `nodes`) in a guarded
    RunContext, as `guard_node` does. Call before `compile()`; returns the graph.

    Nodes may be functions, ToolNodes, compiled subgraphs or any Runnable; each
    is invoked unchanged (with its own config) inside the context."""
    if getattr(graph, "compiled", False) or not hasattr(graph, "nodes") or not hasattr(
            graph, "compile"):
        raise TypeError("guard_graph takes a StateGraph before compile()")
    agent = _agent(agent_id, agent_role, parent_agent_id, user_id, tenant_id, attributes, fields)
    wanted = set(nodes) if nodes is not None else None
    if wanted is not None and (unknown := wanted - set(graph.nodes)):
        raise KeyError(f"no such nodes: {sorted(unknown)}")
    for name, spec in list(graph.nodes.items()):
        if wanted is not None and name not in wanted:
            continue
        if getattr(spec.runnable, "_bastion_guarded", False):
            continue
        graph.nodes[name] = dataclasses.replace(
            spec, runnable=_wrap_runnable(spec.runnable, guard, agent, name))
    return graph


# --- approvals ---------------------------------------------------------------


def approve(by: str, reason: str = "") -> dict[str, Any]:
    """The resume value approving a pending call: Command(resume=approve("alice"))."""
    return {"type": "approve", "by": by, "reason": reason}


def reject(by: str, reason: str = "") -> dict[str, Any]:
    """The resume value rejecting a pending call: Command(resume=reject("bob", "too much"))."""
    return {"type": "reject", "by": by, "reason": reason}


def pending_approvals(graph: Any, config: RunnableConfig) -> list[Interrupt]:
    """The approval interrupts this module raised that are pending in a thread.

    Resume them by id: Command(resume={i.id: approve("alice") for i in pending})."""
    state = graph.get_state(config)
    return [i for i in state.interrupts
            if isinstance(i.value, Mapping) and i.value.get("type") == APPROVAL_TYPE]


def _parse_resume(value: Any, default_by: str) -> tuple[bool, str, str]:
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


# --- per-process memory of keyed calls ---------------------------------------


@dataclasses.dataclass(slots=True)
class _Memo:
    """What this process knows of one call of one task, so that a re-executed
    task (LangGraph reruns a node from the top on resume) neither runs nor
    records it twice, and consumes its interrupts in the same order."""

    asked: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # answered interrupts
    review: dict[str, Any] | None = None  # the pending output review interrupt
    held: Any = None                      # what finishes the review
    final: Any = None                     # the result handed back


class _Memory:
    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._memos: OrderedDict[str, _Memo] = OrderedDict()

    def get(self, key: str) -> _Memo | None:
        if not key:
            return None
        with self._lock:
            memo = self._memos.get(key)
            if memo is not None:
                self._memos.move_to_end(key)
            return memo

    def put(self, key: str, memo: _Memo) -> None:
        if not key:
            return
        with self._lock:
            self._memos[key] = memo
            self._memos.move_to_end(key)
            while len(self._memos) > self._size:
                self._memos.popitem(last=False)

    def pop(self, key: str) -> None:
        if key:
            with self._lock:
                self._memos.pop(key, None)


_MEMORIES: weakref.WeakKeyDictionary[Guard, _Memory] = weakref.WeakKeyDictionary()
_MEMORIES_LOCK = threading.Lock()


def _memory(guard: Guard) -> _Memory:
    with _MEMORIES_LOCK:
        memory = _MEMORIES.get(guard)
        if memory is None:
            memory = _MEMORIES[guard] = _Memory()
        return memory


# --- shared helpers ----------------------------------------------------------


def _text(content: Any) -> str:
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


def _with_text(content: Any, text: str) -> Any:
    """`content` with its text replaced by `text` (as _text reads it); other
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


def _reasons(decision: Any) -> str:
    return "; ".join(f"{r['policy_id']}: {r['message']}" for r in decision.reasons) or (
        "no reason given")


# Built once: json.dumps with any non-default argument builds its encoder anew.
_JSON_WITH_STR_FALLBACK = json.JSONEncoder(default=str)
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)

# Ints up to 64 bits; larger ones take the round trip through JSON, which also
# applies Python's limit on the digits of an int converted to text.
_INT_RANGE = range(-(1 << 63), 1 << 64)


def _is_json_scalar(value: Any) -> bool:
    """A value that a round trip through JSON gives back as it is."""
    kind = type(value)
    return (kind is str or value is None or kind is bool or kind is float
            or (kind is int and value in _INT_RANGE))


def _jsonable(value: Any) -> Any:
    """Tool arguments as JSON types (what the guard accepts and interrupts store)."""
    if type(value) is dict and all(type(k) is str and _is_json_scalar(v)
                                   for k, v in value.items()):
        return dict(value)  # the round trip's result, without encoding and parsing
    return json.loads(_JSON_WITH_STR_FALLBACK.encode(value))


# The error class of a tool call that did not run because the policies'
# redactions left its arguments unusable (see _ToolGuard._refuse_redacted).
_REDACTED_ARGS_ERROR = "redacted_arguments_invalid"


def _redacted_args(text: str) -> tuple[dict[str, Any] | None, str]:
    """The arguments a guard's rewritten input stands for, or None and why not:
    a redaction that replaced a number or crossed a quote leaves text that is
    not a JSON object."""
    try:
        args = json.loads(text)
    except ValueError as e:
        return None, f"not JSON: {e}"
    if not isinstance(args, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(args), "a number")
        return None, f"JSON {kind}, not an object"
    return args, ""


def _who(by: str, reason: str) -> str:
    return f"{by}: {reason}" if reason else by


class _Base:
    """What tool and model guards share: settings, approvals and reviews."""

    kind: str  # "tool" or "model": what the guard checks

    def __init__(self, guard: Guard, agent: _Agent, on_deny: OnDeny, default_approver: str) -> None:
        if on_deny not in ("message", "raise"):
            raise ValueError(f"on_deny must be 'message' or 'raise', got {on_deny!r}")
        if not default_approver:
            raise ValueError("default_approver must not be empty")
        self.guard = guard
        self.agent = agent
        self.on_deny = on_deny
        self.default_approver = default_approver
        self.memory = _memory(guard)

    def _ask(self, payload: dict[str, Any]) -> tuple[bool, str, str]:
        return _parse_resume(interrupt(payload), self.default_approver)

    def _replay(self, memo: _Memo) -> None:
        """Consumes the interrupts a previous execution of this task answered."""
        for payload in memo.asked:
            interrupt(payload)

    def _keep(self, step: _Step, result: Any, end: Any,
              review: Callable[[], dict[str, Any]]) -> Any:
        """After end(): holds `result` for a human when the output guardrail asks
        for approval (`review()` makes the interrupt's payload); otherwise it is
        the step's final result."""
        if end.awaiting_approval:
            step.memo.held = (result, step.call)
            step.memo.review = review()
            self.memory.put(step.memo_key, step.memo)
            return self._review(step)
        step.memo.final = result
        self.memory.put(step.memo_key, step.memo)
        return result

    def _review_payload(self, step: _Step, kind: str, end: Any,
                        **specifics: Any) -> dict[str, Any]:
        return {"type": APPROVAL_TYPE, "kind": kind, "call_id": step.call.id, **specifics,
                "agent_id": step.context.agent_id, "thread_id": step.context.thread_id,
                "run_id": step.context.run_id,
                "reasons": [dict(r) for r in end.decision.reasons]}

    def _review(self, step: _Step) -> Any:
        """Asks a human about held output, has the guard record the verdict, and
        keeps the output, or what replaces it when rejected."""
        memo = step.memo
        review = memo.review or {}
        approved, by, reason = self._ask(review)
        result, step.call = memo.held
        if approved:
            step.call.approve_output(by, reason)
        else:
            step.call.reject_output(by, reason)
            result = self._withhold(step, result, review, _who(by, reason))
        memo.asked.append(review)
        memo.review, memo.held, memo.final = None, None, result
        self.memory.put(step.memo_key, memo)
        return result

    def _withhold(self, step: _Step, result: Any, review: dict[str, Any], who: str) -> Any:
        raise NotImplementedError


@dataclasses.dataclass(slots=True)
class _Step:
    """One guarded call between before() and after()."""

    context: RunContext
    memo_key: str
    memo: _Memo
    name: str                 # tool or model name
    call: Any = None          # the GuardedCall
    request: Any = None       # the (possibly rewritten) request for the handler
    result: Any = None        # set: return this without calling the handler
    started: float = 0.0


# --- tool calls --------------------------------------------------------------


class _ToolGuard(_Base):
    kind = "tool"

    def __init__(self, guard: Guard, agent: _Agent, *, on_deny: OnDeny = "message",
                 operations: Mapping[str, str] | None = None,
                 resources: Mapping[str, str | Callable[[dict[str, Any]], str]] | None = None,
                 default_approver: str = "unknown", ordered: bool = True,
                 messages_key: str = "messages") -> None:
        super().__init__(guard, agent, on_deny, default_approver)
        self.operations = dict(operations or {})
        self.resources = dict(resources or {})
        self.ordered = ordered
        self.messages_key = messages_key

    def _operation(self, name: str, tool: Any) -> str:
        if name in self.operations:
            return self.operations[name]
        value = (getattr(tool, "metadata", None) or {}).get("operation")
        return value if isinstance(value, str) else ""

    def _resource(self, name: str, tool: Any, args: Mapping[str, Any]) -> str:
        spec = self.resources.get(name)
        if spec is None:
            spec = (getattr(tool, "metadata", None) or {}).get("resource")
        if spec is None:
            return ""
        if callable(spec):
            return str(spec(dict(args)))
        try:
            return str(spec).format_map(dict(args))
        except (KeyError, IndexError, ValueError, AttributeError):
            log.warning("resource template %r of tool %r does not fit its arguments", spec, name)
            return ""

    def before(self, request: Any) -> _Step:
        tool_call = request.tool_call
        name = str(tool_call.get("name") or "")
        call_id = str(tool_call.get("id") or "")
        args = _jsonable(dict(tool_call.get("args") or {}))
        context, info = _resolve(self.guard, self.agent)
        # The guard's idempotency key: {thread}/{tool call id} ({run} without a
        # thread), with the enclosing call's span when nested in another call.
        scope = context.thread_id or context.run_id
        if context.parent_span_id:
            scope = f"{scope}/{context.parent_span_id}"
        key = f"{scope}/{call_id}" if scope and call_id else ""
        memo_key = f"{key}#{info.task_id}" if key and info.task_id else ""
        memo = self.memory.get(memo_key)
        step = _Step(context, memo_key, memo or _Memo(), name, request=request)
        if memo is not None and (memo.final is not None or memo.held is not None):
            self._replay(memo)
            step.result = memo.final if memo.final is not None else self._review(step)
            return step

        operation = self._operation(name, request.tool)
        resource = self._resource(name, request.tool, args)
        risk = (getattr(request.tool, "metadata", None) or {}).get("risk_level")
        extra = {"risk_level": risk} if isinstance(risk, str) and risk else {}
        input_text = _CANONICAL_JSON.encode(args)
        call = self.guard.begin_tool(
            tool=name, operation=operation, args=args, input=input_text,
            **context.fields(resource_id=resource, request_id=call_id, idempotency_key=key, **extra))
        step.call = call
        if call.effect == "deny":
            if self.on_deny == "raise":
                raise GuardDenied.from_decision(call.decision, f"tool call '{name}'")
            step.result = ToolMessage(
                content=f"Tool call '{name}' denied by policy: {_reasons(call.decision)}",
                tool_call_id=call_id, name=name, status="error")
            step.memo.final = step.result
            self.memory.put(memo_key, step.memo)
            return step
        if call.resumed and step.memo.asked:
            self._replay(step.memo)  # approved by an earlier execution of this task
        elif call.needs_approval:
            payload = {
                "type": APPROVAL_TYPE, "kind": "tool_call", "call_id": call.id,
                "tool_call": {"name": name, "args": args, "id": call_id},
                "tool": name, "operation": operation, "resource": resource,
                "agent_id": context.agent_id, "thread_id": context.thread_id,
                "run_id": context.run_id, "reasons": [dict(r) for r in call.decision.reasons],
            }
            approved, by, reason = self._ask(payload)
            step.memo.asked.append(payload)
            if not approved:
                call.reject(by, reason)
                step.result = ToolMessage(
                    content=f"Tool call '{name}' rejected by {_who(by, reason)}",
                    tool_call_id=call_id, name=name, status="error")
                step.memo.final = step.result
                self.memory.put(memo_key, step.memo)
                return step
            call.approve(by, reason)
            self.memory.put(memo_key, step.memo)
        if call.input != input_text:  # the guard rewrote the arguments
            new_args, problem = _redacted_args(call.input)
            if new_args is None:
                return self._refuse_redacted(step, call, name, call_id, problem)
            step.request = request.override(tool_call={**tool_call, "args": new_args})
        step.started = time.monotonic()
        return step

    def _refuse_redacted(self, step: _Step, call: Any, name: str, call_id: str,
                         problem: str) -> _Step:
        """Fails closed when the policies' rewrite of the arguments is not
        arguments: running the tool with the originals would undo the
        redaction. The call ends as failed (the ledger's outcome record carries
        error=redacted_arguments_invalid) and the tool never runs."""
        call.end("", ok=False, error_class=_REDACTED_ARGS_ERROR, latency=0.0)
        message = (f"Tool call '{name}' not run: policy redactions left its arguments "
                   f"unusable ({problem}); reasons: {_reasons(call.decision)}")
        if self.on_deny == "raise":
            self.memory.pop(step.memo_key)
            raise GuardDenied(message, call.decision)
        step.result = ToolMessage(content=message, tool_call_id=call_id, name=name,
                                  status="error")
        step.memo.final = step.result
        self.memory.put(step.memo_key, step.memo)
        return step

    def after(self, step: _Step, result: Any) -> Any:
        message = _tool_message_in(result, step.request.tool_call.get("id"))
        text = _text(message.content) if message is not None else ""
        ok = message is None or message.status != "error"
        end = step.call.end(text, ok=ok, error_class="" if ok else "tool_error",
                            latency=time.monotonic() - step.started)
        # Output held for review is shown as it would be if approved (_keep
        # asks first); a rejection replaces it.
        held = end.awaiting_approval
        shown = end.held_output if held else end.output
        if message is not None and (shown != text or (end.withheld and not held)):
            update: dict[str, Any] = {"content": _with_text(message.content, shown)}
            if end.withheld and not held:
                update["status"] = "error"
            result = _replace_tool_message(result, message, message.model_copy(update=update))
        # Output may be held for a human (e.g. an injection marker in a tool result).
        return self._keep(step, result, end, lambda: self._review_payload(
            step, "tool_result", end,
            tool_call={"name": step.name, "args": step.request.tool_call.get("args"),
                       "id": step.request.tool_call.get("id")},
            tool=step.name, output=shown))

    def _withhold(self, step: _Step, result: Any, review: dict[str, Any], who: str) -> Any:
        message = _tool_message_in(result, review.get("tool_call", {}).get("id"))
        if message is None:
            return result
        return _replace_tool_message(result, message, message.model_copy(update={
            "content": f"Result of tool call '{step.name}' withheld: rejected by {who}",
            "status": "error"}))

    def failed(self, step: _Step, exc: BaseException) -> None:
        if isinstance(exc, ParentCommand):  # the tool finished by commanding the parent graph
            step.call.end("", latency=time.monotonic() - step.started)
        elif isinstance(exc, GraphBubbleUp):
            return  # interrupted: the call stays in flight, re-begun by its key on resume
        else:
            step.call.end("", ok=False, error_class=type(exc).__name__,
                          latency=time.monotonic() - step.started)
        self.memory.pop(step.memo_key)

    def during(self, step: _Step) -> RunContext:
        """The context while the tool runs: agents it invokes are its children."""
        # dataclasses.replace, without its per-call walk over the fields' specs.
        return RunContext(**{**vars(step.context), "parent_span_id": step.call.span_id})

    # -- the wrappers --

    def _turn(self, request: Any) -> tuple[str, int, int] | None:
        """(task key, position, count) when this call is one of several that a
        ToolNode runs in one task. LangGraph matches resume values to interrupts
        by the order of interrupt() calls within a task, and a ToolNode runs the
        calls of one message concurrently; taking them one at a time, in the
        order the model made them, keeps that order the same on every
        re-execution, so an answer never lands on another call."""
        if not self.ordered:
            return None
        config = _config()
        meta = (config or {}).get("metadata") or {}
        path = meta.get("langgraph_path")
        if not path or path[0] != "__pregel_pull":  # a Send: one call per task
            return None
        state = request.state
        if isinstance(state, Mapping):
            messages = state.get(self.messages_key)
        elif isinstance(state, list):
            messages = state
        else:
            messages = getattr(state, self.messages_key, None)
        latest = next((m for m in reversed(messages or []) if isinstance(m, AIMessage)), None)
        ids = [c.get("id") for c in latest.tool_calls] if latest is not None else []
        own = request.tool_call.get("id")
        if len(ids) < 2 or len(set(ids)) != len(ids) or own not in ids:
            return None
        runtime = _runtime()
        execution = getattr(runtime, "execution_info", None)
        run_id = _graph_info(config).run_id
        key = (f"{run_id}/{getattr(execution, 'task_id', '')}/"
               f"{getattr(execution, 'node_attempt', 1)}")
        return key, ids.index(own), len(ids)

    def wrap(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        turn = self._turn(request)
        if turn is not None:
            _TURNS.enter(turn[0], turn[1])
        try:
            step = self.before(request)
            if step.result is not None:
                return step.result
            token = _CURRENT.set(self.during(step))
            try:
                result = handler(step.request)
            except BaseException as exc:
                self.failed(step, exc)
                raise
            finally:
                _CURRENT.reset(token)
            return self.after(step, result)
        finally:
            if turn is not None:
                _TURNS.leave(*turn)

    async def awrap(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        turn = self._turn(request)
        if turn is not None:
            await _TURNS.aenter(turn[0], turn[1])
        try:
            step = await asyncio.to_thread(self.before, request)
            if step.result is not None:
                return step.result
            token = _CURRENT.set(self.during(step))
            try:
                result = await handler(step.request)
            except BaseException as exc:
                await asyncio.to_thread(self.failed, step, exc)
                raise
            finally:
                _CURRENT.reset(token)
            return await asyncio.to_thread(self.after, step, result)
        finally:
            if turn is not None:
                _TURNS.leave(*turn)


class _Turns:
    """Lets the guarded calls of one task through one at a time, by position."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next: dict[str, int] = {}
        self._events: dict[str, asyncio.Event] = {}

    def enter(self, key: str, position: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._next.get(key, 0) >= position)

    async def aenter(self, key: str, position: int) -> None:
        while True:
            with self._cond:
                if self._next.get(key, 0) >= position:
                    return
                event = self._events.setdefault(key, asyncio.Event())
            await event.wait()

    def leave(self, key: str, position: int, count: int) -> None:
        with self._cond:
            following = max(self._next.get(key, 0), position + 1)
            if following >= count:
                self._next.pop(key, None)
            else:
                self._next[key] = following
            event = self._events.pop(key, None)
            self._cond.notify_all()
        if event is not None:
            event.set()


_TURNS = _Turns()


def _tool_message_in(result: Any, tool_call_id: Any) -> ToolMessage | None:
    if isinstance(result, ToolMessage):
        return result
    if isinstance(result, Command) and isinstance(result.update, Mapping):
        for message in result.update.get("messages") or []:
            if isinstance(message, ToolMessage) and (
                    tool_call_id is None or message.tool_call_id == tool_call_id):
                return message
    return None


def _replace_tool_message(result: Any, old: ToolMessage, new: ToolMessage) -> Any:
    if result is old:
        return new
    if isinstance(result, Command) and isinstance(result.update, Mapping):
        update = dict(result.update)
        update["messages"] = [new if m is old else m for m in update.get("messages") or []]
        return dataclasses.replace(result, update=update)
    return result


def tool_call_wrappers(
    guard: Guard,
    *,
    agent_id: str = "",
    agent_role: str = "",
    parent_agent_id: str = "",
    user_id: str = "",
    tenant_id: str = "",
    attributes: Mapping[str, str] | None = None,
    fields: Mapping[str, Any] | Callable[[RunnableConfig | None], Mapping[str, Any]] | None = None,
    operations: Mapping[str, str] | None = None,
    resources: Mapping[str, str | Callable[[dict[str, Any]], str]] | None = None,
    on_deny: OnDeny = "message",
    default_approver: str = "unknown",
    ordered: bool = True,
    messages_key: str = "messages",
) -> tuple[Callable[..., Any], Callable[..., Awaitable[Any]]]:
    """(wrap_tool_call, awrap_tool_call) for a ToolNode. Pass both: a ToolNode
    given only the async wrapper runs tools unguarded under a sync invoke.

    With `ordered` (the default), the tool calls a ToolNode runs together in
    one task (several calls of one AIMessage) are guarded and run one at a
    time, in the order the model made them, so that their approval interrupts
    keep their order across re-executions. `messages_key` is the ToolNode's."""
    tools = _ToolGuard(
        guard, _agent(agent_id, agent_role, parent_agent_id, user_id, tenant_id, attributes,
                      fields),
        on_deny=on_deny, operations=operations, resources=resources,
        default_approver=default_approver, ordered=ordered, messages_key=messages_key)

    def wrap_tool_call(request: Any, execute: Callable[[Any], Any]) -> Any:
        return tools.wrap(request, execute)

    async def awrap_tool_call(request: Any, execute: Callable[[Any], Awaitable[Any]]) -> Any:
        return await tools.awrap(request, execute)

    return wrap_tool_call, awrap_tool_call


def guarded_tool_node(
    tools: Sequence[Any],
    guard: Guard,
    *,
    name: str = "tools",
    handle_tool_errors: Any = None,
    messages_key: str = "messages",
    **settings: Any,
) -> ToolNode:
    """A ToolNode whose every tool call is guarded (settings as `tool_call_wrappers`).

    Per call: begin_tool(tool, operation, args, resource_id, idempotency_key=
    "{thread_id}/{tool_call_id}"); denied -> an error ToolMessage (or GuardDenied
    with on_deny="raise"); require_approval -> interrupt() and the resume value
    decides; then the tool runs and its result, after the guard's redactions,
    is what the model sees."""
    wrap, awrap = tool_call_wrappers(guard, messages_key=messages_key, **settings)
    kwargs: dict[str, Any] = {"name": name, "messages_key": messages_key,
                              "wrap_tool_call": wrap, "awrap_tool_call": awrap}
    if handle_tool_errors is not None:
        kwargs["handle_tool_errors"] = handle_tool_errors
    return ToolNode(list(tools), **kwargs)


# --- model calls (LangChain v1 middleware) -----------------------------------


def _model_name(model: Any, models: Mapping[str, Any]) -> str:
    for name, candidate in models.items():
        if candidate is model:
            return name
    for attr in ("model_name", "model", "model_id", "deployment_name"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def _max_output_tokens(request: Any) -> int | None:
    for source in (request.model_settings or {}, request.model):
        for attr in ("max_tokens", "max_output_tokens", "max_completion_tokens"):
            value = source.get(attr) if isinstance(source, Mapping) else getattr(
                source, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _model_input(messages: Sequence[BaseMessage]) -> tuple[int | None, str]:
    """The newest human or tool message (index, text); else all messages rendered."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], (HumanMessage, ToolMessage)):
            return index, _text(messages[index].content)
    return None, "\n".join(f"{m.type}: {_text(m.content)}" for m in messages)


def _input_tokens(request: Any) -> int:
    """A rough estimate (4 characters a token) of the whole prompt."""
    chars = sum(len(_text(m.content)) for m in request.messages)
    if request.system_message is not None:
        chars += len(_text(request.system_message.content))
    return max(1, (chars + 3) // 4)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _Redactions:
    """Messages the guard redacted, with the text the model was shown instead:
    the graph's state keeps what the user wrote, and every later model call
    sends it again. A message is known by its id and a digest of its text (an
    edited message is not shown as its old redaction). Only messages whose id
    had a redaction are digested: digesting the whole history on every model
    call would cost in proportion to its length."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._shown: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._per_id: dict[str, int] = {}  # message id -> its entries in _shown

    def remember(self, message: BaseMessage, shown: str) -> None:
        key = (message.id or "", _digest(_text(message.content)))
        with self._lock:
            if key not in self._shown:
                self._per_id[key[0]] = self._per_id.get(key[0], 0) + 1
            self._shown[key] = shown
            self._shown.move_to_end(key)
            while len(self._shown) > self._size:
                (message_id, _), _ = self._shown.popitem(last=False)
                if self._per_id[message_id] == 1:
                    del self._per_id[message_id]
                else:
                    self._per_id[message_id] -= 1

    def apply(self, messages: Sequence[BaseMessage]) -> list[BaseMessage] | None:
        """A copy of `messages` in which those redacted before read as the model
        was shown them then, or None when there are none."""
        out: list[BaseMessage] | None = None
        with self._lock:
            if not self._per_id:
                return None
            for i, m in enumerate(messages):
                if not isinstance(m, (HumanMessage, ToolMessage)):
                    continue
                message_id = m.id or ""
                if message_id not in self._per_id:
                    continue
                text = _text(m.content)
                shown = self._shown.get((message_id, _digest(text)))
                if shown is not None and shown != text:
                    if out is None:
                        out = list(messages)
                    out[i] = m.model_copy(update={"content": _with_text(m.content, shown)})
        return out


class _ModelGuard(_Base):
    kind = "model"

    def __init__(self, guard: Guard, agent: _Agent, *, models: Mapping[str, Any] | None,
                 on_deny: OnDeny, default_approver: str) -> None:
        super().__init__(guard, agent, on_deny, default_approver)
        self.models = dict(models or {})
        self._redactions = _Redactions()

    def before(self, request: Any) -> _Step:
        context, info = _resolve(self.guard, self.agent)
        name = _model_name(request.model, self.models)
        scope = context.thread_id or context.run_id
        key = f"{scope}/{info.task_id}/model" if scope and info.task_id else ""
        memo_key = key
        memo = self.memory.get(memo_key)
        step = _Step(context, memo_key, memo or _Memo(), name, request=request)
        if memo is not None and (memo.final is not None or memo.held is not None):
            self._replay(memo)
            step.result = memo.final if memo.final is not None else self._review(step)
            return step
        index, input_text = _model_input(request.messages)
        call = self.guard.begin_model(
            name, input_text,
            **context.fields(input_tokens=_input_tokens(request),
                             max_output_tokens=_max_output_tokens(request),
                             idempotency_key=key))
        step.call = call
        if call.effect == "deny":
            if self.on_deny == "raise":
                raise GuardDenied.from_decision(call.decision, f"model call to '{name}'")
            step.result = AIMessage(content=f"Model call denied by policy: "
                                            f"{_reasons(call.decision)}")
            step.memo.final = step.result
            self.memory.put(memo_key, step.memo)
            return step
        call_input = call.input  # each read of a GuardedCall property converts it anew
        if call.resumed and step.memo.asked:
            self._replay(step.memo)
        elif call.needs_approval:
            payload = {
                "type": APPROVAL_TYPE, "kind": "model_call", "call_id": call.id,
                "model": name, "input": call_input, "agent_id": context.agent_id,
                "thread_id": context.thread_id, "run_id": context.run_id,
                "reasons": [dict(r) for r in call.decision.reasons],
            }
            approved, by, reason = self._ask(payload)
            step.memo.asked.append(payload)
            if not approved:
                call.reject(by, reason)
                step.result = AIMessage(content=f"Model call rejected by {_who(by, reason)}")
                step.memo.final = step.result
                self.memory.put(memo_key, step.memo)
                return step
            call.approve(by, reason)
            self.memory.put(memo_key, step.memo)
        overrides: dict[str, Any] = {}
        chosen = call.model
        if chosen and chosen != name:
            replacement = self.models.get(chosen)
            if replacement is not None:
                overrides["model"] = replacement
            else:
                log.warning("the guard downgraded %s to %s, but `models` has no %s: "
                            "keeping %s", name, chosen, chosen, name)
        messages = self._redactions.apply(request.messages)
        if index is not None and call_input != input_text:
            self._redactions.remember(request.messages[index], call_input)
            if messages is None:
                messages = list(request.messages)
            messages[index] = messages[index].model_copy(
                update={"content": _with_text(messages[index].content, call_input)})
        if messages is not None:
            overrides["messages"] = messages
        if overrides:
            step.request = request.override(**overrides)
        step.started = time.monotonic()
        return step

    def after(self, step: _Step, response: Any) -> Any:
        if isinstance(response, AIMessage):
            response = ModelResponse(result=[response])
        result = list(response.result)
        index = next((i for i in range(len(result) - 1, -1, -1)
                      if isinstance(result[i], AIMessage)), None)
        message = result[index] if index is not None else None
        text = _text(message.content) if message is not None else ""
        usage = getattr(message, "usage_metadata", None)
        end = step.call.end(text, usage=dict(usage) if usage else None,
                            latency=time.monotonic() - step.started)
        held = end.awaiting_approval  # shown as if approved; _keep asks first
        shown = end.held_output if held else end.output
        withheld = end.withheld and not held
        if message is not None and (withheld or shown != text):
            update: dict[str, Any] = {"content": _with_text(message.content, shown)}
            if withheld:
                update.update(tool_calls=[], invalid_tool_calls=[])
            result[index] = message.model_copy(update=update)
        out = ModelResponse(result=result, structured_response=response.structured_response)
        return self._keep(step, out, end, lambda: self._review_payload(
            step, "model_output", end, model=step.name, output=shown))

    def _withhold(self, step: _Step, out: Any, review: dict[str, Any], who: str) -> Any:
        result = list(out.result)
        for i in range(len(result) - 1, -1, -1):
            if isinstance(result[i], AIMessage):
                result[i] = result[i].model_copy(update={
                    "content": f"Model output withheld: rejected by {who}",
                    "tool_calls": [], "invalid_tool_calls": []})
                break
        return ModelResponse(result=result, structured_response=None)

    def failed(self, step: _Step, exc: BaseException) -> None:
        if isinstance(exc, GraphBubbleUp):
            return  # interrupted inside: the call stays in flight, re-begun by its key
        step.call.end("", ok=False, error_class=type(exc).__name__,
                      latency=time.monotonic() - step.started)
        self.memory.pop(step.memo_key)

    def wrap(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        step = self.before(request)
        if step.result is not None:
            return step.result
        try:
            response = handler(step.request)
        except BaseException as exc:
            self.failed(step, exc)
            raise
        return self.after(step, response)

    async def awrap(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        step = await asyncio.to_thread(self.before, request)
        if step.result is not None:
            return step.result
        try:
            response = await handler(step.request)
        except BaseException as exc:
            await asyncio.to_thread(self.failed, step, exc)
            raise
        return await asyncio.to_thread(self.after, step, response)


if AgentMiddleware is not None:

    class BastionMiddleware(AgentMiddleware):  # type: ignore[misc,valid-type]
        """LangChain v1 agent middleware guarding every model call and tool call.

            agent = create_agent(model, tools, checkpointer=InMemorySaver(),
                                 middleware=[BastionMiddleware(guard, agent_id="support-bot")])

        Put it first in `middleware=[...]` so that it wraps retries and fallbacks.

        Model calls: begin_model(model name, the newest human / tool message,
        an input-token estimate of the whole prompt, max_tokens if the model has
        it). Denied -> an AIMessage saying why (or GuardDenied with
        on_deny="raise"); a downgrade switches to `models[downgraded name]`
        (kept, with a warning, when not there); a redacted input replaces that
        message's content. After the call: end(text, usage=usage_metadata) and
        the AIMessage returned carries the guard's output (redacted, or
        withheld with its tool calls dropped). Tool calls: as guarded_tool_node.
        """

        def __init__(
            self,
            guard: Guard,
            *,
            agent_id: str = "",
            agent_role: str = "",
            parent_agent_id: str = "",
            user_id: str = "",
            tenant_id: str = "",
            attributes: Mapping[str, str] | None = None,
            fields: Mapping[str, Any] | Callable[[RunnableConfig | None], Mapping[str, Any]]
            | None = None,
            models: Mapping[str, Any] | None = None,
            operations: Mapping[str, str] | None = None,
            resources: Mapping[str, str | Callable[[dict[str, Any]], str]] | None = None,
            on_deny: OnDeny = "message",
            default_approver: str = "unknown",
        ) -> None:
            super().__init__()
            agent = _agent(agent_id, agent_role, parent_agent_id, user_id, tenant_id,
                           attributes, fields)
            self.guard = guard
            self._models = _ModelGuard(guard, agent, models=models, on_deny=on_deny,
                                       default_approver=default_approver)
            self._tools = _ToolGuard(guard, agent, on_deny=on_deny, operations=operations,
                                     resources=resources, default_approver=default_approver)

        def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
            return self._models.wrap(request, handler)

        async def awrap_model_call(self, request: Any,
                                   handler: Callable[[Any], Awaitable[Any]]) -> Any:
            return await self._models.awrap(request, handler)

        def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
            return self._tools.wrap(request, handler)

        async def awrap_tool_call(self, request: Any,
                                  handler: Callable[[Any], Awaitable[Any]]) -> Any:
            return await self._tools.awrap(request, handler)

else:  # pragma: no cover - only without langchain

    def BastionMiddleware(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]
        raise ImportError("BastionMiddleware needs langchain: pip install 'bastion[langgraph]'")
