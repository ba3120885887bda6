"""DataFrame and Arrow export of ledger query results.

pandas and pyarrow are optional: ``pip install 'bastion[frames]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow

    from bastion._core import QueryResult

# Column order of exported frames: place first, then who / what / when / context.
# Every ledger field a call is recorded under (bastion._core.CALL_FIELDS and
# TOKEN_FIELDS) is a column; test_call_schema.py holds the two together.
COLUMNS = (
    "seq", "timestamp", "agent_id", "agent_role", "parent_agent_id", "user_id", "tenant_id",
    "action", "model", "tool", "operation", "resource_id", "input_summary", "output_summary",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_usd", "effect", "reasons", "duration_ns", "trace_id", "span_id",
    "parent_span_id", "request_id", "run_id", "thread_id", "step_index", "risk_level",
    "policy_version", "approval_status", "approved_by", "attributes", "personal_data_erased",
    "hash",
)


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as e:  # pragma: no cover - exercised in environments without it
        raise ImportError(
            f"{module} is needed for this export; install it with "
            f"`pip install {module}` or `pip install 'bastion[frames]'`"
        ) from e


def to_pandas(result: QueryResult) -> pandas.DataFrame:
    """The records as a DataFrame: one row per record, one column per field.

    ``timestamp`` is a UTC ``datetime64[ns]``; ``cost_usd`` is float USD;
    ``step_index`` is a nullable integer; unset strings are ``None``;
    ``personal_data_erased`` is a bool, and an erased record's personal fields
    (``user_id``, the summaries, ``approved_by``, ``attributes``) are ``None``.
    """
    pd = _require("pandas")
    np = _require("numpy")
    cols = result._columns()
    ts = cols.pop("timestamp_ns")
    cols["timestamp"] = pd.DatetimeIndex(ts.view("datetime64[ns]")).tz_localize("UTC")
    cols["cost_usd"] = cols["cost_usd"].astype(np.float64) / 1e9
    step = cols["step_index"]
    cols["step_index"] = pd.array(np.where(step < 0, 0, step), dtype="Int64")
    cols["step_index"][step < 0] = pd.NA
    data = {}
    for name in COLUMNS:
        col = cols[name]
        if isinstance(col, np.ndarray) and col.dtype == object:
            # Keep object dtype: pandas 3 would infer its "str" dtype, which
            # turns unset strings (None) into NaN.
            col = pd.Series(col, dtype=object, copy=False)
        data[name] = col
    return pd.DataFrame(data, copy=False)


def to_arrow(result: QueryResult) -> pyarrow.Table:
    """The records as a pyarrow Table with the same columns as to_pandas()."""
    pa = _require("pyarrow")
    cols = result._columns()
    arrays = {}
    for name in COLUMNS:
        if name == "timestamp":
            arrays[name] = pa.array(cols["timestamp_ns"], type=pa.timestamp("ns", tz="UTC"))
        elif name == "cost_usd":
            arrays[name] = pa.array(cols["cost_usd"] / 1e9, type=pa.float64())
        elif name == "step_index":
            step = cols["step_index"]
            arrays[name] = pa.array(step, mask=step < 0, type=pa.int64())
        elif name == "reasons":
            arrays[name] = pa.array(
                cols[name],
                type=pa.list_(pa.struct([("policy_id", pa.string()), ("message", pa.string())])),
            )
        elif name == "attributes":
            arrays[name] = pa.array(cols[name], type=pa.map_(pa.string(), pa.string()))
        elif cols[name].dtype == object:
            arrays[name] = pa.array(cols[name], type=pa.string())
        else:
            arrays[name] = pa.array(cols[name])
    return pa.table(arrays)
