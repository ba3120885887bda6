"""BastionMiddleware: one LangChain v1 agent middleware guarding every model
call (streamed tokens included) and every tool call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from bastion.langgraph.calls import OnDeny, Settings
from bastion.langgraph.context import Identity, IdentityKeywords
from bastion.langgraph.models import ModelFlow
from bastion.langgraph.streaming import model_call_wrappers
from bastion.langgraph.tools import ToolFlow

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from bastion.guard import Guard

try:
    from langchain.agents.middleware import AgentMiddleware
except ImportError:  # pragma: no cover - langchain is optional for raw LangGraph
    AgentMiddleware = None  # type: ignore[assignment,misc]


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
        message's content. The model runs as a GuardedChatModel: every token
        streamed to a client (stream_mode="messages", astream_events) has
        passed the on_chunk policies. After the call: end(text,
        usage=usage_metadata) and the AIMessage returned carries the guard's
        output (redacted, withheld with its tool calls dropped, or the reason
        the stream was stopped). Tool calls: as guarded_tool_node.
        """

        def __init__(
            self,
            guard: Guard,
            *,
            identity: Identity | None = None,
            models: Mapping[str, Any] | None = None,
            operations: Mapping[str, str] | None = None,
            resources: Mapping[str, str | Callable[[dict[str, Any]], str]] | None = None,
            on_deny: OnDeny = "message",
            default_approver: str = "unknown",
            **keywords: Unpack[IdentityKeywords],
        ) -> None:
            super().__init__()
            who = Identity.of(identity, **keywords)
            settings = Settings(on_deny, default_approver)
            self.guard = guard
            self._models = ModelFlow(guard, who, settings, models=models)
            self._wrap_model, self._awrap_model = model_call_wrappers(self._models)
            self._tools = ToolFlow(guard, who, settings, operations=operations,
                                   resources=resources)

        def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
            return self._wrap_model(request, handler)

        async def awrap_model_call(self, request: Any,
                                   handler: Callable[[Any], Awaitable[Any]]) -> Any:
            return await self._awrap_model(request, handler)

        def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
            return self._tools.wrap(request, handler)

        async def awrap_tool_call(self, request: Any,
                                  handler: Callable[[Any], Awaitable[Any]]) -> Any:
            return await self._tools.awrap(request, handler)

else:  # pragma: no cover - only without langchain

    def BastionMiddleware(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]
        raise ImportError("BastionMiddleware needs langchain: pip install 'bastion[langgraph]'")
