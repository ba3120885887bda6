"""bastion.Guard: every model call and tool call checked, metered and recorded.

    import bastion

    guard = bastion.Guard.open("./bastion")          # embedded defaults for what is missing
    call = guard.begin_model(model="gpt-4o", input=prompt, agent_id="support",
                             user_id="u-42", run_id=run_id)
    if not call.allowed:
        ...                                           # call.decision says why
    reply = llm(call.model, call.input)               # possibly downgraded / redacted
    end = call.end(reply.text, usage=reply.usage_metadata)
    show(end.output)                                  # after output guardrails

A guard directory holds (each part optional):

    policies/       a policy bundle (default: the shipped bundle)
    pricing.yaml    prices merged over the shipped table
    budgets.yaml    budgets (none when missing)
    slos.yaml       SLOs (none when missing)
    ledger/         the audit ledger (created)
    state/          budget state (created)
    calls/          the call journal: calls begun with an idempotency key
                    (created; see docs/architecture.md, "The call journal")
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion._core import (
    Budgets,
    Decision,
    Error,
    GuardedCall,
    InvalidArgumentError,
    ManualClock,
    PricingTable,
    SigningKey,
    SloMonitor,
    _Guard,
)

PathLike = str | os.PathLike[str]


class CallDeniedError(Error, RuntimeError):
    """A guarded call was denied, or a human rejected it.

    A RuntimeError, so LangGraph's default retry policy does not retry it.
    `decision` holds the reasons."""

    def __init__(self, message: str, decision: Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision

    @classmethod
    def from_decision(cls, decision: Decision, what: str = "call") -> CallDeniedError:
        reasons = "; ".join(f"{r['policy_id']}: {r['message']}" for r in decision.reasons)
        return cls(f"{what} denied ({reasons or 'no reason given'})", decision)


#: The former name of CallDeniedError (the same class).
CallDenied = CallDeniedError


async def _in_executor(fn: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def _aend(call: GuardedCall, output: str = "", **kwargs: Any) -> Any:
    """GuardedCall.aend: end() on the default executor."""
    return await _in_executor(functools.partial(call.end, output, **kwargs))


async def _aapprove(call: GuardedCall, approved_by: str, reason: str = "") -> None:
    await _in_executor(functools.partial(call.approve, approved_by, reason))


async def _areject(call: GuardedCall, rejected_by: str, reason: str = "") -> None:
    await _in_executor(functools.partial(call.reject, rejected_by, reason))


async def _aapprove_output(call: GuardedCall, approved_by: str, reason: str = "") -> str:
    return await _in_executor(functools.partial(call.approve_output, approved_by, reason))


async def _areject_output(call: GuardedCall, rejected_by: str, reason: str = "") -> str:
    return await _in_executor(functools.partial(call.reject_output, rejected_by, reason))


GuardedCall.aend = _aend  # type: ignore[attr-defined]
GuardedCall.aapprove_output = _aapprove_output  # type: ignore[attr-defined]
GuardedCall.areject_output = _areject_output  # type: ignore[attr-defined]
GuardedCall.aapprove = _aapprove  # type: ignore[attr-defined]
GuardedCall.areject = _areject  # type: ignore[attr-defined]


def _package_file(*parts: str) -> str:
    return str(Path(__file__).parent.joinpath(*parts))


class Guard:
    """The guarded-call lifecycle over one configuration (see the module docstring)."""

    def __init__(self, core: _Guard, path: Path | None, ledger_path: str) -> None:
        self._core = core
        self.path = path
        self.ledger_path = ledger_path
        # The lifecycle's hot path is one C++ call: these bound methods take
        # the arguments begin_model / begin_tool below document, as they are.
        self.begin_model = core.begin_model  # type: ignore[method-assign]
        self.begin_tool = core.begin_tool  # type: ignore[method-assign]

    @classmethod
    def open(
        cls,
        path: PathLike | None = None,
        *,
        policies: PathLike | None = None,
        pricing: list[PathLike] | None = None,
        budgets: PathLike | None = None,
        slos: PathLike | None = None,
        ledger: PathLike | None = None,
        state: PathLike | None = None,
        budget_flush_interval: float = 1.0,
        durability: str = "group",
        high_risk_durability: str = "sync",
        clock: ManualClock | None = None,
        default_max_output_tokens: int = 1024,
        deny_unpriced_budgeted_calls: bool = True,
        calls: PathLike | None = None,
        idempotency_retention: float = 86400.0,
        signing_key: SigningKey | PathLike | None = None,
        checkpoint_every: int = 0,
        checkpoint_interval: float = 0.0,
        checkpoint_sink: PathLike | Callable[[str], object] | None = None,
        store: str | None = None,
        store_timeout: float = 1.0,
    ) -> Guard:
        """Opens a guard on the directory `path` (created if missing); explicit
        arguments override the files found there. Without `path` and `ledger`,
        nothing is recorded. `budget_flush_interval` is how often the budget
        state is saved, in seconds; 0 saves every reservation before the call
        is admitted (see docs/cost.md, "Guarantees: budgets across a crash").
        `clock` (a ManualClock) is the one clock of the guard: budgets, SLOs,
        the policies' rate limits and counters, record times and default
        latencies. `calls` is the call journal (default: <path>/calls; in
        memory without `path`): a call begun with an idempotency key is kept
        there, so that a guard reopened on the same directory (another
        process) resumes it; an ended one is kept `idempotency_retention`
        seconds (default 24 h). With `signing_key` (a SigningKey or its key
        file) the ledger signs checkpoints of its Merkle tree on close, every
        `checkpoint_every` records and every `checkpoint_interval` seconds,
        keeps them, and hands each to `checkpoint_sink` (a file the newest is
        written to, or a callable taking the note text); see docs/evidence.md.
        With `store` ("redis://host:6379/0") the budgets are shared by every
        worker of a fleet on that Redis server instead of kept in `state`; a
        call fails closed (UnavailableError) when the server does not answer
        within `store_timeout` seconds; see docs/fleet.md."""
        named = [("path", path), ("policies", policies), ("budgets", budgets), ("slos", slos),
                 ("ledger", ledger), ("state", state), ("calls", calls)]
        named += [(f"pricing[{i}]", p) for i, p in enumerate(pricing or [])]
        for name, value in named:
            if value is not None and b"\0" in os.fsencode(value):
                raise InvalidArgumentError(
                    f"Guard.open: {name} holds a NUL byte; a path cannot contain one")
        root = Path(path) if path is not None else None
        if root is not None:
            if root.exists() and not root.is_dir():
                raise NotADirectoryError(f"guard directory '{root}' is a file")
            root.mkdir(parents=True, exist_ok=True)

        def found(name: str) -> Path | None:
            if root is None:
                return None
            candidate = root / name
            return candidate if candidate.exists() else None

        policy_dir = policies if policies is not None else found("policies")
        if policy_dir is None:
            policy_dir = _package_file("policies", "default")
        pricing_files = [_package_file("pricing", "default.yaml")]
        if pricing is not None:
            pricing_files += [str(p) for p in pricing]
        elif (own := found("pricing.yaml")) is not None:
            pricing_files.append(str(own))
        budgets_file = budgets if budgets is not None else found("budgets.yaml")
        slos_file = slos if slos is not None else found("slos.yaml")
        ledger_path = ledger if ledger is not None else (root / "ledger" if root else None)
        state_path = state if state is not None else (root / "state" if root else None)
        calls_path = calls if calls is not None else (root / "calls" if root else None)
        core = _Guard._open(
            policy_dir=str(policy_dir),
            pricing_files=pricing_files,
            budgets_file=str(budgets_file) if budgets_file is not None else "",
            slos_file=str(slos_file) if slos_file is not None else "",
            ledger_path=str(ledger_path) if ledger_path is not None else "",
            state_path=str(state_path) if state_path is not None and budgets_file is not None
            else "",
            budget_flush_interval=budget_flush_interval,
            durability=durability,
            high_risk_durability=high_risk_durability,
            clock=clock,
            default_max_output_tokens=default_max_output_tokens,
            deny_unpriced_budgeted_calls=deny_unpriced_budgeted_calls,
            calls_path=str(calls_path) if calls_path is not None else "",
            idempotency_retention=idempotency_retention,
            signing_key=signing_key,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            checkpoint_sink=checkpoint_sink,
            store=store or "",
            store_timeout=store_timeout,
        )
        return cls(core, root, str(ledger_path) if ledger_path is not None else "")

    # -- the lifecycle --

    def begin_model(self, model: str, input: str = "", **fields: Any) -> GuardedCall:
        """Checks a model call. Fields: agent_id, agent_role, parent_agent_id,
        user_id, tenant_id, run_id, thread_id, trace_id, step_index, attributes,
        input_tokens, max_output_tokens, parent_span_id, request_id,
        idempotency_key."""
        return self._core.begin_model(model, input, **fields)

    def begin_tool(self, tool: str, operation: str = "", args: Any = None, input: str = "",
                   **fields: Any) -> GuardedCall:
        """Checks a tool call (fields as begin_model, plus resource_id; ``resource``
        is accepted as an alias)."""
        return self._core.begin_tool(tool, operation, args, input, **fields)

    # asyncio: the same calls run on the default executor, so a high-risk
    # decision's fsync never blocks the event loop.

    async def abegin_model(self, model: str, input: str = "", **fields: Any) -> GuardedCall:
        return await _in_executor(functools.partial(self.begin_model, model, input, **fields))

    async def abegin_tool(self, tool: str, operation: str = "", args: Any = None,
                          input: str = "", **fields: Any) -> GuardedCall:
        return await _in_executor(
            functools.partial(self.begin_tool, tool, operation, args, input, **fields))

    def record(self, record: dict[str, Any] | None = None, **fields: Any) -> int:
        """Appends a record of your own (e.g. a run start) with the policy version."""
        return self._core.record(record, **fields)

    # -- what it holds --

    @property
    def budgets(self) -> Budgets | None:
        return self._core.budgets

    @property
    def slos(self) -> SloMonitor | None:
        return self._core.slos

    @property
    def pricing(self) -> PricingTable:
        return self._core.pricing

    @property
    def policy_version(self) -> str:
        return self._core.policy_version

    @property
    def closed(self) -> bool:
        return self._core.closed

    def summary(self) -> Any:
        from bastion.summary import summary
        return summary(budgets=self.budgets, slos=self.slos)

    def flush(self) -> None:
        """Blocks until every record so far is written and fsynced."""
        self._core.flush()

    def close(self) -> None:
        """Flushes and closes the ledger and the budget state. Idempotent."""
        self._core.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" {self.path}" if self.path is not None else ""
        return f"<bastion.Guard{where}{' closed' if self.closed else ''}>"
