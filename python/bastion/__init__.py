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
    BudgetExceededError,
    Budgets,
    BusyError,
    CallEnd,
    CorruptionError,
    Cost,
    Decision,
    EraseReport,
    Error,
    GuardedCall,
    Hold,
    InternalError,
    UnavailableError,
    InvalidArgumentError,
    Ledger,
    ManualClock,
    NotFoundError,
    PolicyEngine,
    PricingTable,
    QueryResult,
    RepairReport,
    SigningKey,
    SloMonitor,
    StateError,
    StorageError,
    Usage,
    VerificationError,
    VerifyReport,
    merkle_leaf_hash,
    shard_path,
    verify_consistency,
    verify_inclusion,
)

from bastion.evidence import Checkpoint, export_evidence, open_checkpoint
from bastion.guard import CallDenied, CallDeniedError, Guard
from bastion.summary import Summary, summary

QueryResult.to_pandas = _frames.to_pandas  # type: ignore[method-assign]
QueryResult.to_arrow = _frames.to_arrow  # type: ignore[method-assign]
QueryResult.to_parquet = _frames.to_parquet  # type: ignore[attr-defined]

__version__ = "0.1.0"


def default_policies() -> str:
    """The folder of the policy bundle that ships with Bastion (policies/default)."""
    return str(_Path(__file__).parent / "policies" / "default")


def default_pricing_path() -> str:
    """The pricing table that ships with Bastion (pricing/default.yaml)."""
    return str(_Path(__file__).parent / "pricing" / "default.yaml")


def default_pricing() -> PricingTable:
    """The shipped pricing table, loaded. Merge your own prices over it::

        table = bastion.default_pricing()
        table.merge(bastion.PricingTable.load("my_prices.yaml"))
    """
    return PricingTable.load(default_pricing_path())


__all__ = [
    "BudgetExceededError",
    "Budgets",
    "BusyError",
    "CallDenied",
    "CallDeniedError",
    "CallEnd",
    "Checkpoint",
    "CorruptionError",
    "Cost",
    "Decision",
    "EraseReport",
    "Error",
    "Guard",
    "GuardedCall",
    "Hold",
    "InternalError",
    "UnavailableError",
    "InvalidArgumentError",
    "Ledger",
    "ManualClock",
    "NotFoundError",
    "PolicyEngine",
    "PricingTable",
    "QueryResult",
    "RepairReport",
    "SigningKey",
    "SloMonitor",
    "StateError",
    "StorageError",
    "Summary",
    "Usage",
    "VerificationError",
    "VerifyReport",
    "__version__",
    "default_policies",
    "default_pricing",
    "default_pricing_path",
    "export_evidence",
    "merkle_leaf_hash",
    "open_checkpoint",
    "shard_path",
    "summary",
    "verify_consistency",
    "verify_inclusion",
]
