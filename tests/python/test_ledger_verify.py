"""verify(): the report, ranges, progress and cancellation, and tampering
with the stored bytes (through rocksdict, below the ledger's API)."""

from __future__ import annotations

import pytest

import bastion
from helpers import raw_store, realistic_record, seq_key, time_index_key

N = 40


def build(path: str, n: int = N) -> None:
    with bastion.Ledger.open(path) as led:
        led.append_many([realistic_record(i) for i in range(n)])


def verify_reader(path: str, **kwargs) -> bastion.VerifyReport:
    with bastion.Ledger.open(path, reader=True) as reader:
        return reader.verify(**kwargs)


def assert_ok(report: bastion.VerifyReport, first: int, last: int) -> None:
    assert report.ok, report
    assert bool(report) is True
    assert report.problem is None and report.bad_seq is None and not report.cancelled
    assert (report.from_seq, report.to_seq) == (first, last)
    assert report.records_checked == max(0, last - first + 1)


def assert_failed(report: bastion.VerifyReport, problem: str, bad_seq: int) -> None:
    assert not report.ok, report
    assert bool(report) is False
    assert (report.problem, report.bad_seq) == (problem, bad_seq), report
    assert not report.cancelled
    assert str(bad_seq) in report.message
    assert repr(report).startswith(f"<VerifyReport FAILED at record {bad_seq}: {problem}: ")


# --- an intact ledger ----------------------------------------------------------------

def test_verify_a_fresh_ledger(ledger):
    report = ledger.verify()
    assert_ok(report, 1, 0)
    assert report.message == "no records in range"
    ledger.append_many([realistic_record(i) for i in range(N)])
    report = ledger.verify()
    assert_ok(report, 1, N)
    assert report.bytes_checked > N * 100
    assert report.message == f"records 1..{N} verified"
    assert repr(report) == f"<VerifyReport ok: {N} records (1..{N})>"


def test_verify_on_a_reader_and_with_any_thread_count(ledger, ledger_path):
    ledger.append_many([realistic_record(i) for i in range(N)])
    ledger.flush()
    with bastion.Ledger.open(ledger_path, reader=True) as reader:
        for threads in (0, 1, 3):
            assert_ok(reader.verify(threads=threads), 1, N)


@pytest.mark.parametrize(
    ("from_seq", "to_seq", "first", "last"),
    [(None, None, 1, N), (10, 20, 10, 20), (1, 1, 1, 1), (N, None, N, N), (None, 5, 1, 5),
     (0, 3, 1, 3), (30, 10**9, 30, N)],
)
@pytest.mark.parametrize("check_indexes", [True, False])
def test_verify_ranges(ledger, from_seq, to_seq, first, last, check_indexes):
    ledger.append_many([realistic_record(i) for i in range(N)])
    report = ledger.verify(from_seq=from_seq, to_seq=to_seq, check_indexes=check_indexes)
    assert_ok(report, first, last)


@pytest.mark.parametrize("check_indexes", [True, False])
def test_a_reversed_range_is_an_error(ledger, check_indexes):
    ledger.append_many([realistic_record(i) for i in range(N)])
    with pytest.raises(bastion.InvalidArgumentError,
                       match=r"verify: from_seq 20 is after to_seq 10; the range is inclusive"):
        ledger.verify(from_seq=20, to_seq=10, check_indexes=check_indexes)


@pytest.mark.parametrize("from_seq", [11, 20])
def test_verify_a_range_past_the_head_checks_nothing(ledger, from_seq):
    ledger.append_many([{"action": "a"}] * 10)
    report = ledger.verify(from_seq=from_seq)
    assert report.ok, report
    assert report.records_checked == 0
    assert ledger.verify(from_seq=from_seq, to_seq=30).ok


# --- progress and cancellation ---------------------------------------------------------

