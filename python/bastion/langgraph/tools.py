"""Guarded tool calls: ToolNode wrappers and the guarded ToolNode."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.errors import GraphBubbleUp, ParentCommand
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

from bastion.langgraph.approvals import APPROVAL_TYPE
from bastion.langgraph.calls import (
    CallFlow,
    GuardDeniedError,
    OnDeny,
    Settings,
    Step,
    log,
    message_json,
    message_of,
    reasons,
    text_of,
    with_text,
)
from bastion.langgraph.context import (
    Entered,
    Identity,
    IdentityKeywords,
    config_now,
    graph_info,
    resolve,
    runtime_now,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from bastion.guard import Guard

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
# redactions left its arguments unusable (see ToolFlow._refuse_redacted).
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


@dataclasses.dataclass(slots=True)
class _ToolCall:
    name: str
    call_id: str
    args: dict[str, Any]
    input: str
    operation: str = ""
    resource: str = ""


class ToolFlow(CallFlow):
    kind = "tool"

    def __init__(self, guard: Guard, who: Identity, settings: Settings, *,
                 operations: Mapping[str, str] | None = None,
                 resources: Mapping[str, str | Callable[[dict[str, Any]], str]] | None = None,
                 ordered: bool = True, messages_key: str = "messages") -> None:
        super().__init__(guard, who, settings)
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

    def begin(self, request: Any) -> Step:
        tool_call = request.tool_call
        name = str(tool_call.get("name") or "")
        call_id = str(tool_call.get("id") or "")
        args = _jsonable(dict(tool_call.get("args") or {}))
        context, _ = resolve(self.guard, self.who)
        # The idempotency key: {thread}/{tool call id} ({run} without a thread),
        # with the enclosing call's span when nested in another call.
        scope = context.thread_id or context.run_id
        if context.parent_span_id:
            scope = f"{scope}/{context.parent_span_id}"
        key = f"{scope}/{call_id}" if scope and call_id else ""
        metadata = getattr(request.tool, "metadata", None) or {}
        risk = metadata.get("risk_level")
        extra = {"risk_level": risk} if isinstance(risk, str) and risk else {}
        info = _ToolCall(name, call_id, args, _CANONICAL_JSON.encode(args),
                         self._operation(name, request.tool),
                         self._resource(name, request.tool, args))
        call = self.guard.begin_tool(
            tool=name, operation=info.operation, args=args, input=info.input,
            **context.fields(resource_id=info.resource, request_id=call_id, idempotency_key=key,
                             **extra))
        return Step(context, key, name, request, call=call, extra=info)

    def _message(self, step: Step, content: str) -> ToolMessage:
        return ToolMessage(content=content, tool_call_id=step.extra.call_id, name=step.name,
                           status="error")

    def denied(self, step: Step) -> Any:
        return self._message(step, f"Tool call '{step.name}' denied by policy: "
                                   f"{reasons(step.call.decision)}")

    def approval_payload(self, step: Step) -> dict[str, Any]:
        info: _ToolCall = step.extra
        return {
            "type": APPROVAL_TYPE, "kind": "tool_call", "call_id": step.call.id,
            "tool_call": {"name": step.name, "args": info.args, "id": info.call_id},
            "tool": step.name, "operation": info.operation, "resource": info.resource,
            "agent_id": step.context.agent_id, "thread_id": step.context.thread_id,
            "run_id": step.context.run_id,
            "reasons": [dict(r) for r in step.call.decision.reasons],
        }

    def rejected(self, step: Step, by: str) -> Any:
        return self._message(step, f"Tool call '{step.name}' rejected by {by}")

    def lost(self, step: Step) -> Any:
        return self._message(step, f"Tool call '{step.name}' ended in an earlier run and its "
                                   "result was not kept")

    def prepare(self, step: Step) -> None:
        call_input = step.call.input
        if call_input == step.extra.input:
            return
        new_args, problem = _redacted_args(call_input)  # the guard rewrote the arguments
        if new_args is None:
            step.result = self._refuse_redacted(step, problem)
            return
        step.request = step.request.override(
            tool_call={**step.request.tool_call, "args": new_args})

    def _refuse_redacted(self, step: Step, problem: str) -> Any:
        """Fails closed when the policies' rewrite of the arguments is not
        arguments: running the tool with the originals would undo the
        redaction. The call ends as failed (the ledger's outcome record carries
        error=redacted_arguments_invalid) and the tool never runs."""
        call = step.call
        call.end("", ok=False, error_class=_REDACTED_ARGS_ERROR, latency=0.0)
        message = (f"Tool call '{step.name}' not run: policy redactions left its arguments "
                   f"unusable ({problem}); reasons: {reasons(call.decision)}")
        if self.settings.on_deny == "raise":
            raise GuardDeniedError(message, call.decision)
        return self._final(step, self._message(step, message))

    def end(self, step: Step, result: Any, memo: str | None) -> Any:
        message = _tool_message_in(result, step.request.tool_call.get("id"))
        text = text_of(message.content) if message is not None else ""
        ok = message is None or message.status != "error"
        return step.call.end(text, ok=ok, error_class="" if ok else "tool_error",
                             latency=time.monotonic() - step.started, memo=memo)

    def shown(self, step: Step, result: Any, end: Any) -> tuple[Any, Callable[[], dict[str, Any]]]:
        message = _tool_message_in(result, step.request.tool_call.get("id"))
        text = text_of(message.content) if message is not None else ""
        # Output held for review is shown as it would be if approved (after()
        # asks first); a rejection replaces it.
        held = end.awaiting_approval
        shown = end.held_output if held else end.output
        if message is not None and (shown != text or (end.withheld and not held)):
            update: dict[str, Any] = {"content": with_text(message.content, shown)}
            if end.withheld and not held:
                update["status"] = "error"
            result = _replace_tool_message(result, message, message.model_copy(update=update))
        return result, lambda: self.review_payload(
            step, "tool_result", end,
            tool_call={"name": step.name, "args": step.request.tool_call.get("args"),
                       "id": step.request.tool_call.get("id")},
            tool=step.name, output=shown)

    def withhold(self, step: Step, result: Any, review: dict[str, Any], by: str) -> Any:
        message = _tool_message_in(result, review.get("tool_call", {}).get("id"))
        if message is None:
            return result
        return _replace_tool_message(result, message, message.model_copy(update={
            "content": f"Result of tool call '{step.name}' withheld: rejected by {by}",
            "status": "error"}))

    def encode(self, result: Any) -> Any:
        return message_json(result) if isinstance(result, ToolMessage) else None

    def decode(self, data: Any) -> Any:
        return message_of(data)

    def failed(self, step: Step, exc: BaseException) -> None:
        if isinstance(exc, ParentCommand):  # the tool finished by commanding the parent graph
            step.call.end("", latency=time.monotonic() - step.started)
        elif isinstance(exc, GraphBubbleUp):
            return  # interrupted: the call stays in flight, re-begun by its key on resume
        else:
            step.call.end("", ok=False, error_class=type(exc).__name__,
                          latency=time.monotonic() - step.started)

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
        config = config_now()
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
        execution = getattr(runtime_now(), "execution_info", None)
        run_id = graph_info(config).run_id
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
            with Entered(step.context.within(step.call.span_id)):
                try:
                    result = handler(step.request)
                except BaseException as exc:
                    self.failed(step, exc)
                    raise
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
            with Entered(step.context.within(step.call.span_id)):
                try:
                    result = await handler(step.request)
                except BaseException as exc:
                    await asyncio.to_thread(self.failed, step, exc)
                    raise
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


def tool_call_wrappers(
    guard: Guard,
    *,
    identity: Identity | None = None,
    operations: Mapping[str, str] | None = None,
    resources: Mapping[str, str | Callable[[dict[str, Any]], str]] | None = None,
    on_deny: OnDeny = "message",
    default_approver: str = "unknown",
    ordered: bool = True,
    messages_key: str = "messages",
    **keywords: Unpack[IdentityKeywords],
) -> tuple[Callable[..., Any], Callable[..., Awaitable[Any]]]:
    """(wrap_tool_call, awrap_tool_call) for a ToolNode. Pass both: a ToolNode
    given only the async wrapper runs tools unguarded under a sync invoke.

    With `ordered` (the default), the tool calls a ToolNode runs together in
    one task (several calls of one AIMessage) are guarded and run one at a
    time, in the order the model made them, so that their approval interrupts
    keep their order across re-executions. `messages_key` is the ToolNode's."""
    tools = ToolFlow(guard, Identity.of(identity, **keywords),
                     Settings(on_deny, default_approver), operations=operations,
                     resources=resources, ordered=ordered, messages_key=messages_key)

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
