"""Damaged ledger files: a writer open, a reader open, verify and the command
line fail with a message that says what is wrong (never an "ok" ledger with
fewer records), and a damaged write-ahead log is repaired only on request,
with the loss recorded in the chain."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import bastion
from helpers import raw_store, realistic_record
from test_ledger_processes import bastion_cli

N = 1000


def data_files(path: str) -> dict[str, bytes]:
    """Name -> content of every file RocksDB keeps data in (not its info LOG)."""
    return {
        p.name: p.read_bytes()
        for p in Path(path).iterdir()
        if p.is_file() and not p.name.startswith("LOG") and p.name != "LOCK"
    }


def flip_byte(file: Path, where: float) -> None:
    data = bytearray(file.read_bytes())
    data[int(len(data) * where)] ^= 0x5A
    file.write_bytes(bytes(data))


@pytest.fixture
def damaged_wal(ledger_path: str) -> tuple[str, str]:
    """1,000 records appended in sync mode and closed (they are all in the
    write-ahead log), then one byte flipped at 30 % of the log."""
    with bastion.Ledger.open(ledger_path) as led:
        for start in range(0, N, 10):
            led.append_many([realistic_record(i) for i in range(start, start + 10)],
                            durability="sync")
    (wal,) = Path(ledger_path).glob("*.log")
    flip_byte(wal, 0.3)
    return ledger_path, wal.name


def test_a_damaged_wal_refuses_writer_and_reader_and_changes_nothing(damaged_wal):
    path, wal = damaged_wal
    before = data_files(path)
    with pytest.raises(bastion.CorruptionError) as caught:
        bastion.Ledger.open(path)
    message = str(caught.value)
    assert f"write-ahead log {wal} is damaged" in message
    last = int(re.search(r"the last intact record is (\d+)", message).group(1))
    assert 200 < last < 400, message  # the flip is at 30 % of the log
    assert f"records {last + 1}..{N} are lost" in message
    assert "Nothing was changed" in message and "--accept-loss" in message
    assert data_files(path) == before

    with pytest.raises(bastion.CorruptionError, match=f"the last intact record is {last}\\."):
        bastion.Ledger.open(path, reader=True)
    out = bastion_cli("ledger", "verify", path)
    assert out.returncode == 2
    assert f"write-ahead log {wal} is damaged" in out.stderr
    assert data_files(path) == before


def test_repair_needs_consent_then_keeps_the_intact_records_and_records_the_loss(damaged_wal):
    path, wal = damaged_wal
    damaged = (Path(path) / wal).read_bytes()
    before = data_files(path)
    with pytest.raises(bastion.StateError, match="accept_loss"):
        bastion.Ledger.repair(path)
    refused = bastion_cli("ledger", "repair", path)
    assert refused.returncode == 2
    assert "--accept-loss" in refused.stderr and f"{wal} is damaged" in refused.stderr
    assert data_files(path) == before

    out = bastion_cli("ledger", "repair", path, "--accept-loss", "--by", "oncall",
                      "--reason", "bad sector", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    last = report["last_intact_seq"]
    assert report["repaired"] is True
    assert 200 < last < 400
    assert report["lost_through_seq"] == N
    assert report["repair_seq"] == last + 1
    assert report["damaged_files"] == [wal]
    quarantine = Path(report["quarantine_path"])
    assert quarantine.parent == Path(path) / "quarantine"
    assert (quarantine / wal).read_bytes() == damaged

    verify = bastion_cli("ledger", "verify", path, "--json")
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["records_checked"] == last + 1
    with bastion.Ledger.open(path, reader=True) as reader:
        assert reader.get(last)["request_id"] == f"req-{last - 1}"
        (record,) = reader.query(action="repair")
    assert record["seq"] == last + 1
    assert record["agent_id"] == "oncall"
    assert record["attributes"]["last_intact_seq"] == str(last)
    assert record["attributes"]["lost_from_seq"] == str(last + 1)
    assert record["attributes"]["lost_through_seq"] == str(N)
    assert record["attributes"]["damaged_files"] == wal
    assert record["attributes"]["reason"] == "bad sector"
    (reason,) = record["reasons"]
    assert f"records {last + 1}..{N} are lost" in reason["message"]
    assert "by oncall" in reason["message"]

    # Nothing is left to repair; the ledger appends after the repair record.
    again = bastion.Ledger.repair(path, accept_loss=True)
    assert not again and again.repair_seq is None
    with bastion.Ledger.open(path) as led:
        assert led.append(action="model_call", durability="sync") == last + 2


def with_tables(ledger_path: str) -> str:
    """A ledger with records in table files (reopening flushes the log) and, after
    them, in the write-ahead log: every kind of file exists."""
    with bastion.Ledger.open(ledger_path) as led:
        led.append_many([realistic_record(i) for i in range(40)], durability="sync")
    with bastion.Ledger.open(ledger_path) as led:
        led.append_many([realistic_record(i) for i in range(40, 50)], durability="sync")
    assert list(Path(ledger_path).glob("*.sst"))
    assert all(log.stat().st_size > 0 for log in Path(ledger_path).glob("*.log"))
    return ledger_path


def expect_failure(path: str, what: str) -> None:
    """Writer open, reader open (or its verify) and the CLI's verify all fail."""
    with pytest.raises(bastion.Error) as caught:
        bastion.Ledger.open(path)
    assert path in str(caught.value)
    try:
        reader = bastion.Ledger.open(path, reader=True)
    except bastion.Error as e:
        assert path in str(e)
    else:
        with reader:
            report = reader.verify()
        assert not report.ok, f"{what}: {report.message}"
    out = bastion_cli("ledger", "verify", path)
    assert out.returncode != 0, f"{what}: {out.stdout}"
    assert not out.stdout.startswith("OK"), out.stdout