def test_progress_receives_done_and_total(ledger):
    ledger.append_many([{"action": "a", "run_id": f"r{i % 3}"} for i in range(5000)])
    calls: list[tuple[int, int]] = []
    report = ledger.verify(progress=lambda done, total: calls.append((done, total)))
    assert report.ok
    assert len(calls) >= 3
    totals = {total for _, total in calls}
    assert len(totals) == 1
    (total,) = totals
    assert total >= 5000  # records, plus the index pass when indexes are checked
    dones = [done for done, _ in calls]
    assert dones == sorted(dones) and 0 <= dones[0] and dones[-1] == total
    # Without the index pass the total is the number of records.
    calls.clear()
    assert ledger.verify(check_indexes=False, progress=lambda d, t: calls.append((d, t))).ok
    assert calls[-1] == (5000, 5000) and all(t == 5000 for _, t in calls)


@pytest.mark.parametrize("answer", [None, True, 1, "yes"])
def test_progress_returning_truthy_or_none_continues(ledger, answer):
    ledger.append_many([{"action": "a"}] * 3000)
    assert ledger.verify(progress=lambda d, t: answer).ok


def test_progress_returning_something_without_a_truth_value_raises(ledger):
    ledger.append_many([{"action": "a"}] * 3000)

    class NoTruth:
        def __bool__(self):
            raise ValueError("no truth value")

    with pytest.raises(ValueError, match="no truth value"):
        ledger.verify(progress=lambda d, t: NoTruth())
    assert ledger.verify().ok


@pytest.mark.parametrize("answer", [False, 0, "", []])
def test_progress_returning_false_cancels(ledger, answer):
    ledger.append_many([{"action": "a"}] * 5000)
    calls = []

    def progress(done, total):
        calls.append(done)
        return answer

    report = ledger.verify(progress=progress)
    assert report.cancelled
    assert not report.ok and bool(report) is False
    assert report.problem is None and report.bad_seq is None
    assert report.message == "verification cancelled"
    assert len(calls) == 1, "no callback after the one that cancelled"
    assert "FAILED" not in repr(report) and "cancelled" in repr(report)


def test_an_exception_in_the_progress_callback_propagates(ledger):
    ledger.append_many([{"action": "a"}] * 5000)

    class Stop(Exception):
        pass

    calls = []

    def progress(done, total):
        calls.append(done)
        raise Stop(f"stopped at {done} of {total}")

    with pytest.raises(Stop, match=r"stopped at \d+ of \d+"):
        ledger.verify(progress=progress)
    assert len(calls) == 1, "no callback after the one that raised"
    # The ledger is still usable afterwards.
    assert ledger.append(action="b") == 5001
    assert ledger.verify().ok


def test_an_exception_on_the_final_progress_call_propagates(ledger):
    ledger.append(action="a")

    def progress(done, total):
        if done == total:
            raise ValueError("at the end")

    with pytest.raises(ValueError, match="at the end"):
        ledger.verify(progress=progress)


# --- tampering -------------------------------------------------------------------------

@pytest.fixture
def closed_ledger(ledger_path) -> str:
    build(ledger_path)
    return ledger_path


def test_rocksdict_sees_the_ledger_and_leaves_it_intact(closed_ledger):
    with raw_store(closed_ledger) as cf:
        keys = list(cf["records"].keys())
        assert keys == [seq_key(s) for s in range(1, N + 1)]
        assert cf["meta"][b"format"] == b"bastion-ledger/2"
        value = cf["records"][seq_key(7)]
        assert value[0] == 1 and int.from_bytes(value[2:10], "little") == 7
    # Opening it with rocksdict changes nothing Bastion can see.
    assert_ok(verify_reader(closed_ledger), 1, N)
    with bastion.Ledger.open(closed_ledger) as led:
        assert led.head()["seq"] == N
        assert led.append(action="after") == N + 1
        assert_ok(led.verify(), 1, N + 1)


@pytest.mark.parametrize(
    ("offset", "problem"),
    [(100, "hash_mismatch"),   # inside the public body
     (-5, "hash_mismatch"),    # inside the personal-data section (user_id, summaries)
     (50, "hash_mismatch"),    # the stored chain hash itself
     (20, "broken_link")],     # the previous record's hash
)
def test_a_flipped_byte_is_found(closed_ledger, offset, problem):
    bad = 17
    with raw_store(closed_ledger) as cf:
        value = bytearray(cf["records"][seq_key(bad)])
        value[offset] ^= 0x01
        cf["records"][seq_key(bad)] = bytes(value)
    report = verify_reader(closed_ledger)
    assert_failed(report, problem, bad)
    if problem == "hash_mismatch":
        assert "does not match its chain hash" in report.message
    # The records before it still verify; a range after it links to a bad hash.
    assert_ok(verify_reader(closed_ledger, to_seq=bad - 1), 1, bad - 1)
    assert not verify_reader(closed_ledger, from_seq=bad).ok


