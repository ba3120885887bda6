"""Guarding LangGraph graphs and LangChain agents with a bastion.Guard.

    import bastion
    from bastion.langgraph import BastionMiddleware, guard_graph, guard_model, guarded_tool_node

    guard = bastion.Guard.open("./bastion")

    # LangChain v1 agents: one middleware guards every model call (and every
    # token it streams) and every tool call.
    agent = create_agent(model, tools, checkpointer=InMemorySaver(),
                         middleware=[BastionMiddleware(guard, agent_id="support-bot")])

    # Raw LangGraph: a guarded ToolNode, a guarded model, and every node run in
    # a guarded context.
    builder.add_node("tools", guarded_tool_node(tools, guard))
    llm = guard_model(ChatOpenAI(model="gpt-4o-mini"))
    graph = guard_graph(builder, guard, agent_id="support-bot").compile(checkpointer=...)

Tool calls that need a human pause the graph with `interrupt()`; resume with
`Command(resume={"approved": True, "by": "alice"})` (see `approve`, `reject`).
A pending call is kept in the guard's directory, so the resume may come in
another process. Denied calls become a ToolMessage / AIMessage the model
sees, or raise `GuardDeniedError` with `on_deny="raise"`. See docs/langgraph.md.

Needs langgraph and langchain-core (`pip install 'bastion[langgraph]'`);
`BastionMiddleware` also needs langchain. `import bastion` does not import this
package.

The modules: context (Identity, RunContext), nodes (guard_node, guard_graph),
approvals, calls (the skeleton model and tool calls share), tools, models,
streaming (GuardedChatModel, guard_model), middleware (BastionMiddleware).
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
    import langgraph.types  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "bastion.langgraph needs langgraph and langchain-core: pip install 'bastion[langgraph]'"
    ) from exc

from bastion.langgraph.approvals import APPROVAL_TYPE, approve, pending_approvals, reject
from bastion.langgraph.calls import GuardDenied, GuardDeniedError, Settings
from bastion.langgraph.context import Identity, RunContext, current_context
from bastion.langgraph.middleware import BastionMiddleware
from bastion.langgraph.nodes import guard_graph, guard_node
from bastion.langgraph.streaming import GuardedChatModel, guard_model
from bastion.langgraph.tools import guarded_tool_node, tool_call_wrappers

__all__ = [
    "APPROVAL_TYPE",
    "BastionMiddleware",
    "GuardDenied",
    "GuardDeniedError",
    "GuardedChatModel",
    "Identity",
    "RunContext",
    "Settings",
    "approve",
    "current_context",
    "guard_graph",
    "guard_model",
    "guard_node",
    "guarded_tool_node",
    "pending_approvals",
    "reject",
    "tool_call_wrappers",
]