def test_deleted_tables_are_an_error_not_an_empty_ledger(ledger_path):
    path = with_tables(ledger_path)
    for table in Path(path).glob("*.sst"):
        table.unlink()
    expect_failure(path, "tables deleted")
    with pytest.raises(bastion.CorruptionError, match="no format marker"):
        bastion.Ledger.open(path, reader=True)


@pytest.mark.parametrize("pattern", ["*.sst", "*.log", "MANIFEST-*", "CURRENT"])
def test_a_flipped_byte_in_every_file_of_a_kind_is_reported(ledger_path, pattern):
    path = with_tables(ledger_path)
    files = list(Path(path).glob(pattern))
    assert files
    for file in files:
        flip_byte(file, 0.5)
    expect_failure(path, f"{pattern} damaged")


@pytest.mark.parametrize("marker", [None, b"", b"\xff\xfegarbage", b"bastion-ledger/1\n"])
def test_a_missing_or_garbled_format_marker_is_reported(ledger_path, marker):
    path = with_tables(ledger_path)
    with raw_store(path) as cf:
        if marker is None:
            del cf["meta"][b"format"]
        else:
            cf["meta"][b"format"] = marker
    expect_failure(path, "format marker")
    with pytest.raises(bastion.CorruptionError, match="format marker"):
        bastion.Ledger.open(path, reader=True)


def test_a_missing_head_fails_verify(ledger_path):
    path = with_tables(ledger_path)
    with raw_store(path) as cf:
        del cf["meta"][b"head"]
    expect_failure(path, "head deleted")
    with bastion.Ledger.open(path, reader=True) as reader:
        report = reader.verify()
    assert report.problem == "head_mismatch"
    assert report.message == "the chain head (meta key 'head') is missing; the last stored record is 50"
    out = bastion_cli("ledger", "verify", path)
    assert out.returncode == 1 and "FAILED" in out.stdout


# --- filter values that can match nothing ------------------------------------------------

EFFECTS = "allow, modify, require_approval, deny"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"effect": "denied"}, f"query filter 'effect' is 'denied'; expected one of {EFFECTS}"),
        ({"effect": "Deny"}, f"query filter 'effect' is 'Deny'; expected one of {EFFECTS}"),
        ({"risk_level": "severe"},
         "query filter 'risk_level' is 'severe'; expected one of low, medium, high, critical"),
        ({"action": ""}, "query filter 'action' is empty; leave it unset to match every record"),
        ({"since": 20, "until": 10}, "query filter 'since' (20 ns) is after 'until' (10 ns)"),
        ({"tool": "t" * 1025}, "query filter 'tool' is 1025 bytes; a stored value has at most 1024"),
    ],
)
def test_query_filter_values_that_match_nothing_are_errors(ledger, kwargs, message):
    ledger.append(action="model_call", effect="deny", risk_level="high")
    with pytest.raises(bastion.InvalidArgumentError) as caught:
        ledger.query(**kwargs)
    assert message in str(caught.value)


def test_valid_filter_values_are_accepted(ledger):
    ledger.append(action="model_call", effect="deny", risk_level="high")
    assert [r["seq"] for r in ledger.query(effect="deny", risk_level="high")] == [1]
    for effect in EFFECTS.split(", "):
        ledger.query(effect=effect)
    for risk in ("low", "medium", "high", "critical"):
        ledger.query(risk_level=risk)


def test_a_reversed_verify_range_is_an_error(ledger):
    ledger.append_many([{"action": "model_call"}] * 6)
    with pytest.raises(bastion.InvalidArgumentError,
                       match="verify: from_seq 5 is after to_seq 2"):
        ledger.verify(from_seq=5, to_seq=2)
    assert ledger.verify(from_seq=2, to_seq=5).records_checked == 4


def test_cli_rejects_filter_values_that_match_nothing(ledger_path):
    with bastion.Ledger.open(ledger_path) as led:
        led.append(action="model_call", effect="deny")
    out = bastion_cli("ledger", "query", ledger_path, "--effect", "denied")
    assert out.returncode == 2
    assert out.stderr.startswith("bastion: error: ")
    assert f"query filter 'effect' is 'denied'; expected one of {EFFECTS}" in out.stderr
    out = bastion_cli("ledger", "query", ledger_path, "--since", "2026-11-22T00:00:00Z",
                      "--until", "2026-11-21T00:00:00Z")
    assert out.returncode == 2 and "is after 'until'" in out.stderr
    out = bastion_cli("ledger", "verify", ledger_path, "--from", "5", "--to", "2")
    assert out.returncode == 2 and "from_seq 5 is after to_seq 2" in out.stderr
    ok = bastion_cli("ledger", "query", ledger_path, "--effect", "deny", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["effect"] == "deny"