def test_a_flipped_byte_is_found_without_the_index_check(closed_ledger):
    with raw_store(closed_ledger) as cf:
        value = bytearray(cf["records"][seq_key(3)])
        value[90] ^= 0x40
        cf["records"][seq_key(3)] = bytes(value)
    assert_failed(verify_reader(closed_ledger, check_indexes=False), "hash_mismatch", 3)


def test_a_deleted_record_is_a_gap(closed_ledger):
    with raw_store(closed_ledger) as cf:
        del cf["records"][seq_key(12)]
    report = verify_reader(closed_ledger)
    assert_failed(report, "gap", 12)
    assert "record 12 is missing" in report.message
    assert_ok(verify_reader(closed_ledger, to_seq=11), 1, 11)
    assert_failed(verify_reader(closed_ledger, from_seq=13), "gap", 12)
    with bastion.Ledger.open(closed_ledger, reader=True) as reader:
        with pytest.raises(bastion.NotFoundError):
            reader.get(12)
        assert reader.get(13)["seq"] == 13


def test_a_deleted_last_record_is_truncation(closed_ledger):
    with raw_store(closed_ledger) as cf:
        del cf["records"][seq_key(N)]
    report = verify_reader(closed_ledger)
    assert_failed(report, "truncated", N)
    assert f"the chain head names record {N}" in report.message
    assert_ok(verify_reader(closed_ledger, to_seq=N - 1), 1, N - 1)
    # A writer refuses a ledger whose head names a missing record.
    with pytest.raises(bastion.CorruptionError, match=f"head names record {N}"):
        bastion.Ledger.open(closed_ledger)


def test_a_record_moved_to_another_sequence_number_is_misplaced(closed_ledger):
    with raw_store(closed_ledger) as cf:
        cf["records"][seq_key(9)] = cf["records"][seq_key(8)]
    assert_failed(verify_reader(closed_ledger), "misplaced", 9)


def test_a_record_added_past_the_head(closed_ledger):
    with raw_store(closed_ledger) as cf:
        cf["records"][seq_key(N + 1)] = cf["records"][seq_key(N)]
    assert_failed(verify_reader(closed_ledger), "extra_records", N + 1)


def test_a_rewritten_head(closed_ledger):
    with raw_store(closed_ledger) as cf:
        head = bytearray(cf["meta"][b"head"])
        head[-1] ^= 0xFF  # the head's hash
        cf["meta"][b"head"] = bytes(head)
    assert_failed(verify_reader(closed_ledger), "head_mismatch", N)
    with pytest.raises(bastion.CorruptionError, match="chain head does not match record"):
        bastion.Ledger.open(closed_ledger)


def test_a_deleted_index_entry(closed_ledger):
    with bastion.Ledger.open(closed_ledger, reader=True) as reader:
        when = reader.get(25)["timestamp_ns"]
    with raw_store(closed_ledger) as cf:
        key = time_index_key(when, 25)
        assert cf["index"][key] == b""
        del cf["index"][key]
    report = verify_reader(closed_ledger)
    assert_failed(report, "index_inconsistent", 25)
    assert "time index" in report.message
    # The chain itself is intact.
    assert_ok(verify_reader(closed_ledger, check_indexes=False), 1, N)


def test_a_tampered_ledger_still_opens_and_queries(closed_ledger):
    with raw_store(closed_ledger) as cf:
        value = bytearray(cf["records"][seq_key(5)])
        value[-3] ^= 0x01
        cf["records"][seq_key(5)] = bytes(value)
        del cf["records"][seq_key(30)]
    with bastion.Ledger.open(closed_ledger, reader=True) as reader:
        assert reader.head()["seq"] == N
        seqs = [r["seq"] for r in reader.query(limit=None)]
        assert 30 not in seqs and len(seqs) == N - 1
        assert_failed(reader.verify(), "hash_mismatch", 5)  # the first problem wins
        assert_failed(reader.verify(from_seq=6), "gap", 30)
