"""Queries: every filter, combinations, time ranges, order, paging, the
QueryResult sequence API, and the pandas / Arrow export."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import bastion
from bastion import frames
from helpers import BASE_NS, assert_record_matches, realistic_record

N = 60
SECOND = 1_000_000_000
EQUALITY_FILTERS = ("user_id", "agent_id", "tenant_id", "action", "tool", "effect",
                    "risk_level", "run_id", "trace_id")


def _dataset() -> list[dict[str, Any]]:
    # Timestamps out of append order, two records per second, so that time-only
    # queries (timestamp order) and the others (sequence order) differ.
    perm = random.Random(7).sample(range(N), N)
    return [realistic_record(i, timestamp_ns=BASE_NS + (perm[i] // 2) * SECOND)
            for i in range(N)]


RECORDS = _dataset()  # RECORDS[i] is record seq i + 1


@pytest.fixture(scope="module")
def qledger(tmp_path_factory) -> bastion.Ledger:
    path = str(tmp_path_factory.mktemp("query") / "ledger")
    led = bastion.Ledger.open(path)
    assert led.append_many(RECORDS[:20]) == range(1, 21)
    for rec in RECORDS[20:]:
        led.append(rec)
    yield led
    led.close()


def expected(newest_first: bool = True, since: int | None = None, until: int | None = None,
             **filters: str) -> list[int]:
    """Sequence numbers a query must return, in order (docs/ledger.md)."""
    seqs = [
        i + 1 for i, r in enumerate(RECORDS)
        if all(r.get(k) == v for k, v in filters.items())
        and (since is None or r["timestamp_ns"] >= since)
        and (until is None or r["timestamp_ns"] <= until)
    ]
    if not filters and (since is not None or until is not None):
        seqs.sort(key=lambda s: (RECORDS[s - 1]["timestamp_ns"], s))
    return seqs[::-1] if newest_first else seqs


def seqs_of(result) -> list[int]:
    return [r["seq"] for r in result]


def ts(second: int) -> int:
    return BASE_NS + second * SECOND


# --- filters --------------------------------------------------------------------

@pytest.mark.parametrize("field", EQUALITY_FILTERS)
def test_each_equality_filter(qledger, field):
    values = sorted({r[field] for r in RECORDS if r.get(field)})
    assert values
    for value in values[:4]:
        result = qledger.query(**{field: value}, limit=None)
        want = expected(**{field: value})
        assert want, (field, value)
        assert seqs_of(result) == want
        assert all(r[field] == value for r in result)
        assert result.next_cursor is None
    if field in ("effect", "risk_level"):  # enumerated: other values are errors
        with pytest.raises(bastion.InvalidArgumentError, match=f"query filter '{field}'"):
            qledger.query(**{field: "no-such-value"}, limit=None)
    else:
        assert len(qledger.query(**{field: "no-such-value"}, limit=None)) == 0


@pytest.mark.parametrize(
    "filters",
    [
        {"agent_id": "support-bot", "effect": "deny"},
        {"agent_id": "planner", "action": "model_call", "tenant_id": "acme"},
        {"user_id": "u-3", "tool": "refund"},
        {"tenant_id": "globex", "risk_level": "high", "action": "tool_call"},
        {"run_id": "run-2", "agent_id": "researcher"},
        {"effect": "allow", "action": "approval", "user_id": "u-1"},
        {"agent_id": "planner", "effect": "deny"},  # no such record
        {"agent_id": "planner", "since": ts(5), "until": ts(20)},
        {"effect": "allow", "since": ts(10)},
        {"tenant_id": "acme", "until": ts(12)},
    ],
    ids=lambda f: "+".join(f),
)
@pytest.mark.parametrize("newest_first", [True, False], ids=["newest", "oldest"])
def test_filter_combinations(qledger, filters, newest_first):
    result = qledger.query(**filters, newest_first=newest_first, limit=None)
    assert seqs_of(result) == expected(newest_first=newest_first, **filters)


def test_all_equality_filters_at_once(qledger):
    target = RECORDS[13]
    filters = {f: target[f] for f in EQUALITY_FILTERS if target.get(f)}
    assert len(filters) >= 8
    assert seqs_of(qledger.query(**filters)) == [14]
    assert len(qledger.query(**{**filters, "user_id": "u-other"})) == 0


# --- time ranges ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("since", "until"),
    [(ts(10), ts(20)), (ts(10), None), (None, ts(7)), (ts(0), ts(0)), (ts(29), None),
     (ts(10) + 1, ts(20) - 1), (ts(30), None)],
)
@pytest.mark.parametrize("newest_first", [True, False], ids=["newest", "oldest"])
def test_time_range_is_inclusive_and_in_timestamp_order(qledger, since, until, newest_first):
    result = qledger.query(since=since, until=until, newest_first=newest_first, limit=None)
    want = expected(newest_first=newest_first, since=since, until=until)
    assert seqs_of(result) == want
    times = [r["timestamp_ns"] for r in result]
    assert times == sorted(times, reverse=newest_first)


def test_time_range_boundaries(qledger):
    # Two records carry each second's timestamp; both ends are inclusive.
    at_10 = qledger.query(since=ts(10), until=ts(10), limit=None)
    assert len(at_10) == 2 and {r["timestamp_ns"] for r in at_10} == {ts(10)}
    assert len(qledger.query(since=ts(10) + 1, until=ts(11) - 1, limit=None)) == 0
    with pytest.raises(bastion.InvalidArgumentError, match="'since' .* is after 'until'"):
        qledger.query(since=ts(20), until=ts(10), limit=None)


def test_since_and_until_as_datetimes(qledger):
    naive_since = dt.datetime(2026, 11, 21, 9, 0, 10)  # naive means UTC
    naive_until = dt.datetime(2026, 11, 21, 9, 0, 20)
    want = expected(since=ts(10), until=ts(20))
    assert seqs_of(qledger.query(since=naive_since, until=naive_until, limit=None)) == want
    plus5 = dt.timezone(dt.timedelta(hours=5))
    aware_since = dt.datetime(2026, 11, 21, 14, 0, 10, tzinfo=plus5)
    aware_until = dt.datetime(2026, 11, 21, 14, 0, 20, tzinfo=plus5)
    assert seqs_of(qledger.query(since=aware_since, until=aware_until, limit=None)) == want
    assert seqs_of(qledger.query(since=pd.Timestamp(ts(10)), until=pd.Timestamp(ts(20), tz="UTC"),
                                 limit=None)) == want
    assert seqs_of(qledger.query(since=np.datetime64(ts(10), "ns"),
                                 until=np.datetime64(ts(20), "ns"), limit=None)) == want
    # Sub-microsecond precision is kept: pandas timestamps carry nanoseconds.
    assert len(qledger.query(since=pd.Timestamp(ts(10) + 1), until=pd.Timestamp(ts(11) - 1),
                             limit=None)) == 0
    # With another filter, the time range is applied to its candidates.
    assert seqs_of(qledger.query(agent_id="planner", since=naive_since, until=naive_until,
                                 limit=None)) == expected(agent_id="planner", since=ts(10),
                                                          until=ts(20))


# --- order, limit, paging ---------------------------------------------------------

def test_newest_first_is_the_default(qledger):
    assert seqs_of(qledger.query(limit=None)) == list(range(N, 0, -1))
    assert seqs_of(qledger.query(limit=None, newest_first=False)) == list(range(1, N + 1))


def test_limit(qledger):
    page = qledger.query(limit=5)
    assert seqs_of(page) == [60, 59, 58, 57, 56]
    assert page.next_cursor is not None
    page = qledger.query(agent_id="planner", newest_first=False, limit=3)
    assert seqs_of(page) == expected(newest_first=False, agent_id="planner")[:3]
    everything = qledger.query(limit=None)
    assert len(everything) == N and everything.next_cursor is None


def test_default_limit_is_100(tmp_path):
    with bastion.Ledger.open(str(tmp_path / "l")) as led:
        led.append_many([{"action": "a"}] * 130)
        page = led.query()
        assert len(page) == 100 and page.next_cursor is not None
        rest = led.query(cursor=page.next_cursor)
        assert seqs_of(rest) == list(range(30, 0, -1)) and rest.next_cursor is None


PAGED_QUERIES = [
    {},
    {"agent_id": "support-bot"},
    {"tenant_id": "acme", "action": "tool_call"},
    {"since": ts(5), "until": ts(25)},
    {"since": ts(3)},
    {"user_id": "u-2", "since": ts(4)},
]


@pytest.mark.parametrize("filters", PAGED_QUERIES, ids=lambda f: "+".join(f) or "all")
@pytest.mark.parametrize("newest_first", [True, False], ids=["newest", "oldest"])
@pytest.mark.parametrize("page_size", [1, 7, "exact"])
def test_cursor_paging_covers_every_match_exactly_once(qledger, filters, newest_first,
                                                       page_size):
    want = expected(newest_first=newest_first, **filters)
    size = len(want) if page_size == "exact" else page_size
    got: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = qledger.query(**filters, newest_first=newest_first, limit=size, cursor=cursor)
        pages += 1
        assert len(page) <= size
        got += seqs_of(page)
        if page.next_cursor is None:
            break
        assert len(page) == size, "only a full page may have a next page"
        cursor = page.next_cursor
        assert pages <= len(want) + 1
    assert got == want
    assert len(set(got)) == len(got)
    assert pages <= len(want) // size + 1


def test_a_cursor_keeps_working_after_more_appends(tmp_path):
    with bastion.Ledger.open(str(tmp_path / "l")) as led:
        led.append_many([{"action": "a", "agent_id": "x"}] * 10)
        page = led.query(agent_id="x", limit=4)
        assert seqs_of(page) == [10, 9, 8, 7]
        led.append_many([{"action": "a", "agent_id": "x"}] * 5)
        # Newest first continues with older records; the new ones are not repeated.
        assert seqs_of(led.query(agent_id="x", limit=None, cursor=page.next_cursor)) == \
            [6, 5, 4, 3, 2, 1]
        page = led.query(agent_id="x", newest_first=False, limit=12)
        led.append_many([{"action": "a", "agent_id": "x"}] * 2)
        assert seqs_of(led.query(agent_id="x", newest_first=False, limit=None,
                                 cursor=page.next_cursor)) == [13, 14, 15, 16, 17]


# --- the QueryResult sequence ----------------------------------------------------

def test_query_result_len_index_slice_and_iteration(qledger):
    result = qledger.query(agent_id="planner", limit=None)
    want = expected(agent_id="planner")
    n = len(result)
    assert n == len(want) > 5
    assert result[0]["seq"] == want[0]
    assert result[n - 1]["seq"] == want[-1]
    assert result[-1]["seq"] == want[-1]
    assert result[-n]["seq"] == want[0]
    for bad in (n, n + 10, -n - 1):
        with pytest.raises(IndexError):
            result[bad]
    assert [r["seq"] for r in result[1:4]] == want[1:4]
    assert [r["seq"] for r in result[::2]] == want[::2]
    assert [r["seq"] for r in result[::-1]] == want[::-1]
    assert [r["seq"] for r in result[-3:]] == want[-3:]
    assert result[5:2] == [] and result[n:] == []
    assert isinstance(result[0:1], list)
    listed = list(result)
    assert [r["seq"] for r in listed] == want
    assert listed == [result[i] for i in range(n)]
    assert [r["seq"] for r in result] == want  # iterating twice works
    assert repr(result) == f"<QueryResult {n} records>"
    assert "more available" in repr(qledger.query(limit=1))


def test_query_result_records_match_what_was_appended(qledger):
    for r in qledger.query(limit=None):
        assert_record_matches(r, RECORDS[r["seq"] - 1])
        assert r == qledger.get(r["seq"])


def test_query_result_outlives_the_ledger(tmp_path):
    led = bastion.Ledger.open(str(tmp_path / "l"))
    led.append_many([realistic_record(i) for i in range(5)])
    result = led.query(limit=None)
    led.close()
    assert seqs_of(result) == [5, 4, 3, 2, 1]
    assert len(result.to_pandas()) == 5


def test_an_empty_ledger(ledger):
    result = ledger.query(limit=None)
    assert len(result) == 0 and list(result) == [] and result.next_cursor is None
    assert len(ledger.query(since=0, limit=10)) == 0


# --- pandas and Arrow -------------------------------------------------------------

OBJECT_COLUMNS = (
    "shard", "agent_id", "agent_role", "parent_agent_id", "user_id", "tenant_id", "action", "model",
    "tool", "operation", "resource_id", "input_summary", "output_summary", "effect", "reasons",
    "trace_id", "span_id", "parent_span_id", "request_id", "run_id", "thread_id",
    "risk_level", "policy_version", "approval_status", "approved_by", "attributes", "hash",
)
INT_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "reasoning_tokens", "duration_ns")


def test_to_pandas_dtypes(qledger):
    df = qledger.query(limit=None).to_pandas()
    assert tuple(df.columns) == frames.COLUMNS
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert df["cost_usd"].dtype == np.float64
    assert df["step_index"].dtype == pd.Int64Dtype()
    assert df["seq"].dtype == np.uint64
    for col in INT_COLUMNS:
        assert df[col].dtype == np.int64, col
    for col in OBJECT_COLUMNS:
        assert df[col].dtype == object, col


def test_to_pandas_values_equal_the_dicts(qledger):
    result = qledger.query(limit=None)
    df = result.to_pandas()
    assert len(df) == len(result) == N
    for row, rec in zip(df.itertuples(index=False), result):
        row = row._asdict()
        assert row["timestamp"] == pd.Timestamp(rec["timestamp_ns"], tz="UTC")
        assert row["timestamp"].value == rec["timestamp_ns"]
        for col in frames.COLUMNS:
            if col == "timestamp":
                continue
            value = row[col]
            if col == "step_index" and rec[col] is None:
                assert value is pd.NA
            elif col == "reasons":  # a sequence of dicts (list or tuple)
                assert isinstance(value, (list, tuple)) and list(value) == rec[col]
            elif col == "cost_usd":  # the float nearest the dict's exact Decimal
                assert value == float(rec[col]), col
            else:
                assert value == rec[col], col
                assert type(value) is type(rec[col]) or col in INT_COLUMNS + (
                    "seq", "step_index", "cost_usd"), col


def test_to_pandas_unset_strings_are_none(ledger):
    ledger.append(action="a", agent_id="x", step_index=2)
    ledger.append(action="b")
    df = ledger.query(limit=None, newest_first=False).to_pandas()
    assert df["agent_id"].tolist() == ["x", None]
    assert df["model"].tolist() == [None, None]
    assert df["step_index"].tolist() == [2, pd.NA]
    assert [list(r) for r in df["reasons"]] == [[], []]
    assert df["attributes"].tolist() == [{}, {}]
    assert df["cost_usd"].tolist() == [0.0, 0.0]


def test_to_pandas_cost_sums(qledger):
    df = qledger.query(limit=None).to_pandas()
    by_agent = df.groupby("agent_id")["cost_usd"].sum()
    for agent, total in by_agent.items():
        want = sum(float(r.get("cost_usd") or 0) for r in RECORDS if r["agent_id"] == agent)
        assert total == pytest.approx(want, abs=1e-12)


def test_empty_result_to_pandas_has_the_same_columns_and_dtypes(qledger):
    full = qledger.query(limit=None).to_pandas()
    empty = qledger.query(agent_id="nobody").to_pandas()
    assert len(empty) == 0
    assert tuple(empty.columns) == frames.COLUMNS
    assert empty.dtypes.to_dict() == full.dtypes.to_dict()


def test_to_arrow_schema_and_rows(qledger):
    result = qledger.query(limit=None)
    table = result.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.num_rows == N
    assert tuple(table.column_names) == frames.COLUMNS
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert schema.field("cost_usd").type == pa.float64()
    assert schema.field("step_index").type == pa.int64()
    assert schema.field("seq").type == pa.uint64()
    assert schema.field("reasons").type == pa.list_(
        pa.struct([("policy_id", pa.string()), ("message", pa.string())]))
    assert schema.field("attributes").type == pa.map_(pa.string(), pa.string())
    for col in OBJECT_COLUMNS:
        if col not in ("reasons", "attributes"):
            assert schema.field(col).type == pa.string(), col
    rows = table.to_pylist()
    for row, rec in zip(rows, result):
        assert row["seq"] == rec["seq"]
        assert row["agent_id"] == rec["agent_id"]
        assert row["parent_agent_id"] == rec["parent_agent_id"]  # None stays null
        assert row["step_index"] == rec["step_index"]
        assert row["cost_usd"] == float(rec["cost_usd"])
        assert row["reasons"] == rec["reasons"]
        assert dict(row["attributes"]) == rec["attributes"]
        assert pd.Timestamp(row["timestamp"]).value == rec["timestamp_ns"]


def test_to_arrow_nulls_and_empty(ledger):
    ledger.append(action="a")
    table = ledger.query(limit=None).to_arrow()
    assert table.column("step_index").null_count == 1
    assert table.column("agent_id").null_count == 1
    empty = ledger.query(agent_id="nobody").to_arrow()
    assert empty.num_rows == 0
    assert empty.schema == table.schema
