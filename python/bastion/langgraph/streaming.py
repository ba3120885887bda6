"""Guarded streaming: a chat model whose every token passes the guard first.

`GuardedChatModel` runs an inner chat model and yields only what the guard
released: each chunk's text goes through the core's streaming guard
(GuardedCall.chunk), which runs the on_chunk policies over a window of recent
text, holds back the tail that could still grow into a match (an e-mail or
card number split across chunks), releases the rest redacted, and stops the
stream when a policy denies. LangChain's own callbacks (which LangGraph's
`stream_mode="messages"` and `astream_events` read) fire on the guarded
chunks only, because the inner model is run without them.

BastionMiddleware installs it around every model call of an agent; for raw
LangGraph nodes, wrap the model with `guard_model(model)`.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import add_usage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableBinding
from pydantic import ConfigDict

from bastion.langgraph.calls import OnDeny, Settings, Step, reasons, text_of
from bastion.langgraph.context import Identity, IdentityKeywords, current_context
from bastion.langgraph.models import ModelFlow

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from bastion.guard import Guard

# The model step of BastionMiddleware whose handler is running now: its
# GuardedChatModel streams through that step's call instead of beginning one.
_ACTIVE: contextvars.ContextVar[Step | None] = contextvars.ContextVar(
    "bastion_langgraph_model_step", default=None)


class StreamGuard:
    """The streaming side of one guarded model call."""

    __slots__ = ("call", "stopped", "reasons", "produced", "produced_chars", "released", "usage",
                 "finished")

    def __init__(self, call: Any) -> None:
        self.call = call
        self.stopped = False
        self.reasons = ""
        self.produced = False       # the model sent text
        self.produced_chars = 0
        self.released: list[str] = []  # what the client was shown
        self.usage: Any = None      # summed from the chunks
        self.finished = False

    def chunk(self, text: str) -> str | None:
        """The text to show for `text` (possibly "" while held), or None: stopped."""
        if self.stopped:
            return None
        self.produced = True
        self.produced_chars += len(text)
        return self._released(*self.call.chunk(text))

    def finish(self) -> str | None:
        """The held tail once the model is done, or None: stopped."""
        if self.stopped:
            return None
        self.finished = True
        return self._released(*self.call.finish_stream())

    def _released(self, stop: bool, out: str) -> str | None:
        if stop:
            self.stopped = True
            self.reasons = reasons(self.call.stream_stop)
            return None
        if out:
            self.released.append(out)
        return out

    def add_usage(self, usage: Any) -> None:
        if usage:
            self.usage = add_usage(self.usage, usage) if self.usage else usage

    def usage_of(self, step: Step) -> dict[str, Any]:
        """The usage the chunks reported, else an estimate (4 characters a
        token) of the prompt and of the text the model produced: what a
        stream cut short is settled at."""
        if self.usage:
            return dict(self.usage)
        return {"input_tokens": step.extra.input_tokens,
                "output_tokens": (self.produced_chars + 3) // 4}

    def settle(self, step: Step, error_class: str) -> None:
        """Ends a stream the client abandoned (or that broke) at what was produced."""
        step.call.end("".join(self.released), usage=self.usage_of(step), ok=False,
                      error_class=error_class, latency=time.monotonic() - step.started)


def _guarded(chunk: ChatGenerationChunk, text: str) -> ChatGenerationChunk:
    """`chunk` with its text replaced by the released `text`, in place: the
    chunk is the inner model's, made for this stream, and nothing else holds
    it (a copy would cost more than the guard's check of it)."""
    message = chunk.message
    content = message.content
    if isinstance(content, list):
        out: list[Any] = []
        placed = False
        for block in content:
            if isinstance(block, str) or (isinstance(block, Mapping)
                                          and block.get("type") == "text"):
                if not placed:
                    out.append({**block, "text": text} if isinstance(block, Mapping)
                               else text)
                    placed = True
            else:
                out.append(block)
        message.content = out
    else:
        message.content = text
    chunk.text = text  # what LangChain read off the raw content when it made the chunk
    return chunk


def _worth_sending(chunk: ChatGenerationChunk, text: str) -> bool:
    message = chunk.message
    return bool(text or getattr(message, "tool_call_chunks", None)
                or getattr(message, "usage_metadata", None)
                or getattr(message, "chunk_position", None) == "last"
                or (isinstance(message.content, list) and any(
                    isinstance(b, Mapping) and b.get("type") != "text" for b in message.content)))


def _tail(text: str, like: ChatGenerationChunk | None) -> ChatGenerationChunk:
    return ChatGenerationChunk(message=AIMessageChunk(
        content=text, id=like.message.id if like is not None else None))


class _Pass:
    """Guards the chunks of one stream, in order."""

    __slots__ = ("stream", "last")

    def __init__(self, stream: StreamGuard) -> None:
        self.stream = stream
        self.last: ChatGenerationChunk | None = None

    def on(self, chunk: ChatGenerationChunk) -> list[ChatGenerationChunk] | None:
        """What to yield for `chunk`; None: the stream stopped."""
        stream = self.stream
        message = chunk.message
        stream.add_usage(getattr(message, "usage_metadata", None))
        self.last = chunk
        text = text_of(message.content)
        shown = stream.chunk(text) if text else text
        if shown is None:
            return None
        if getattr(message, "chunk_position", None) == "last":
            # The held tail goes before the closing chunk (usage, tool calls).
            tail = stream.finish()
            if tail is None:
                return None
            shown += tail
        if shown != text:
            chunk = _guarded(chunk, shown)
        return [chunk] if _worth_sending(chunk, shown) else []

    def end(self) -> list[ChatGenerationChunk] | None:
        if self.stream.stopped:
            return None
        if self.stream.finished:
            return []
        tail = self.stream.finish()
        if tail is None:
            return None
        return [_tail(tail, self.last)] if tail else []


class GuardedChatModel(BaseChatModel):
    """A chat model whose every token passes the guard before anyone sees it.

    Made by `guard_model(model, ...)`, or by BastionMiddleware around each
    model call. Invoked or streamed inside a BastionMiddleware model call, it
    streams through that call; anywhere else it guards the call itself
    (begin_model, approval, the stream, end), with the RunContext of the
    guarded node it runs in."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    flow: Any = None  # the ModelFlow for calls outside BastionMiddleware

    @property
    def _llm_type(self) -> str:
        return f"bastion-guarded-{self.inner._llm_type}"

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return {"guarded": dict(self.inner._identifying_params)}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return self.inner._get_ls_params(stop=stop, **kwargs)  # traces name the inner model

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]
        except AttributeError:
            inner = self.__dict__.get("inner")
            if inner is None or name.startswith("__"):
                raise
            return getattr(inner, name)

    # -- binding keeps the guard --

    def _rebind(self, bound: Any) -> Any:
        if bound is self.inner:
            return self
        if isinstance(bound, RunnableBinding) and bound.bound is self.inner:
            return RunnableBinding(bound=self, kwargs=bound.kwargs, config=bound.config,
                                   config_factories=bound.config_factories,
                                   custom_input_type=bound.custom_input_type,
                                   custom_output_type=bound.custom_output_type)
        raise TypeError(f"{type(self.inner).__name__}.bind_tools returned a "
                        f"{type(bound).__name__}, not the model bound to its tools: "
                        "bastion cannot guard what that runs")

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self._rebind(self.inner.bind_tools(tools, **kwargs))

    # -- running the inner model --

    def _limit(self) -> None:
        if self.inner.rate_limiter:
            self.inner.rate_limiter.acquire(blocking=True)

    async def _alimit(self) -> None:
        if self.inner.rate_limiter:
            await self.inner.rate_limiter.aacquire(blocking=True)

    @staticmethod
    def _chosen(step: Step, inner: BaseChatModel) -> BaseChatModel:
        model = getattr(step.request, "model", inner)
        return model.inner if isinstance(model, GuardedChatModel) else model

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        step = _ACTIVE.get()
        if step is not None:
            self._limit()
            return self._chosen(step, self.inner)._generate(messages, stop=stop, **kwargs)
        flow, step = self._standalone(messages)
        if step.result is not None:
            return _result(step.result)
        self._limit()
        try:
            result = self._chosen(step, self.inner)._generate(
                step.request.messages, stop=stop, **kwargs)
        except BaseException as exc:
            flow.failed(step, exc)
            raise
        return _result(flow.after(step, result.generations[0].message))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        step = _ACTIVE.get()
        if step is not None:
            await self._alimit()
            return await self._chosen(step, self.inner)._agenerate(messages, stop=stop, **kwargs)
        flow, step = await asyncio.to_thread(self._standalone, messages)
        if step.result is not None:
            return _result(step.result)
        await self._alimit()
        try:
            result = await self._chosen(step, self.inner)._agenerate(
                step.request.messages, stop=stop, **kwargs)
        except BaseException as exc:
            await asyncio.to_thread(flow.failed, step, exc)
            raise
        return _result(await asyncio.to_thread(flow.after, step,
                                               result.generations[0].message))

    def _standalone(self, messages: list[BaseMessage]) -> tuple[ModelFlow, Step]:
        flow = self.flow
        if flow is None:
            context = current_context()
            if context is None or context.guard is None:
                raise RuntimeError(
                    "a guarded model outside BastionMiddleware needs a guard: "
                    "guard_model(model, guard) or a node guarded with guard_node/guard_graph")
            flow = ModelFlow(context.guard, Identity(), Settings())
        return flow, flow.before(_Request(self.inner, list(messages)))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        step = _ACTIVE.get()
        flow: ModelFlow | None = None
        if step is None:
            flow, step = self._standalone(messages)
            if step.result is not None:
                yield _one_chunk(step.result)
                return
            messages = step.request.messages
        model = self._chosen(step, self.inner)
        stream = _stream_of(step)
        passing = _Pass(stream)
        self._limit()
        try:
            if type(model)._stream is BaseChatModel._stream:  # the model cannot stream
                source: Iterator[ChatGenerationChunk] = iter(
                    [_as_chunk(model._generate(messages, stop=stop, **kwargs))])
            else:
                source = model._stream(messages, stop=stop, **kwargs)
            for chunk in source:
                out = passing.on(chunk)
                if out is None:
                    break
                yield from out
            else:
                yield from passing.end() or []
        except BaseException as exc:  # closed by the consumer, cancelled, or broken
            if flow is not None:
                flow.failed(step, exc)
            raise
        if flow is not None:
            flow.after(step, _streamed_message(stream, passing))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: Any = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        step = _ACTIVE.get()
        flow: ModelFlow | None = None
        if step is None:
            flow, step = await asyncio.to_thread(self._standalone, messages)
            if step.result is not None:
                yield _one_chunk(step.result)
                return
            messages = step.request.messages
        model = self._chosen(step, self.inner)
        stream = _stream_of(step)
        passing = _Pass(stream)
        await self._alimit()
        try:
            source: AsyncIterator[ChatGenerationChunk]
            if (type(model)._astream is BaseChatModel._astream
                    and type(model)._stream is BaseChatModel._stream):  # the model cannot stream
                source = _one(model._agenerate(messages, stop=stop, **kwargs))
            else:
                source = model._astream(messages, stop=stop, **kwargs)
            async for chunk in source:
                out = passing.on(chunk)
                if out is None:
                    break
                for c in out:
                    yield c
            else:
                for c in passing.end() or []:
                    yield c
        except BaseException as exc:  # closed by the consumer, cancelled, or broken
            if flow is not None:
                await asyncio.to_thread(flow.failed, step, exc)
            raise
        if flow is not None:
            await asyncio.to_thread(flow.after, step, _streamed_message(stream, passing))


async def _one(result: Awaitable[ChatResult]) -> AsyncIterator[ChatGenerationChunk]:
    """The result of a model that cannot stream, as a stream of one chunk."""
    yield _as_chunk(await result)


@dataclasses.dataclass
class _Request:
    """A model call outside LangChain's agent: what ModelFlow reads of a request."""

    model: Any
    messages: list[BaseMessage]
    system_message: Any = None
    model_settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def override(self, **overrides: Any) -> _Request:
        return dataclasses.replace(self, **overrides)


def _stream_of(step: Step) -> StreamGuard:
    stream = step.extra.stream
    if stream is None or stream.finished or stream.stopped:
        stream = step.extra.stream = StreamGuard(step.call)
    return stream


def _streamed_message(stream: StreamGuard, passing: _Pass) -> AIMessage:
    last = passing.last
    return AIMessage(content="".join(stream.released),
                     id=last.message.id if last is not None else None,
                     usage_metadata=stream.usage)


def _as_chunk(result: ChatResult) -> ChatGenerationChunk:
    message = result.generations[0].message
    return ChatGenerationChunk(message=AIMessageChunk(
        content=message.content, id=message.id,
        tool_call_chunks=[
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"],
             "index": i, "type": "tool_call_chunk"}
            for i, c in enumerate(getattr(message, "tool_calls", []) or [])],
        usage_metadata=getattr(message, "usage_metadata", None),
        response_metadata=getattr(message, "response_metadata", {}) or {},
        chunk_position="last"))


