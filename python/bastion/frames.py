"""DataFrame, Arrow and Parquet export of ledger query results.

pandas and pyarrow are optional: ``pip install 'bastion[frames]'``.
"""

from __future__ import annotations

import importlib
import os
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow

    from bastion._core import QueryResult

# Column order of exported frames: place first (the shard, "" for the main one
# and for a ledger without shards, and the seq in its chain), then who / what /
# when / context. Every ledger field a call is recorded under
# (bastion._core.CALL_FIELDS and TOKEN_FIELDS) is a column; test_call_schema.py
# holds the two together.
COLUMNS = (
    "shard", "seq", "timestamp", "agent_id", "agent_role", "parent_agent_id", "user_id",
    "tenant_id", "action", "model", "tool", "operation", "resource_id", "input_summary", "output_summary",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_usd", "effect", "reasons", "duration_ns", "trace_id", "span_id",
    "parent_span_id", "request_id", "run_id", "thread_id", "step_index", "risk_level",
    "policy_version", "approval_status", "approved_by", "attributes", "personal_data_erased",
    "hash",
)


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - exercised in environments without it
        top = module.split(".")[0]
        raise ImportError(
            f"{module} is needed for this export; install it with "
            f"`pip install {top}` or `pip install 'bastion[frames]'`"
        ) from e


def to_pandas(result: QueryResult) -> pandas.DataFrame:
    """The records as a DataFrame: one row per record, one column per field.

    ``timestamp`` is a UTC ``datetime64[ns]``; ``cost_usd`` is float USD;
    ``step_index`` is a nullable integer; unset strings are ``None``;
    ``personal_data_erased`` is a bool, and an erased record's personal fields
    (``user_id``, the summaries, ``approved_by``, ``attributes``) are ``None``.
    ``shard`` is the shard a record was read from (a str; "" for the main
    shard and for a ledger without shards).
    """
    pd = _require("pandas")
    np = _require("numpy")
    cols = result._columns()
    cols["shard"] = np.array(cols["shard"], dtype=object)
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
    return _arrow_table(result._columns())


def _arrow_table(cols: dict[str, Any]) -> pyarrow.Table:
    pa = _require("pyarrow")
    arrays = {}
    for name in COLUMNS:
        if name == "shard":
            arrays[name] = pa.array(cols[name], type=pa.string())
        elif name == "timestamp":
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


_NS_PER_DAY = 86_400 * 10**9


def to_parquet(result: QueryResult, directory: str | os.PathLike[str]) -> list[str]:
    """Writes the records as Parquet, partitioned by the UTC day of their time,
    Hive style: ``<directory>/day=YYYY-MM-DD/part-<unique>.parquet``, one file
    per day present, with the columns of to_arrow(). Each call writes new files
    beside the ones already there (a unique name, written under a hidden name
    and then renamed), so pages of a long export may be written one by one.
    Returns the paths written, by day; none for an empty result.

    Read it back with ``pyarrow.dataset.dataset(directory, partitioning="hive")``
    or DuckDB's ``read_parquet('<directory>/**/*.parquet', hive_partitioning=true)``;
    both add the ``day`` column from the folder names.
    """
    pa = _require("pyarrow")
    np = _require("numpy")
    pq = _require("pyarrow.parquet")
    cols = result._columns()
    ts = np.asarray(cols["timestamp_ns"], dtype=np.int64)
    table = _arrow_table(cols)
    if table.num_rows == 0:
        return []
    days = ts // _NS_PER_DAY  # floor: days before 1970 stay whole days
    root = os.fspath(directory)
    os.makedirs(root, exist_ok=True)
    written = []
    part = uuid.uuid4().hex
    for day in np.unique(days):
        name = np.datetime64(int(day), "D").astype(str)
        folder = os.path.join(root, f"day={name}")
        os.makedirs(folder, exist_ok=True)
        final = os.path.join(folder, f"part-{part}.parquet")
        hidden = os.path.join(folder, f".part-{part}.parquet.tmp")
        rows = table.filter(pa.array(days == day))
        pq.write_table(rows, hidden)
        os.replace(hidden, final)
        written.append(final)
    return written
