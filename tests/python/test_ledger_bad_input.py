"""Wrong input: every rejection names the field, raises the documented
exception type, and writes nothing. Also paths, locks and damaged stores."""

from __future__ import annotations

import os
import re

import pytest

import bastion
from helpers import run_python

SURROGATE = "bad \udc80 text"


@pytest.fixture
def empty_after(ledger):
    """The ledger; after the test, asserts that nothing was appended."""
    yield ledger
    assert ledger.head()["seq"] == 0, "a rejected append must write nothing"
    assert len(ledger.query(limit=None)) == 0


# (record, exception type, regex the message must match). append(record) and
# append_many([ok, record]) must both reject it.
BAD_RECORDS = [
    # wrong types -> TypeError naming the field
    ({"action": "a", "agent_id": b"planner"}, TypeError, r"field 'agent_id' must be str, got bytes"),
    ({"action": b"model_call"}, TypeError, r"field 'action' must be str"),
    ({"action": "a", "user_id": 42}, TypeError, r"field 'user_id' must be str, got int"),
    ({"action": "a", "input_tokens": True}, TypeError, r"field 'input_tokens' must be int, got bool"),
    ({"action": "a", "step_index": False}, TypeError, r"field 'step_index' must be int, got bool"),
    ({"action": "a", "output_tokens": "5"}, TypeError, r"field 'output_tokens' must be int, got str"),
    ({"action": "a", "duration_ns": 1.5}, TypeError, r"field 'duration_ns' must be int, got float"),
    ({"action": "a", "attributes": [("k", "v")]}, TypeError, r"field 'attributes' must be a dict"),
    ({"action": "a", "attributes": {"k": 1}}, TypeError, r"attributes\['k'\] must be str, got int"),
    ({"action": "a", "attributes": {"k": None}}, TypeError, r"attributes\['k'\] must be str"),
    ({"action": "a", "attributes": {1: "v"}}, TypeError, r"attributes keys must be str"),
    ({"action": "a", "reasons": "deny"}, TypeError, r"field 'reasons' must be a list"),
    ({"action": "a", "reasons": [("p",)]}, TypeError, r"reasons\[0\] must be a dict or"),
    ({"action": "a", "reasons": [("p", "m"), ("p", 2)]}, TypeError, r"reasons\[1\]\.message"),
    ({"action": "a", "timestamp_ns": "yesterday"}, TypeError, r"'timestamp_ns' must be int"),
    ({"action": "a", 7: "x"}, TypeError, r"record keys must be str"),
    # wrong values -> InvalidArgumentError naming the field
    ({"action": "a", "bogus_field": "x"}, bastion.InvalidArgumentError,
     r"unknown record field 'bogus_field'"),
    ({"action": "a", "Agent_Id": "x"}, bastion.InvalidArgumentError,
     r"unknown record field 'Agent_Id'"),
    ({"action": "a", "reasons": [{"policy_id": "p", "why": "m"}]}, bastion.InvalidArgumentError,
     r"reasons\[0\] has unknown key 'why'"),
    ({"action": "a", "agent_id": SURROGATE}, bastion.InvalidArgumentError,
     r"field 'agent_id' is not valid UTF-8"),
    ({"action": "a", "input_summary": "\ud800"}, bastion.InvalidArgumentError,
     r"field 'input_summary' is not valid UTF-8"),
    ({"action": "a", "attributes": {"k": SURROGATE}}, bastion.InvalidArgumentError,
     r"'attributes\['k'\]' is not valid UTF-8"),
    ({"action": "a", "reasons": [("p", SURROGATE)]}, bastion.InvalidArgumentError,
     r"'reasons\[0\]\.message' is not valid UTF-8"),
    ({"action": "a", "agent_id": "x" * 1025}, bastion.InvalidArgumentError,
     r"field 'agent_id' is 1025 bytes, over its limit of 1024"),
    ({"action": "a", "run_id": "é" * 513}, bastion.InvalidArgumentError,
     r"field 'run_id' is 1026 bytes, over its limit of 1024"),  # bytes, not characters
    ({"action": "a", "input_summary": "x" * (64 * 1024 + 1)}, bastion.InvalidArgumentError,
     r"field 'input_summary' is 65537 bytes, over its limit of 65536"),
    ({"action": "a", "output_summary": "x" * 100_000}, bastion.InvalidArgumentError,
     r"field 'output_summary' is 100000 bytes"),
    ({"action": "a", "input_tokens": 2**64}, bastion.InvalidArgumentError,
     r"field 'input_tokens' is out of range"),
    ({"action": "a", "reasoning_tokens": 2**63}, bastion.InvalidArgumentError,
     r"field 'reasoning_tokens' is out of range"),
    ({"action": "a", "cache_read_tokens": -1}, bastion.InvalidArgumentError,
     r"field 'cache_read_tokens' is out of range"),
    ({"action": "a", "step_index": -1}, bastion.InvalidArgumentError, r"field 'step_index'"),
    ({"action": "a", "duration_ns": -5}, bastion.InvalidArgumentError, r"field 'duration_ns'"),
    ({"action": "a", "timestamp_ns": -1}, bastion.InvalidArgumentError, r"'timestamp_ns'"),
    ({"action": "a", "effect": "maybe"}, bastion.InvalidArgumentError,
     r"field 'effect' is 'maybe'; expected one of allow, modify, require_approval, deny"),
    ({"action": "a", "attributes": {"": "v"}}, bastion.InvalidArgumentError,
     r"'attributes' has an empty key"),
    ({"action": "a", "attributes": {f"k{i}": "v" for i in range(257)}},
     bastion.InvalidArgumentError, r"field 'attributes' has 257 entries, over its limit of 256"),
    ({"action": "a", "cost_usd": "0.0000000001"}, bastion.InvalidArgumentError, r"'cost_usd'"),
    # the one required field
    ({"agent_id": "planner"}, bastion.InvalidArgumentError, r"field 'action' is required"),
    ({"action": None}, bastion.InvalidArgumentError, r"field 'action' is required"),
    ({"action": ""}, bastion.InvalidArgumentError, r"field 'action' is required"),
    ({}, bastion.InvalidArgumentError, r"field 'action' is required"),
]