def _one_chunk(result: Any) -> ChatGenerationChunk:
    message = _message_of(result)
    return ChatGenerationChunk(message=AIMessageChunk(content=message.content, id=message.id))


def _message_of(result: Any) -> AIMessage:
    if isinstance(result, AIMessage):
        return result
    messages = [m for m in result.result if isinstance(m, AIMessage)]
    return messages[-1] if messages else AIMessage(content="")


def _result(result: Any) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=_message_of(result))])


class _Wrappers:
    """One GuardedChatModel per model a middleware has seen."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._models: dict[int, tuple[BaseChatModel, GuardedChatModel]] = {}

    def of(self, model: Any) -> Any:
        if isinstance(model, GuardedChatModel) or not isinstance(model, BaseChatModel):
            return model
        with self._lock:
            entry = self._models.get(id(model))
            if entry is not None and entry[0] is model:
                return entry[1]
            wrapped = GuardedChatModel(inner=model, disable_streaming=model.disable_streaming,
                                       profile=model.profile)
            if len(self._models) >= self._size:
                self._models.pop(next(iter(self._models)))
            self._models[id(model)] = (model, wrapped)
            return wrapped


def model_call_wrappers(flow: ModelFlow) -> tuple[Callable[..., Any], Callable[..., Awaitable[Any]]]:
    """(wrap_model_call, awrap_model_call): the flow around LangChain's model
    handler, with the model swapped for its GuardedChatModel."""
    wrappers = _Wrappers()

    def wrap(request: Any, handler: Callable[[Any], Any]) -> Any:
        step = flow.before(request)
        if step.result is not None:
            return step.result
        request = step.request.override(model=wrappers.of(step.request.model))
        token = _ACTIVE.set(step)
        try:
            response = handler(request)
        except BaseException as exc:
            flow.failed(step, exc)
            raise
        finally:
            _ACTIVE.reset(token)
        return flow.after(step, response)

    async def awrap(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        step = await asyncio.to_thread(flow.before, request)
        if step.result is not None:
            return step.result
        request = step.request.override(model=wrappers.of(step.request.model))
        token = _ACTIVE.set(step)
        try:
            response = await handler(request)
        except BaseException as exc:
            await asyncio.to_thread(flow.failed, step, exc)
            raise
        finally:
            _ACTIVE.reset(token)
        return await asyncio.to_thread(flow.after, step, response)

    return wrap, awrap


def guard_model(
    model: BaseChatModel,
    guard: Guard | None = None,
    *,
    identity: Identity | None = None,
    models: Mapping[str, Any] | None = None,
    on_deny: OnDeny = "message",
    default_approver: str = "unknown",
    **keywords: Unpack[IdentityKeywords],
) -> GuardedChatModel:
    """`model`, guarded: every call is begun, approved, streamed and ended
    through `guard` (or the guard of the guarded node it runs in), and every
    token a client can observe has passed the on_chunk policies first.

        llm = guard_model(ChatOpenAI(model="gpt-4o-mini"), guard, agent_id="writer")
        for chunk in llm.stream("Write to alice@example.com"):  # redacted as it streams
            ...

    Inside a BastionMiddleware model call it only streams through that call."""
    if not isinstance(model, BaseChatModel):
        raise TypeError(f"guard_model takes a langchain BaseChatModel, got "
                        f"{type(model).__name__}")
    if isinstance(model, GuardedChatModel):
        model = model.inner
    flow = None
    if guard is not None:
        flow = ModelFlow(guard, Identity.of(identity, **keywords),
                         Settings(on_deny, default_approver), models=models)
    return GuardedChatModel(inner=model, flow=flow, disable_streaming=model.disable_streaming,
                            profile=model.profile)


__all__ = ["GuardedChatModel", "guard_model"]
