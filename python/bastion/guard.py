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
    fleet.yaml      the store (Redis) shared by the fleet's workers (docs/fleet.md)
    ledger/         the audit ledger (created)
    state/          budget state (created)
    calls/          the call journal: calls begun with an idempotency key
                    (created; see docs/architecture.md, "The call journal")

Several processes may open one guard directory at once: each writes its own
shard of the ledger (ledger/shards/<name>) and of the call journal
(calls/shards/<name>), and a reader of ledger/ sees every shard as one ledger
(docs/ledger.md, "Sharded ledgers"); budgets are then shared through a store
(docs/fleet.md). Name the shard with ``Guard.open(..., worker="w1")`` (or the
BASTION_WORKER environment variable); without a name, the first process takes
the main paths and the others the first free "<hostname>-<k>".
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion._core import (
    Budgets,
    BusyError,
    Decision,
    Error,
    GuardedCall,
    InvalidArgumentError,
    ManualClock,
    PricingTable,
    SigningKey,
    SloMonitor,
    _Guard,
    shard_path,
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


# Automatic shards tried, "<hostname>-1" .. "<hostname>-<this>", before giving up.
_MAX_AUTOMATIC_SHARDS = 256


def _host_prefix() -> str:
    """This host's name as the start of a shard name: characters outside
    [A-Za-z0-9._-] become '-', no leading '.', short enough for "-<k>"."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).lstrip(".")
    return (name or "host")[:56]


def _shard_of(base: PathLike | None, shard: str | None) -> PathLike | None:
    """<base>/shards/<shard> (its parent folders created), or `base` itself for
    the main shard (None)."""
    if base is None or shard is None:
        return base
    path = Path(shard_path(os.fspath(base), shard))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _shared_budget_check(budgets_file: PathLike | None, shard: str | None,
                         shared: bool) -> None:
    """A guard writing a shard works beside other workers of its directory:
    budgets kept in each process would let N workers spend N times every
    limit, so a shard's budgets must be shared through a store."""
    if budgets_file is None or shard is None or shared:
        return
    raise InvalidArgumentError(
        f"Guard.open: {budgets_file} configures budgets and this process writes shard "
        f"'{shard}' beside other workers of the directory; budgets kept per process would let "
        f"each worker spend every limit again. Share them: store='redis://host:6379/0', or a "
        f"fleet.yaml with 'store:' in the guard directory (docs/fleet.md)")

class Guard:
    """The guarded-call lifecycle over one configuration (see the module docstring)."""

    def __init__(self, core: _Guard, path: Path | None, ledger_path: str) -> None:
        self._core = core
        self.path = path
        # The ledger this guard writes: the main one, or its shard.
        self.ledger_path = ledger_path
        # The shard it writes (ledger/shards/<shard>, calls/..., state/...),
        # None for the main paths; `worker` is the same name.
        self.shard: str | None = None
        self.worker: str | None = None
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
        worker: str | None = None,
        store: str | None = None,
        store_timeout: float = 1.0,
        store_degraded_cap: Any = None,
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

        `worker` (default: the BASTION_WORKER environment variable) names the
        shard this process writes, so that several processes can share the
        directory: ledger/shards/<worker> and calls/shards/<worker> (under
        `ledger` and `calls` when they are given). A name is 1 to 64 bytes of
        [A-Za-z0-9._-], not starting with '.'; a worker reopened with the same
        name appends to the same shard, whatever the order processes start in.
        Without a name the guard takes the main paths, or, when another process
        holds them (BusyError), the first free shard "<hostname>-<k>" (k = 1,
        2, ...): a restart usually finds its own shard again, but which one
        depends on who starts first.
        `shard` (and `worker`) then say which shard the guard writes.

        `store` ("redis://host:6379/0") shares budgets, rate limits and circuit
        breakers with every worker of a fleet on that Redis server; a call that
        needs it while it is away raises UnavailableError within
        `store_timeout` seconds. In the shared state the process is known by
        its worker name, or "<hostname>:<pid>" on the main shard; worker names
        must be unique across the fleet. `store_degraded_cap` (USD) degrades to
        this process's own state while the store is away, admitting at most
        that much per budget and key, instead of failing closed; entering and
        leaving that mode are recorded in the ledger. Without `store`, a
        fleet.yaml in the directory gives the store. A guard that writes a
        shard and has budgets needs a store. See docs/fleet.md."""
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
        ledger_base = ledger if ledger is not None else (root / "ledger" if root else None)
        state_base = state if state is not None else (root / "state" if root else None)
        calls_base = calls if calls is not None else (root / "calls" if root else None)
        fleet_file = found("fleet.yaml") if store is None else None
        if worker is None:
            worker = os.environ.get("BASTION_WORKER") or None
        if worker is not None:
            if not isinstance(worker, str):
                raise TypeError(f"Guard.open: worker must be str or None, got "
                                f"{type(worker).__name__}")
            shard_path("worker", worker)  # InvalidArgumentError naming a bad name
            candidates: list[str | None] = [worker]
        else:
            host = _host_prefix()
            candidates = [None] + [f"{host}-{k}" for k in range(1, _MAX_AUTOMATIC_SHARDS + 1)]
        if ledger_base is None and calls_base is None and state_base is None:
            candidates = candidates[:1]  # nothing on disk: nothing to share
        shared = bool(store) or fleet_file is not None  # budgets kept on the store
        # What every candidate shard opens with.
        common: dict[str, Any] = dict(
            policy_dir=str(policy_dir),
            pricing_files=pricing_files,
            budgets_file=str(budgets_file) if budgets_file is not None else "",
            slos_file=str(slos_file) if slos_file is not None else "",
            budget_flush_interval=budget_flush_interval,
            durability=durability,
            high_risk_durability=high_risk_durability,
            clock=clock,
            default_max_output_tokens=default_max_output_tokens,
            deny_unpriced_budgeted_calls=deny_unpriced_budgeted_calls,
            idempotency_retention=idempotency_retention,
            signing_key=signing_key,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            checkpoint_sink=checkpoint_sink,
            store=store or "",
            store_timeout=store_timeout,
            store_degraded_cap=store_degraded_cap,
            store_file=str(fleet_file) if fleet_file is not None else "",
        )
        for shard in candidates:
            _shared_budget_check(budgets_file, shard, shared)
            ledger_path = _shard_of(ledger_base, shard)
            state_path = (_shard_of(state_base, shard)
                          if budgets_file is not None and not shared else None)
            calls_path = _shard_of(calls_base, shard)
            try:
                core = _Guard._open(
                    **common,
                    ledger_path=str(ledger_path) if ledger_path is not None else "",
                    state_path=str(state_path) if state_path is not None else "",
                    calls_path=str(calls_path) if calls_path is not None else "",
                    worker=shard or "",
                )
            except BusyError:
                if shard is candidates[-1] or worker is not None:
                    raise
                continue
            guard = cls(core, root, str(ledger_path) if ledger_path is not None else "")
            guard.shard = shard
            guard.worker = shard
            return guard
        raise AssertionError("unreachable: the last candidate raises")  # pragma: no cover

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
        shard = f" shard {self.shard}" if self.shard is not None else ""
        return f"<bastion.Guard{where}{shard}{' closed' if self.closed else ''}>"