def _id(case):
    record, exc, _ = case
    text = ",".join(f"{k}={v!r}"[:30] for k, v in record.items()) or "empty"
    return f"{exc.__name__}:{text}"


@pytest.mark.parametrize(("record", "exc", "message"), BAD_RECORDS, ids=map(_id, BAD_RECORDS))
def test_bad_record_is_rejected(empty_after, record, exc, message):
    with pytest.raises(exc, match=message) as info:
        empty_after.append(record)
    assert type(info.value) is exc
    if exc is bastion.InvalidArgumentError:
        assert isinstance(info.value, ValueError) and isinstance(info.value, bastion.Error)
    # The same record as keyword arguments (where the keys allow it).
    if all(isinstance(k, str) for k in record):
        with pytest.raises(exc, match=message):
            empty_after.append(**record)


@pytest.mark.parametrize(("record", "exc", "message"), BAD_RECORDS, ids=map(_id, BAD_RECORDS))
def test_bad_record_in_a_batch_names_its_index_and_appends_nothing(empty_after, record, exc,
                                                                    message):
    batch = [{"action": "ok"}, {"action": "ok", "agent_id": "a"}, record, {"action": "ok"}]
    with pytest.raises(exc) as info:
        empty_after.append_many(batch)
    # The same type and message as append() raises, prefixed with the index.
    assert type(info.value) is exc
    text = str(info.value)
    assert text.startswith("record 2 of the batch: "), text
    assert re.search(message, text), text
    assert "Traceback" not in text and "\nAt:" not in text


def test_batch_error_message_equals_the_single_append_message(empty_after):
    for record, exc, _ in BAD_RECORDS:
        with pytest.raises(exc) as single:
            empty_after.append(record)
        with pytest.raises(exc) as batch:
            empty_after.append_many([record])
        assert str(batch.value) == f"record 0 of the batch: {single.value}"


