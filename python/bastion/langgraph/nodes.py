"""Guarded nodes: every node of a graph runs in a RunContext."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from bastion.langgraph.context import Entered, Identity, IdentityKeywords, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from bastion.guard import Guard


def guard_node(
    guard: Guard,
    node: Callable[..., Any] | Runnable | None = None,
    /,
    *,
    identity: Identity | None = None,
    **keywords: Unpack[IdentityKeywords],
) -> Any:
    """Runs a LangGraph node in a guarded RunContext.

    Use as `@guard_node(guard, agent_id="planner")` or `guard_node(guard, fn, ...)`;
    the keywords are Identity's (or pass `identity=Identity(...)`).
    The wrapper keeps the node's signature (functools.wraps) and stays async for
    an async node, so LangGraph still injects config / runtime / store / writer.
    While the node runs, `current_context()` holds the agent fields, the run id
    and trace id of this invocation, the thread id and step, and every guarded
    call inside (a guarded ToolNode, BastionMiddleware, a `guard_model(...)`
    model, `ctx.begin_model(...)`) carries them. Subgraphs the node calls
    inherit the run and trace, and record this node's agent as their parent."""
    who = Identity.of(identity, **keywords)

    def decorate(fn: Callable[..., Any] | Runnable) -> Any:
        if isinstance(fn, Runnable):
            return _wrap_runnable(fn, guard, who, getattr(fn, "name", None))
        if _is_async(fn):
            @functools.wraps(fn)
            async def anode(*args: Any, **kwargs: Any) -> Any:
                with Entered(resolve(guard, who)[0]):
                    return await fn(*args, **kwargs)

            return anode

        @functools.wraps(fn)
        def snode(*args: Any, **kwargs: Any) -> Any:
            with Entered(resolve(guard, who)[0]):
                return fn(*args, **kwargs)

        return snode

    return decorate if node is None else decorate(node)


def _is_async(fn: Any) -> bool:
    """An async function, or an object with an async __call__."""
    return inspect.iscoroutinefunction(fn) or (
        callable(fn) and inspect.iscoroutinefunction(fn.__call__))


def _wrap_runnable(inner: Runnable, guard: Guard, who: Identity, name: str | None) -> Runnable:
    """A node runnable that runs `inner` (with the node's own config, so its
    injection, subgraph checkpoints and interrupts work as before) in a context."""

    def run(state: Any, config: RunnableConfig) -> Any:
        with Entered(resolve(guard, who, config)[0]):
            return inner.invoke(state, config)

    async def arun(state: Any, config: RunnableConfig) -> Any:
        with Entered(resolve(guard, who, config)[0]):
            return await inner.ainvoke(state, config)

    wrapped = RunnableLambda(run, afunc=arun, name=name)
    wrapped._bastion_guarded = True  # type: ignore[attr-defined]
    return wrapped


def guard_graph(
    graph: Any,
    guard: Guard,
    *,
    nodes: Iterable[str] | None = None,
    identity: Identity | None = None,
    **keywords: Unpack[IdentityKeywords],
) -> Any:
    """Runs every node of a StateGraph (or those named in `nodes`) in a guarded
    RunContext, as `guard_node` does. Call before `compile()`; returns the graph.

    Nodes may be functions, ToolNodes, compiled subgraphs or any Runnable; each
    is invoked unchanged (with its own config) inside the context."""
    if getattr(graph, "compiled", False) or not hasattr(graph, "nodes") or not hasattr(
            graph, "compile"):
        raise TypeError("guard_graph takes a StateGraph before compile()")
    who = Identity.of(identity, **keywords)
    wanted = set(nodes) if nodes is not None else None
    if wanted is not None and (unknown := wanted - set(graph.nodes)):
        raise KeyError(f"no such nodes: {sorted(unknown)}")
    for name, spec in list(graph.nodes.items()):
        if wanted is not None and name not in wanted:
            continue
        if getattr(spec.runnable, "_bastion_guarded", False):
            continue
        graph.nodes[name] = dataclasses.replace(
            spec, runnable=_wrap_runnable(spec.runnable, guard, who, name))
    return graph
