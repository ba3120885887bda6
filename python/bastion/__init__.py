"""Bastion: in-process governance for AI agents.

The audit ledger::

    import bastion

    with bastion.Ledger.open("./audit") as ledger:
        ledger.append(action="model_call", agent_id="planner", model="gpt-4o",
                      input_tokens=812, output_tokens=95, cost_usd="0.0031")
        print(ledger.verify())
        df = ledger.query(agent_id="planner", limit=None).to_pandas()
"""

from __future__ import annotations

from bastion import frames as _frames
from pathlib import Path as _Path

from bastion._core import (
    BusyError,
    CorruptionError,
    Decision,
    Error,
    InternalError,
    InvalidArgumentError,
    Ledger,
    NotFoundError,
    PolicyEngine,
    QueryResult,
    StateError,
    StorageError,
    VerifyReport,
)

QueryResult.to_pandas = _frames.to_pandas  # type: ignore[method-assign]
QueryResult.to_arrow = _frames.to_arrow  # type: ignore[method-assign]

__version__ = "0.1.0"


def default_policies() -> str:
    """The folder of the policy bundle that ships with Bastion (policies/default)."""
    return str(_Path(__file__).parent / "policies" / "default")


__all__ = [
    "BusyError",
    "CorruptionError",
    "Decision",
    "Error",
    "InternalError",
    "InvalidArgumentError",
    "Ledger",
    "NotFoundError",
    "PolicyEngine",
    "QueryResult",
    "StateError",
    "StorageError",
    "VerifyReport",
    "__version__",
    "default_policies",
]