@pytest.mark.parametrize("record", [[("action", "a")], ("action", "a"), "action=a", 42],
                         ids=["list", "tuple", "str", "int"])
def test_a_record_that_is_not_a_dict(empty_after, record):
    with pytest.raises(TypeError, match="a record must be a dict"):
        empty_after.append(record)
    with pytest.raises(TypeError, match="record 1 of the batch: a record must be a dict"):
        empty_after.append_many([{"action": "ok"}, record])


def test_append_many_of_a_non_iterable(empty_after):
    with pytest.raises(TypeError):
        empty_after.append_many(42)


def test_an_error_raised_while_iterating_the_batch_propagates(empty_after):
    def records():
        yield {"action": "a"}
        raise KeyError("from the generator")

    with pytest.raises(KeyError, match="from the generator"):
        empty_after.append_many(records())


def test_the_record_parameter_is_positional_only(empty_after):
    # record=... is a field name like any other keyword, and there is no such field.
    with pytest.raises(bastion.InvalidArgumentError, match="unknown record field 'record'"):
        empty_after.append(record={"action": "a"})


def test_unknown_field_error_is_a_value_error(empty_after):
    with pytest.raises(ValueError, match="'not_a_field'"):
        empty_after.append(action="a", not_a_field=1)


# --- values at the limits are accepted and round-trip ---------------------------------

