"""Appending records: the ways to call append, what get() gives back, exact
costs, durability modes, sequence numbers, the head, closing, and concurrent
appends from many Python threads."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest

import bastion
from helpers import BASE_NS, RECORD_FIELDS, assert_record_matches, realistic_record

ZERO_HASH = "0" * 64


def stored_cost_nanos(ledger: bastion.Ledger, seq: int) -> int:
    """The exact stored cost of record `seq`, in units of 1e-9 USD (the raw
    column the DataFrame export divides by 1e9)."""
    result = ledger.query(since=0, limit=None)
    cols = result._columns()
    (row,) = [i for i, s in enumerate(cols["seq"]) if s == seq]
    return int(cols["cost_usd"][row])


# --- ways to append -----------------------------------------------------------

def test_append_with_keyword_fields(ledger, make_record):
    rec = make_record(0)
    seq = ledger.append(**rec)
    assert seq == 1
    assert_record_matches(ledger.get(seq), rec)


def test_append_with_a_dict(ledger, make_record):
    rec = make_record(1)
    seq = ledger.append(rec)
    assert seq == 1
    assert_record_matches(ledger.get(seq), rec)
    assert rec == make_record(1), "append must not modify the caller's dict"


def test_append_with_a_dict_and_keywords_keywords_win(ledger, make_record):
    rec = make_record(2)
    seq = ledger.append(rec, agent_id="override-agent", user_id=None, model="gpt-4o-mini")
    got = ledger.get(seq)
    assert got["agent_id"] == "override-agent"
    assert got["model"] == "gpt-4o-mini"
    assert got["user_id"] is None  # None means "not set", also when it overrides
    assert_record_matches(got, {**rec, "agent_id": "override-agent", "user_id": None,
                                "model": "gpt-4o-mini"})


def test_append_takes_one_positional_record_and_durability_beside_the_fields(ledger):
    with pytest.raises(TypeError, match="at most 1 positional argument"):
        ledger.append({"action": "a"}, {"action": "b"})
    with pytest.raises(TypeError, match="a record must be a dict"):
        ledger.append([("action", "a")])
    seq = ledger.append({"action": "a", "agent_id": "x"}, agent_id="y", durability="sync")
    assert ledger.get(seq)["agent_id"] == "y"
    assert bastion.Ledger.append(ledger, action="a", durability="async") == seq + 1
    assert ledger.append(**{"action": "a", "durability": "group"}) == seq + 2
    assert "durability" in bastion.Ledger.append.__doc__
    assert ledger.head()["seq"] == seq + 2


def test_keywords_replace_the_dicts_reasons_and_attributes(ledger):
    base = {"action": "tool_call", "attributes": {"k": "v", "other": "x"},
            "reasons": [("p1", "m1")], "step_index": 4, "input_tokens": 9}
    got = ledger.get(ledger.append(base, attributes={"k": "w"}, reasons=[("p2", "m2")],
                                   step_index=None, input_tokens=None))
    assert got["attributes"] == {"k": "w"}
    assert got["reasons"] == [{"policy_id": "p2", "message": "m2"}]
    assert got["step_index"] is None and got["input_tokens"] == 0


def test_append_many_returns_the_range_of_sequence_numbers(ledger, make_record):
    first = ledger.append(make_record(0))
    recs = [make_record(i) for i in range(1, 8)]
    seqs = ledger.append_many(recs)
    assert isinstance(seqs, range)
    assert seqs == range(first + 1, first + 8)
    for seq, rec in zip(seqs, recs):
        assert_record_matches(ledger.get(seq), rec)
    # Any iterable of dicts works, e.g. a generator.
    more = ledger.append_many(make_record(i) for i in range(3))
    assert more == range(9, 12)


def test_append_many_of_nothing_appends_nothing(ledger):
    assert ledger.append_many([]) == range(0)
    assert ledger.head()["seq"] == 0


def test_get_returns_every_field_of_a_full_record(ledger):
    rec = {
        "agent_id": "support-bot", "agent_role": "worker", "parent_agent_id": "planner",
        "user_id": "u-42", "tenant_id": "acme", "action": "tool_call", "model": "gpt-4o",
        "tool": "refund", "operation": "write", "resource_id": "order-A1001",
        "input_summary": "refund order A-1001", "output_summary": "refund queued",
        "input_tokens": 812, "output_tokens": 95, "cache_read_tokens": 512,
        "cache_write_tokens": 64, "reasoning_tokens": 33, "cost_usd": "0.0031",
        "effect": "require_approval",
        "reasons": [("write-tools-need-approval", "refunds need a human"),
                    {"policy_id": "amount-limit", "message": "over $100"}],
        "timestamp_ns": BASE_NS + 123, "duration_ns": 1_500_000, "trace_id": "4bf92f3577b34da6",
        "span_id": "00f067aa0ba902b7", "parent_span_id": "a3ce929d0e0e4736",
        "request_id": "req-9", "run_id": "run-7", "thread_id": "th-1", "step_index": 3,
        "risk_level": "high", "policy_version": "2026-11-01", "approval_status": "pending",
        "approved_by": "ops-1", "attributes": {"order_id": "A-1001", "channel": "web"},
    }
    assert set(rec) == set(RECORD_FIELDS)
    seq = ledger.append(rec)
    got = ledger.get(seq)
    assert_record_matches(got, rec)
    # A few explicit checks of the conversions assert_record_matches relies on.
    assert got["reasons"] == [
        {"policy_id": "write-tools-need-approval", "message": "refunds need a human"},
        {"policy_id": "amount-limit", "message": "over $100"},
    ]
    assert got["attributes"] == {"channel": "web", "order_id": "A-1001"}
    assert got["cost_usd"] == Decimal("0.0031") and isinstance(got["cost_usd"], Decimal)
    assert got["step_index"] == 3
    assert got["timestamp_ns"] == BASE_NS + 123
    assert got["seq"] == seq and got["prev_hash"] == ZERO_HASH


def test_get_of_a_minimal_record_reports_unset_fields(ledger):
    seq = ledger.append(action="budget_alert")
    got = ledger.get(seq)
    for field in RECORD_FIELDS:
        if field in {"action", "timestamp_ns"}:
            continue
        assert got[field] in (None, 0, 0.0, [], {}), field
    assert got["step_index"] is None  # unset, unlike step_index=0
    assert got["cost_usd"] == 0.0 and got["reasons"] == [] and got["attributes"] == {}


def test_step_index_zero_is_kept_distinct_from_unset(ledger):
    assert ledger.get(ledger.append(action="a", step_index=0))["step_index"] == 0
    assert ledger.get(ledger.append(action="a"))["step_index"] is None


def test_get_of_an_absent_record_raises_not_found(ledger):
    ledger.append(action="a")
    for seq in (0, 2, 10**9):
        with pytest.raises(bastion.NotFoundError, match=f"no record {seq}"):
            ledger.get(seq)
    assert issubclass(bastion.NotFoundError, LookupError)


def test_timestamp_defaults_to_now_and_accepts_a_datetime(ledger):
    before = dt.datetime.now(dt.timezone.utc).timestamp() * 1e9
    got = ledger.get(ledger.append(action="a"))
    after = dt.datetime.now(dt.timezone.utc).timestamp() * 1e9
    assert before - 1e6 <= got["timestamp_ns"] <= after + 1e6
    when = dt.datetime(2026, 11, 21, 9, 0, 0, 123456)  # naive: UTC
    got = ledger.get(ledger.append(action="a", timestamp_ns=when))
    assert got["timestamp_ns"] == BASE_NS + 123456 * 1000
    aware = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert ledger.get(ledger.append(action="a", timestamp_ns=aware))["timestamp_ns"] == BASE_NS


@pytest.mark.parametrize(
    ("when", "ns"),
    [
        (dt.datetime(1970, 1, 1, 0, 0, 0, 1), 1000),  # (0 would mean "now")
        (dt.datetime(2000, 2, 29, 23, 59, 59, 999999), 951_868_799_999_999_000),
        (dt.datetime(2026, 11, 21, 3, 30, tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30))),
         BASE_NS),
        (dt.datetime(2262, 4, 11, 23, 47, 16, 854775), 9_223_372_036_854_775_000),
    ],
    ids=repr,
)
def test_datetimes_convert_to_utc_nanoseconds(ledger, when, ns):
    assert ledger.get(ledger.append(action="a", timestamp_ns=when))["timestamp_ns"] == ns


def test_pandas_and_numpy_timestamps_keep_their_nanoseconds(ledger):
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    for when in (pd.Timestamp(BASE_NS + 789), pd.Timestamp(BASE_NS + 789, tz="UTC"),
                 np.datetime64(BASE_NS + 789, "ns")):
        got = ledger.get(ledger.append(action="a", timestamp_ns=when))
        assert got["timestamp_ns"] == BASE_NS + 789, repr(when)


@pytest.mark.parametrize(
    "when",
    [dt.datetime(1969, 12, 31, 23, 59, 59), dt.datetime(2262, 4, 12),
     dt.datetime(1970, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))],
    ids=repr,
)
def test_datetimes_outside_the_ns_range_are_rejected(ledger, when):
    with pytest.raises(bastion.InvalidArgumentError, match="'timestamp_ns' is out of range"):
        ledger.append(action="a", timestamp_ns=when)


@pytest.mark.parametrize("when", [True, 1.5, "2026-11-21", dt.date(2026, 11, 21)], ids=repr)
def test_a_timestamp_of_another_type_is_a_type_error(ledger, when):
    with pytest.raises(TypeError, match="'timestamp_ns' must be int .* or datetime"):
        ledger.append(action="a", timestamp_ns=when)


# --- exact cost ---------------------------------------------------------------

def test_record_dicts_hold_the_cost_as_an_exact_decimal(ledger, make_record):
    seqs = ledger.append_many([{"action": "a", "cost_usd": c}
                               for c in ("0.000000001", 0.1, 3, Decimal("12.5"))])
    want = [Decimal("0.000000001"), Decimal("0.1"), Decimal(3), Decimal("12.5")]
    result = ledger.query(since=0, limit=None, newest_first=False)
    for got in ([ledger.get(s)["cost_usd"] for s in seqs],
                [r["cost_usd"] for r in result],          # iteration
                [result[i]["cost_usd"] for i in range(len(result))],
                [r["cost_usd"] for r in result[:]]):      # a slice
        assert got == want
        assert all(type(c) is Decimal for c in got)
    assert sum(r["cost_usd"] for r in result) == Decimal("15.600000001")
    # A cost read back is accepted again as it is.
    assert ledger.get(ledger.append(action="a", cost_usd=want[0]))["cost_usd"] == want[0]


def test_iterating_a_query_result_yields_each_record_once(ledger, make_record):
    seqs = ledger.append_many([make_record(i) for i in range(5)])
    result = ledger.query(since=0, limit=None, newest_first=False)
    it = iter(result)
    assert iter(it) is it
    assert [r["seq"] for r in it] == list(seqs)
    assert list(it) == []  # exhausted
    assert [r["seq"] for r in result] == list(seqs)  # a fresh iterator starts over
    del result
    assert [r["seq"] for r in iter(ledger.query(since=0, limit=None))] == list(seqs)[::-1]


@pytest.mark.parametrize(
    ("cost", "nanos"),
    [
        ("0.0031", 3_100_000),
        (Decimal("0.0031"), 3_100_000),
        (0.0031, 3_100_000),
        (3, 3_000_000_000),
        (0, 0),
        ("12.5", 12_500_000_000),
        ("0.000000001", 1),
        (Decimal("0.000000001"), 1),  # str() of this Decimal is '1E-9'
        (Decimal("1E+2"), 100_000_000_000),
        (Decimal("0.0000000010"), 1),  # trailing zeros past 9 decimals are fine
        ("123456.123456789", 123_456_123_456_789),
        (0.1 + 0.2, 300_000_000),  # a float is rounded to the nearest 1e-9
        ("1e-3", 1_000_000),  # exponent forms read as budgets and prices read them
    ],
    ids=repr,
)
def test_cost_is_stored_exactly(ledger, cost, nanos):
    seq = ledger.append(action="model_call", cost_usd=cost)
    assert stored_cost_nanos(ledger, seq) == nanos
    assert ledger.get(seq)["cost_usd"] == Decimal(nanos) / 10**9


@pytest.mark.parametrize(
    "cost",
    ["0.0000000001", Decimal("0.0000000001"), Decimal("1E-10"), "1.1234567891"],
    ids=repr,
)
def test_cost_more_precise_than_a_nano_dollar_is_rejected(ledger, cost):
    with pytest.raises(bastion.InvalidArgumentError, match="cost_usd.*more precise than 1e-9"):
        ledger.append(action="model_call", cost_usd=cost)
    assert ledger.head()["seq"] == 0


@pytest.mark.parametrize(
    "cost",
    ["-0.5", -1, -0.01, float("nan"), float("inf"), "", "1.2.3", "$5",
     Decimal("-1"), Decimal("NaN"), Decimal("Infinity"), Decimal("1E+30"), 10**30],
    ids=repr,
)
def test_bad_cost_values_are_rejected(ledger, cost):
    with pytest.raises(bastion.InvalidArgumentError, match="cost_usd"):
        ledger.append(action="model_call", cost_usd=cost)
    assert ledger.head()["seq"] == 0


@pytest.mark.parametrize("cost", [True, [1], b"0.1", object()], ids=repr)
def test_cost_of_a_wrong_type_is_a_type_error(ledger, cost):
    with pytest.raises(TypeError, match="cost_usd"):
        ledger.append(action="model_call", cost_usd=cost)


# --- durability ---------------------------------------------------------------

@pytest.mark.parametrize("durability", ["sync", "group", "async"])
def test_durability_per_append(ledger, make_record, durability):
    recs = [make_record(i) for i in range(20)]
    seqs = [ledger.append(r, durability=durability) for r in recs]
    seqs += list(ledger.append_many(recs, durability=durability))
    assert seqs == list(range(1, 41))
    ledger.flush()  # async appends return once queued; flush waits for the write
    for seq, rec in zip(seqs, recs + recs):
        assert_record_matches(ledger.get(seq), rec)
    assert ledger.verify().ok


@pytest.mark.parametrize("durability", ["sync", "group"])
def test_sync_and_group_appends_are_readable_when_append_returns(ledger, durability):
    for i in range(50):
        seq = ledger.append(action="a", request_id=f"r{i}", durability=durability)
        assert ledger.get(seq)["request_id"] == f"r{i}"
        assert ledger.head()["seq"] == seq


@pytest.mark.parametrize("durability", ["sync", "group", "async"])
def test_durability_as_the_ledger_default(ledger_path, durability):
    with bastion.Ledger.open(ledger_path, durability=durability) as led:
        seqs = [led.append(action="a", step_index=i) for i in range(30)]
        assert seqs == list(range(1, 31))
    with bastion.Ledger.open(ledger_path, reader=True) as reader:
        assert reader.head()["seq"] == 30  # close() drained the queue
        assert [reader.get(s)["step_index"] for s in seqs] == list(range(30))
        assert reader.verify().ok


@pytest.mark.parametrize("bad", ["fast", "SYNC", "", "none"])
def test_bad_durability_value(ledger_path, bad):
    with pytest.raises(bastion.InvalidArgumentError, match=f"durability '{bad}'"):
        bastion.Ledger.open(ledger_path, durability=bad)
    with bastion.Ledger.open(ledger_path) as led:
        with pytest.raises(bastion.InvalidArgumentError, match="durability"):
            led.append(action="a", durability=bad)
        with pytest.raises(bastion.InvalidArgumentError, match="durability"):
            led.append_many([{"action": "a"}], durability=bad)
        with pytest.raises(TypeError, match="durability"):
            led.append(action="a", durability=1)
        assert led.head()["seq"] == 0


def test_bad_open_options(ledger_path):
    with pytest.raises(bastion.InvalidArgumentError, match="group_sync_interval_ms"):
        bastion.Ledger.open(ledger_path, group_sync_interval_ms=0)
    with pytest.raises(bastion.InvalidArgumentError, match="queue_capacity"):
        bastion.Ledger.open(ledger_path, queue_capacity=0)


def test_a_tiny_queue_applies_backpressure_without_losing_records(ledger_path):
    with bastion.Ledger.open(ledger_path, queue_capacity=2, durability="async") as led:
        seqs = [led.append(action="a", step_index=i) for i in range(300)]
        seqs += led.append_many([{"action": "b"}] * 10)  # larger than the queue
    assert seqs == list(range(1, 311))
    with bastion.Ledger.open(ledger_path, reader=True) as reader:
        assert reader.head()["seq"] == 310
        assert reader.verify().ok


# --- sequence numbers, head, chain --------------------------------------------

def test_sequence_numbers_are_consecutive_and_chained(ledger, make_record):
    seqs = []
    for i in range(25):
        if i % 5 == 4:
            seqs += ledger.append_many([make_record(i), make_record(i + 100)])
        else:
            seqs.append(ledger.append(make_record(i)))
    assert seqs == list(range(1, len(seqs) + 1))
    prev = ZERO_HASH
    for seq in seqs:
        got = ledger.get(seq)
        assert got["seq"] == seq
        assert got["prev_hash"] == prev
        prev = got["hash"]
    assert len({ledger.get(s)["hash"] for s in seqs}) == len(seqs)


def test_head(ledger, ledger_path):
    assert ledger.head() == {"seq": 0, "hash": ZERO_HASH}
    seq = ledger.append(action="a")
    assert ledger.head() == {"seq": seq, "hash": ledger.get(seq)["hash"]}
    ledger.append_many([{"action": "b"}] * 3)
    head = ledger.head()
    assert head == {"seq": 4, "hash": ledger.get(4)["hash"]}
    ledger.close()
    with bastion.Ledger.open(ledger_path) as again:  # the head survives reopening
        assert again.head() == head
        assert again.append(action="c") == 5
        assert again.get(5)["prev_hash"] == head["hash"]


def test_identical_records_get_distinct_hashes(ledger):
    seqs = ledger.append_many([{"action": "a", "user_id": "u"}] * 3)
    assert len({ledger.get(s)["hash"] for s in seqs}) == 3


# --- closing ------------------------------------------------------------------

def test_context_manager_closes(ledger_path):
    with bastion.Ledger.open(ledger_path) as led:
        assert not led.closed and not led.read_only
        assert led.path == ledger_path
        led.append(action="a", durability="async")
    assert led.closed
    assert "closed" in repr(led)
    # The write lock is released and the queued record was written.
    with bastion.Ledger.open(ledger_path) as again:
        assert again.head()["seq"] == 1


def test_context_manager_closes_on_an_exception(ledger_path):
    with pytest.raises(RuntimeError, match="boom"):
        with bastion.Ledger.open(ledger_path) as led:
            led.append(action="a")
            raise RuntimeError("boom")
    assert led.closed
    with bastion.Ledger.open(ledger_path) as again:
        assert again.head()["seq"] == 1


@pytest.mark.parametrize(
    "operation",
    [
        lambda led: led.append(action="a"),
        lambda led: led.append({"action": "a"}),
        lambda led: led.append_many([{"action": "a"}]),
        lambda led: led.get(1),
        lambda led: led.query(),
        lambda led: led.verify(),
        lambda led: led.head(),
        lambda led: led.stats(),
        lambda led: led.flush(),
        lambda led: led.refresh(),
    ],
    ids=["append", "append-dict", "append_many", "get", "query", "verify", "head", "stats",
         "flush", "refresh"],
)
@pytest.mark.parametrize("reader", [False, True], ids=["writer", "reader"])
def test_operations_on_a_closed_ledger_raise_state_error(ledger_path, operation, reader):
    with bastion.Ledger.open(ledger_path) as led:
        led.append(action="a")
    led = bastion.Ledger.open(ledger_path, reader=reader)
    led.close()
    with pytest.raises(bastion.StateError, match="closed"):
        operation(led)
    led.close()  # closing again is harmless
    assert led.closed


def test_a_reader_cannot_append(ledger_path):
    with bastion.Ledger.open(ledger_path) as led:
        led.append(action="a")
    with bastion.Ledger.open(ledger_path, reader=True) as reader:
        assert reader.read_only and "reader" in repr(reader)
        with pytest.raises(bastion.StateError, match="read-only"):
            reader.append(action="a")
        with pytest.raises(bastion.StateError, match="read-only"):
            reader.append_many([{"action": "a"}])
        assert reader.head()["seq"] == 1


# --- concurrency --------------------------------------------------------------

def test_concurrent_appends_from_eight_threads(ledger):
    threads_n, per_thread = 8, 250
    results: dict[int, list[int]] = {}
    barrier = threading.Barrier(threads_n)

    def worker(t: int) -> None:
        barrier.wait()
        seqs = []
        for i in range(per_thread):
            if i % 50 == 49:
                seqs += ledger.append_many(
                    [realistic_record(i, agent_id=f"thread-{t}", step_index=i)])
            else:
                seqs.append(ledger.append(realistic_record(i, agent_id=f"thread-{t}",
                                                            step_index=i)))
        results[t] = seqs

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == threads_n
    all_seqs = sorted(s for seqs in results.values() for s in seqs)
    assert all_seqs == list(range(1, threads_n * per_thread + 1))
    for t, seqs in results.items():
        assert seqs == sorted(seqs), "one thread's appends are chained in its order"
        for i in (0, 123, per_thread - 1):
            got = ledger.get(seqs[i])
            assert (got["agent_id"], got["step_index"]) == (f"thread-{t}", i)
    assert ledger.head()["seq"] == threads_n * per_thread
    report = ledger.verify()
    assert report.ok, report
    assert report.records_checked == threads_n * per_thread
    for t in range(threads_n):
        assert len(ledger.query(agent_id=f"thread-{t}", limit=None)) == per_thread


@pytest.mark.soak
def test_soak_many_threads_many_records(ledger):
    threads_n, per_thread = 16, 20_000
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(0, per_thread, 100):
                ledger.append_many(
                    [realistic_record(i + k, agent_id=f"soak-{t}") for k in range(100)],
                    durability=("sync", "group", "async")[t % 3])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    ledger.flush()
    assert ledger.head()["seq"] == threads_n * per_thread
    assert ledger.verify().ok
    df = ledger.query(limit=None).to_pandas()
    assert len(df) == threads_n * per_thread
    assert df["seq"].is_unique
