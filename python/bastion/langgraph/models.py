"""Guarded model calls: what BastionMiddleware and guard_model share."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langgraph.errors import GraphBubbleUp

from bastion.langgraph.approvals import APPROVAL_TYPE
from bastion.langgraph.calls import (
    CallFlow,
    Settings,
    Step,
    log,
    message_json,
    message_of,
    reasons,
    text_of,
    with_text,
)
from bastion.langgraph.context import Identity, config_now, resolve

if TYPE_CHECKING:
    from bastion.guard import Guard

try:
    from langchain.agents.middleware import ModelResponse
except ImportError:  # pragma: no cover - langchain is optional for raw LangGraph

    @dataclasses.dataclass
    class ModelResponse:  # type: ignore[no-redef]
        """A model's messages and structured response (langchain's shape)."""

        result: list[BaseMessage]
        structured_response: Any = None


def model_name(model: Any, models: Mapping[str, Any]) -> str:
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
            return index, text_of(messages[index].content)
    return None, "\n".join(f"{m.type}: {text_of(m.content)}" for m in messages)


def _input_tokens(request: Any) -> int:
    """A rough estimate (4 characters a token) of the whole prompt."""
    chars = sum(len(text_of(m.content)) for m in request.messages)
    if request.system_message is not None:
        chars += len(text_of(request.system_message.content))
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
        key = (message.id or "", _digest(text_of(message.content)))
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
                text = text_of(m.content)
                shown = self._shown.get((message_id, _digest(text)))
                if shown is not None and shown != text:
                    if out is None:
                        out = list(messages)
                    out[i] = m.model_copy(update={"content": with_text(m.content, shown)})
        return out


# The model calls begun so far by each execution of a task (its scratchpad
# lives as long as that execution): the n-th model call of a task gets the
# same key in every execution, so a re-executed task finds its calls again.
_CALLS_OF_TASK: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()
_CALLS_LOCK = threading.Lock()


def _model_call_index() -> int:
    config = config_now()
    scratchpad = ((config or {}).get("configurable") or {}).get("__pregel_scratchpad")
    if scratchpad is None:
        return 0
    with _CALLS_LOCK:
        try:
            counter = _CALLS_OF_TASK.setdefault(scratchpad, [0])
        except TypeError:  # not weak-referenceable
            return 0
        index = counter[0]
        counter[0] += 1
        return index


@dataclasses.dataclass(slots=True)
class ModelCall:
    """What a model step keeps between before() and after()."""

    index: int | None   # of the message the guard checked as input
    input: str
    input_tokens: int
    stream: Any = None  # the streaming guard (streaming.StreamGuard), once a stream began


class ModelFlow(CallFlow):
    kind = "model"

    def __init__(self, guard: Guard, who: Identity, settings: Settings, *,
                 models: Mapping[str, Any] | None = None) -> None:
        super().__init__(guard, who, settings)
        self.models = dict(models or {})
        self._redactions = _Redactions()

    def begin(self, request: Any) -> Step:
        context, info = resolve(self.guard, self.who)
        name = model_name(request.model, self.models)
        scope = context.thread_id or context.run_id
        key = (f"{scope}/{info.task_id}/model/{_model_call_index()}"
               if scope and info.task_id else "")
        index, input_text = _model_input(request.messages)
        input_tokens = _input_tokens(request)
        call = self.guard.begin_model(
            name, input_text,
            **context.fields(input_tokens=input_tokens,
                             max_output_tokens=_max_output_tokens(request),
                             idempotency_key=key))
        return Step(context, key, name, request, call=call, extra=ModelCall(index, input_text, input_tokens))

    def denied(self, step: Step) -> Any:
        return AIMessage(content=f"Model call denied by policy: {reasons(step.call.decision)}")

    def approval_payload(self, step: Step) -> dict[str, Any]:
        return {
            "type": APPROVAL_TYPE, "kind": "model_call", "call_id": step.call.id,
            "model": step.name, "input": step.call.input, "agent_id": step.context.agent_id,
            "thread_id": step.context.thread_id, "run_id": step.context.run_id,
            "reasons": [dict(r) for r in step.call.decision.reasons],
        }

    def rejected(self, step: Step, by: str) -> Any:
        return AIMessage(content=f"Model call rejected by {by}")

    def lost(self, step: Step) -> Any:
        return AIMessage(content="Model call ended in an earlier run and its result was not kept")

    def prepare(self, step: Step) -> None:
        request, info = step.request, step.extra
        overrides: dict[str, Any] = {}
        chosen = step.call.model
        if chosen and chosen != step.name:
            replacement = self.models.get(chosen)
            if replacement is not None:
                overrides["model"] = replacement
            else:
                log.warning("the guard downgraded %s to %s, but `models` has no %s: "
                            "keeping %s", step.name, chosen, chosen, step.name)
        call_input = step.call.input  # each read of a GuardedCall property converts it anew
        messages = self._redactions.apply(request.messages)
        if info.index is not None and call_input != info.input:
            self._redactions.remember(request.messages[info.index], call_input)
            if messages is None:
                messages = list(request.messages)
            messages[info.index] = messages[info.index].model_copy(
                update={"content": with_text(messages[info.index].content, call_input)})
        if messages is not None:
            overrides["messages"] = messages
        if overrides:
            step.request = request.override(**overrides)

    @staticmethod
    def _last_ai(response: Any) -> tuple[list[BaseMessage], int | None]:
        if isinstance(response, AIMessage):
            return [response], 0
        result = list(response.result)
        index = next((i for i in range(len(result) - 1, -1, -1)
                      if isinstance(result[i], AIMessage)), None)
        return result, index

    def end(self, step: Step, response: Any, memo: str | None) -> Any:
        result, index = self._last_ai(response)
        message = result[index] if index is not None else None
        text = text_of(message.content) if message is not None else ""
        usage = getattr(message, "usage_metadata", None)
        stream = step.extra.stream
        stopped = stream is not None and stream.stopped
        if stopped and not usage:
            usage = stream.usage_of(step)  # the provider's closing usage never came
        return step.call.end(
            text, usage=dict(usage) if usage else None,
            ok=not stopped, error_class="stream_stopped" if stopped else "",
            latency=time.monotonic() - step.started, memo=memo)

    def shown(self, step: Step, response: Any, end: Any) -> tuple[Any, Callable[[], dict[str, Any]]]:
        result, index = self._last_ai(response)
        message = result[index] if index is not None else None
        text = text_of(message.content) if message is not None else ""
        stream = step.extra.stream
        held = end.awaiting_approval  # shown as if approved; after() asks first
        shown = end.held_output if held else end.output
        withheld = end.withheld and not held
        if message is not None and stream is not None and stream.stopped:
            result[index] = message.model_copy(update={
                "content": f"Model output stopped by policy: {stream.reasons}",
                "tool_calls": [], "invalid_tool_calls": []})
        elif message is not None and (withheld or shown != text):
            update: dict[str, Any] = {"content": with_text(message.content, shown)}
            if withheld:
                update.update(tool_calls=[], invalid_tool_calls=[])
            result[index] = message.model_copy(update=update)
        structured = None if isinstance(response, AIMessage) else response.structured_response
        out = ModelResponse(result=result, structured_response=structured)
        return out, lambda: self.review_payload(
            step, "model_output", end, model=step.name, output=shown)

    def withhold(self, step: Step, out: Any, review: dict[str, Any], by: str) -> Any:
        result = list(out.result)
        for i in range(len(result) - 1, -1, -1):
            if isinstance(result[i], AIMessage):
                result[i] = result[i].model_copy(update={
                    "content": f"Model output withheld: rejected by {by}",
                    "tool_calls": [], "invalid_tool_calls": []})
                break
        return ModelResponse(result=result, structured_response=None)

    def encode(self, result: Any) -> Any:
        if isinstance(result, AIMessage):
            return message_json(result)
        if isinstance(result, ModelResponse) and result.structured_response is None:
            messages = [message_json(m) for m in result.result]
            return {"response": messages} if None not in messages else None
        return None

    def decode(self, data: Any) -> Any:
        if isinstance(data, list):
            return message_of(data)
        return ModelResponse(result=[message_of(m) for m in data["response"]])

    def failed(self, step: Step, exc: BaseException) -> None:
        if isinstance(exc, GraphBubbleUp):
            return  # interrupted inside: the call stays in flight, re-begun by its key
        # A stream closed by its consumer (or a cancelled task) was abandoned.
        abandoned = isinstance(exc, (GeneratorExit, asyncio.CancelledError))
        error_class = "abandoned" if abandoned else type(exc).__name__
        stream = step.extra.stream
        if stream is not None and stream.produced:
            stream.settle(step, error_class)  # settled at what was produced
            return
        step.call.end("", ok=False, error_class=error_class,
                      latency=time.monotonic() - step.started)