def test_limits_are_inclusive(ledger):
    rec = {
        "action": "a",
        "agent_id": "x" * 1024,
        "run_id": "é" * 512,  # 1024 bytes
        "input_summary": "y" * (64 * 1024),
        "output_summary": "€" * (64 * 1024 // 3),
        "input_tokens": 2**63 - 1,
        "attributes": {f"k{i:03d}": "v" for i in range(256)},
        "reasons": [("p", "m")] * 256,
    }
    got = ledger.get(ledger.append(rec))
    for field in ("agent_id", "run_id", "input_summary", "output_summary", "input_tokens",
                  "attributes"):
        assert got[field] == rec[field], field
    assert len(got["reasons"]) == 256


def test_nul_and_emoji_strings_round_trip(ledger):
    rec = {
        "action": "tool_call",
        "agent_id": "bot\x00with-nul",
        "user_id": "用户-😀",
        "tool": "\x00",
        "input_summary": "emoji 🚀🔥 and NUL \x00 and RTL שלום and combining é",
        "output_summary": "\U0010ffff last code point",
        "attributes": {"emoji 😀": "v\x00v", "\x00": "nul key"},
        "reasons": [("policy-😀", "message with \x00 NUL")],
    }
    seq = ledger.append(rec)
    got = ledger.get(seq)
    for field in ("agent_id", "user_id", "tool", "input_summary", "output_summary",
                  "attributes"):
        assert got[field] == rec[field], field
    assert got["reasons"] == [{"policy_id": "policy-😀", "message": "message with \x00 NUL"}]
    # The indexes compare whole values, NUL included.
    assert [r["seq"] for r in ledger.query(agent_id="bot\x00with-nul")] == [seq]
    assert len(ledger.query(agent_id="bot")) == 0
    assert [r["seq"] for r in ledger.query(user_id="用户-😀")] == [seq]
    df = ledger.query(limit=None).to_pandas()
    assert df["agent_id"].tolist() == ["bot\x00with-nul"]
    assert df["input_summary"].tolist() == [rec["input_summary"]]
    assert ledger.verify().ok


# --- query arguments --------------------------------------------------------------------

def test_bad_query_arguments(ledger):
    ledger.append(action="a", agent_id="x")
    with pytest.raises(TypeError, match="query filter 'agent_id' must be str, got bytes"):
        ledger.query(agent_id=b"x")
    with pytest.raises(TypeError, match="'since' must be int"):
        ledger.query(since="2h")
    with pytest.raises(bastion.InvalidArgumentError, match="'until'"):
        ledger.query(until=-1)
    with pytest.raises(bastion.InvalidArgumentError, match="cursor 'nonsense' is not one"):
        ledger.query(cursor="nonsense")
    with pytest.raises(TypeError, match="cursor must be str"):
        ledger.query(cursor=5)
    page = ledger.query(agent_id="x", limit=1)
    assert page.next_cursor is not None
    with pytest.raises(bastion.InvalidArgumentError, match="different filters"):
        ledger.query(since=0, limit=1, cursor=page.next_cursor)
    with pytest.raises(TypeError):
        ledger.query(limit=-1)
    with pytest.raises(TypeError):
        ledger.query("x")  # filters are keyword-only


def test_bad_verify_arguments(ledger):
    with pytest.raises(TypeError, match="progress must be callable"):
        ledger.verify(progress=5)
    with pytest.raises(TypeError):
        ledger.verify(from_seq=-1)


# --- paths, locks, damaged stores --------------------------------------------------------

def test_open_with_a_missing_parent_directory(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "ledger"
    with pytest.raises(bastion.NotFoundError, match="parent directory .* does not exist"):
        bastion.Ledger.open(str(path))
    assert not path.parent.exists()


def test_open_without_create_on_a_missing_ledger(tmp_path):
    with pytest.raises(bastion.NotFoundError, match="no ledger at"):
        bastion.Ledger.open(str(tmp_path / "ledger"), create=False)
    assert not (tmp_path / "ledger").exists()


def test_reader_on_a_missing_path(tmp_path):
    with pytest.raises(bastion.NotFoundError, match="no ledger at"):
        bastion.Ledger.open(str(tmp_path / "missing"), reader=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(bastion.NotFoundError, match="no ledger at"):
        bastion.Ledger.open(str(tmp_path / "empty"), reader=True)


def test_open_on_a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("not a ledger")
    with pytest.raises(bastion.InvalidArgumentError, match="it is a file, not a directory"):
        bastion.Ledger.open(str(path))


def test_a_second_writer_on_the_same_path_is_busy(ledger, ledger_path):
    ledger.append(action="a")
    with pytest.raises(bastion.BusyError, match="already open for writing.*reader=True"):
        bastion.Ledger.open(ledger_path)
    # The failed open did not disturb the first writer; readers are fine.
    assert ledger.append(action="b") == 2
    with bastion.Ledger.open(ledger_path, reader=True) as reader:
        assert reader.head()["seq"] == 2


def test_a_writer_in_another_process_is_busy(ledger, ledger_path):
    ledger.append(action="a")
    child = run_python(
        "import sys, bastion\n"
        "try:\n"
        "    bastion.Ledger.open(sys.argv[1])\n"
        "except bastion.BusyError as e:\n"
        "    print('busy:', e)\n",
        ledger_path,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("busy: ledger at"), child.stdout


def _write_current(ledger_path, garbage):
    with bastion.Ledger.open(ledger_path) as led:
        led.append_many([{"action": "a"}] * 5)
    with open(os.path.join(ledger_path, "CURRENT"), "wb") as f:
        f.write(garbage)


@pytest.mark.parametrize(
    "garbage", [b"this is not a manifest name\n", b"\x00\xff\xfe\x01", b""],
    ids=["text", "binary", "empty"],
)
@pytest.mark.parametrize("reader", [False, True], ids=["writer", "reader"])
def test_a_corrupted_current_file(ledger_path, garbage, reader):
    _write_current(ledger_path, garbage)
    with pytest.raises(bastion.CorruptionError) as info:
        bastion.Ledger.open(ledger_path, reader=reader)
    message = str(info.value)
    assert ledger_path in message and "CURRENT" in message, message
    assert re.search(r"CURRENT file (corrupted|does not end with newline)", message), message


def test_a_current_file_naming_a_missing_manifest(ledger_path):
    _write_current(ledger_path, b"MANIFEST-999999\n")
    with pytest.raises(bastion.StorageError, match="MANIFEST-999999: No such file") as info:
        bastion.Ledger.open(ledger_path)
    assert ledger_path in str(info.value)
    # A reader cannot tell this from a writer switching manifests: some
    # bastion.Error naming the ledger, never a crash.
    with pytest.raises(bastion.Error, match=re.escape(ledger_path)):
        bastion.Ledger.open(ledger_path, reader=True)
