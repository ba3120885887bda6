"""Who is calling, within which run: the identity a guarded call carries.

`Identity` is what the caller says once (agent, role, user, tenant,
attributes); `RunContext` is that identity resolved against the graph
invocation running now (run, trace, thread, step, node, parent agent)."""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.runtime import get_runtime

if TYPE_CHECKING:
    from bastion.guard import Guard

FieldsSource = Mapping[str, Any] | Callable[[RunnableConfig | None], Mapping[str, Any]]


class IdentityKeywords(TypedDict, total=False):
    """The identity keywords every guarded entry point accepts (see Identity)."""

    agent_id: str
    agent_role: str
    parent_agent_id: str
    user_id: str
    tenant_id: str
    attributes: Mapping[str, str] | None
    fields: FieldsSource | None


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who the guarded code acts as. Empty fields are inherited from an
    enclosing guarded node or call, or from the graph's config (`user_id`,
    `tenant_id` in `configurable` or the runtime context), or left out.

    `fields` adds call fields of its own (`{"risk_level": "high"}`), or
    computes them from the node's config."""

    agent_id: str = ""
    agent_role: str = ""
    parent_agent_id: str = ""
    user_id: str = ""
    tenant_id: str = ""
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    fields: FieldsSource | None = None

    @classmethod
    def of(cls, identity: Identity | None = None, /, **keywords: Any) -> Identity:
        """`identity` with `keywords` (IdentityKeywords) applied; an unknown
        keyword is a TypeError naming it."""
        unknown = sorted(set(keywords) - set(IdentityKeywords.__annotations__))
        if unknown:
            raise TypeError(f"unknown identity keyword(s) {', '.join(unknown)}; "
                            f"expected {', '.join(IdentityKeywords.__annotations__)}")
        if keywords.get("attributes") is None:
            keywords.pop("attributes", None)
        else:
            keywords["attributes"] = dict(keywords["attributes"])
        base = identity if identity is not None else cls()
        if not isinstance(base, Identity):
            raise TypeError(f"identity must be a bastion.langgraph.Identity, got "
                            f"{type(base).__name__}")
        for name in ("agent_id", "agent_role", "parent_agent_id", "user_id", "tenant_id"):
            if name in keywords and not isinstance(keywords[name], str):
                raise TypeError(f"{name} must be a str, got {type(keywords[name]).__name__}")
        return dataclasses.replace(base, **keywords) if keywords else base


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

    def within(self, parent_span_id: str) -> RunContext:
        """This context inside the call with span `parent_span_id`."""
        # Not dataclasses.replace: it walks the fields' specs on every call.
        return RunContext(**{**vars(self), "parent_span_id": parent_span_id})

    def _guard(self) -> Guard:
        if self.guard is None:
            raise RuntimeError("this RunContext has no guard")
        return self.guard


_CURRENT: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "bastion_langgraph_context", default=None)


def current_context() -> RunContext | None:
    """The RunContext of the guarded node or tool call running now, or None."""
    return _CURRENT.get()


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


def config_now() -> RunnableConfig | None:
    """The config of the LangGraph task running now, or None outside one."""
    try:
        return get_config()
    except RuntimeError:
        return None


def runtime_now() -> Any:
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
class GraphInfo:
    """What the running task's config and runtime say about it."""

    run_id: str = ""
    thread_id: str = ""
    step_index: int | None = None
    node: str = ""
    task_id: str = ""
    user_id: str = ""
    tenant_id: str = ""


def graph_info(config: RunnableConfig | None) -> GraphInfo:
    if config is None:
        return GraphInfo()
    conf = config.get("configurable") or {}
    meta = config.get("metadata") or {}
    runtime = runtime_now()
    execution = getattr(runtime, "execution_info", None)
    explicit = (getattr(execution, "run_id", None) or meta.get("run_id")
                or config.get("run_id") or "")
    step = meta.get("langgraph_step")
    context = getattr(runtime, "context", None)
    return GraphInfo(
        run_id=_RUNS.run_id(getattr(runtime, "control", None), str(explicit)),
        thread_id=str(conf.get("thread_id") or meta.get("thread_id") or ""),
        step_index=step if isinstance(step, int) and not isinstance(step, bool) else None,
        node=str(meta.get("langgraph_node") or ""),
        task_id=str(getattr(execution, "task_id", "") or ""),
        user_id=str(conf.get("user_id") or "") or _from_context(context, "user_id"),
        tenant_id=str(conf.get("tenant_id") or "") or _from_context(context, "tenant_id"),
    )


def resolve(guard: Guard | None, identity: Identity,
            config: RunnableConfig | None = None) -> tuple[RunContext, GraphInfo]:
    """The context for code running now: this graph's config, under the
    context of an enclosing guarded node or call (a parent agent) if any."""
    if config is None:
        config = config_now()
    info = graph_info(config)
    outer = _CURRENT.get()
    extra: dict[str, Any] = {}
    if identity.fields is not None:
        extra = dict(identity.fields(config) if callable(identity.fields) else identity.fields)
    run_id, trace_id, thread_id = info.run_id, _trace_id_of(info.run_id), info.thread_id
    agent_id, role, parent_agent = identity.agent_id, identity.agent_role, identity.parent_agent_id
    user_id = identity.user_id or info.user_id
    tenant_id = identity.tenant_id or info.tenant_id
    attributes = dict(identity.attributes)
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
        if guard is None:
            guard = outer.guard
    context = RunContext(
        guard=guard, agent_id=agent_id, agent_role=role, parent_agent_id=parent_agent,
        user_id=user_id, tenant_id=tenant_id, run_id=run_id, thread_id=thread_id,
        trace_id=trace_id, parent_span_id=parent_span, step_index=info.step_index,
        node=info.node, attributes=attributes, extra=extra,
    )
    return context, info


class Entered:
    """Runs code with `context` as the current RunContext (a with-block)."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: RunContext) -> None:
        self._context = context

    def __enter__(self) -> RunContext:
        self._token = _CURRENT.set(self._context)
        return self._context

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._token)
