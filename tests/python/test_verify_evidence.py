"""The evidence export and the auditor's standalone verify_evidence.py, run as a
separate interpreter that cannot import bastion."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bastion
from helpers import raw_store, realistic_record

NAME = "audit.example.com/ledger"
SCRIPT = Path(bastion.__file__).with_name("verify_evidence.py")
RECORDS = 24

# Runs the script as __main__ with `bastion` made unimportable.
RUNNER = ("import runpy, sys; sys.modules['bastion'] = None; script = sys.argv[1]; "
          "sys.argv = sys.argv[1:]; runpy.run_path(script, run_name='__main__')")


def reference_root(chain_hashes: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, written from the definition (recursive split)."""
    n = len(chain_hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + chain_hashes[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + reference_root(chain_hashes[:k]) +
                          reference_root(chain_hashes[k:])).digest()


def special_records() -> list[dict[str, Any]]:
    return [
        {"action": "model_call", "agent_id": "планировщик", "user_id": "用户-7",
         "input_summary": "naïve café ☕ — émoji 🧾", "output_summary": "",
         "attributes": {"a": "", "z-last": "🔒", "ключ": "значение"},
         "reasons": [{"policy_id": "", "message": ""},
                     {"policy_id": "pii", "message": "masked an e-mail ✉"}],
         "effect": "modify", "step_index": 0, "cost_usd": "0.000000001",
         "timestamp_ns": 1, "duration_ns": 1},
        {"action": "approval", "approved_by": "alice@example.com", "approval_status": "approved",
         "risk_level": "critical", "timestamp_ns": 1_795_262_400_000_000_000},
        {"action": "tool_call", "tool": "refund", "operation": "write", "resource_id": "order/9",
         "effect": "deny", "cost_usd": "12.5", "input_tokens": 2**63 - 1,
         "reasons": [{"policy_id": "refunds", "message": "refunds need a human"}]},
    ]


def make_ledger(path: str) -> list[bytes]:
    """A ledger of RECORDS records; returns their chain hashes."""
    with bastion.Ledger.open(path) as ledger:
        for i in range(RECORDS - 3):
            ledger.append(realistic_record(i))
        for rec in special_records():
            ledger.append(rec)
        ledger.flush()
        return [bytes.fromhex(ledger.get(s)["hash"]) for s in range(1, RECORDS + 1)]


@pytest.fixture
def key() -> bastion.SigningKey:
    return bastion.SigningKey.generate(NAME)


@pytest.fixture
def evidence(tmp_path: Path, key: bastion.SigningKey) -> Path:
    """An exported evidence folder whose checkpoint covers every record."""
    path = str(tmp_path / "ledger")
    hashes = make_ledger(path)
    note = key.sign_checkpoint(RECORDS, reference_root(hashes))
    return bastion.export_evidence(path, tmp_path / "evidence", checkpoint=note,
                                   verifier=key.verifier)


def audit(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """verify_evidence.py as an auditor runs it: a copy outside the package, an
    isolated interpreter (-I), a bare environment, bastion unimportable."""
    auditor = folder.parent / "auditor"
    auditor.mkdir(exist_ok=True)
    script = auditor / "verify_evidence.py"
    shutil.copyfile(folder / "verify_evidence.py", script)
    return subprocess.run([sys.executable, "-I", "-c", RUNNER, str(script), str(folder), *args],
                          capture_output=True, text=True, timeout=60, cwd=auditor,
                          env={"PATH": os.environ.get("PATH", "/usr/bin")})


def read_rows(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]


def write_rows(folder: Path, rows: list[dict[str, Any]]) -> None:
    (folder / "records.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def assert_fails(folder: Path, *needles: str) -> str:
    r = audit(folder)
    assert r.returncode == 1, (r.stdout, r.stderr)
    for needle in needles:
        assert needle in r.stderr, r.stderr
    return r.stderr


def test_the_export_holds_what_the_auditor_needs(evidence: Path) -> None:
    assert sorted(p.name for p in evidence.iterdir()) == [
        "README.txt", "checkpoint.txt", "records.jsonl", "verifier.txt", "verify_evidence.py"]
    assert (evidence / "verify_evidence.py").read_bytes() == SCRIPT.read_bytes()
    rows = read_rows(evidence)
    assert [r["seq"] for r in rows] == list(range(1, RECORDS + 1))
    assert rows[-3]["attributes"] == {"a": "", "z-last": "🔒", "ключ": "значение"}
    assert rows[-3]["cost_usd"] == "1E-9" or float(rows[-3]["cost_usd"]) == 1e-9


def test_the_auditor_accepts_intact_evidence(evidence: Path) -> None:
    r = audit(evidence)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"OK: checkpoint of {NAME}")
    assert f"signs {RECORDS} records" in r.stdout


def test_the_script_imports_no_bastion() -> None:
    import ast

    tree = ast.parse(SCRIPT.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module}
    assert modules - set(sys.stdlib_module_names) == {"cryptography", "pyarrow"}


def test_record_option_prints_the_record_and_checks_its_inclusion_proof(evidence: Path) -> None:
    r = audit(evidence, "--record", str(RECORDS - 2))
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout[:r.stdout.index("\n}\n") + 2])
    assert shown["agent_id"] == "планировщик" and "stored" not in shown
    assert f"inclusion proof of record {RECORDS - 2} in the tree of {RECORDS} records" in r.stdout
    r = audit(evidence, "--record", str(RECORDS + 1))
    assert r.returncode == 1 and f"record {RECORDS + 1}: not in the evidence" in r.stderr


def test_records_after_the_checkpoint_are_chained_but_not_signed(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    hashes = make_ledger(path)
    size = 13
    note = key.sign_checkpoint(size, reference_root(hashes[:size]))
    out = bastion.export_evidence(path, tmp_path / "ev", checkpoint=note, verifier=key.verifier)
    r = audit(out, "--record", "20")
    assert r.returncode == 0, r.stderr
    assert f"Records {size + 1}..{RECORDS} come after the checkpoint" in r.stdout
    assert "record 20 is after the checkpoint" in r.stdout
    for seq in (1, 5, 12, 13):  # every position of the tree of 13
        r = audit(out, "--record", str(seq))
        assert r.returncode == 0 and "verified against the checkpoint's root" in r.stdout


def test_an_edited_readable_field_is_named(evidence: Path) -> None:
    rows = read_rows(evidence)
    rows[4]["agent_id"] = "someone-else"
    write_rows(evidence, rows)
    assert_fails(evidence, "record 5: field 'agent_id'", "someone-else")


@pytest.mark.parametrize("field,value", [("attributes", {"a": "x"}), ("cost_usd", "13.5"),
                                         ("personal_data_erased", True), ("step_index", None),
                                         ("hash", "00" * 32)])
def test_every_kind_of_readable_field_is_compared(evidence: Path, field: str, value: Any) -> None:
    rows = read_rows(evidence)
    n = RECORDS - 1 if field in ("cost_usd",) else RECORDS - 2
    rows[n - 1][field] = value
    write_rows(evidence, rows)
    assert_fails(evidence, f"record {n}: field '{field}'")


def test_a_flipped_stored_byte_fails(evidence: Path) -> None:
    rows = read_rows(evidence)
    for offset in (0, 1, 5, 20, 50, 80, -1):
        stored = bytearray(base64.b64decode(rows[6]["stored"]))
        stored[offset] ^= 0x04
        bad = [dict(r) for r in rows]
        bad[6]["stored"] = base64.b64encode(bytes(stored)).decode()
        write_rows(evidence, bad)
        assert_fails(evidence, "record 7:")


def test_a_removed_record_fails(evidence: Path) -> None:
    rows = read_rows(evidence)
    del rows[9]
    write_rows(evidence, rows)
    assert_fails(evidence, "record 10: stored seq is 11, expected 10")


def test_records_truncated_below_the_checkpoint_fail(evidence: Path) -> None:
    write_rows(evidence, read_rows(evidence)[:RECORDS - 3])
    assert_fails(evidence, f"the checkpoint covers {RECORDS} records, the evidence holds "
                           f"{RECORDS - 3}")


def test_a_wrong_verifier_fails(evidence: Path) -> None:
    (evidence / "verifier.txt").write_text(bastion.SigningKey.generate(NAME).verifier + "\n")
    assert_fails(evidence, "checkpoint is not signed by")


def test_an_altered_checkpoint_body_fails(evidence: Path) -> None:
    note = (evidence / "checkpoint.txt").read_text()
    (evidence / "checkpoint.txt").write_text(note.replace(f"\n{RECORDS}\n", f"\n{RECORDS - 1}\n", 1))
    assert_fails(evidence, "does not verify (altered body or wrong key)")


def rechain(rows: list[dict[str, Any]], start: int) -> None:
    """Recomputes the chain hashes of rows[start:] as someone with write
    access would after editing a record (docs/ledger_format.md)."""
    prev = bytes.fromhex(rows[start - 1]["hash"]) if start else bytes(32)
    for row in rows[start:]:
        s = bytearray(base64.b64decode(row["stored"]))
        seq = struct.unpack_from("<Q", s, 2)[0]
        b = struct.unpack_from("<I", s, 74)[0]
        personal = bytes(s[82 + b:])
        digest = personal if s[1] & 1 else hashlib.sha256(b"BSTNPII1" + personal).digest()
        h = hashlib.sha256(b"BSTNLDG1" + struct.pack("<Q", seq) + prev + struct.pack("<I", b) +
                           bytes(s[78:78 + b]) + digest).digest()
        s[10:42], s[42:74] = prev, h
        row.update(stored=base64.b64encode(bytes(s)).decode(), prev_hash=prev.hex(), hash=h.hex())
        prev = h


def test_a_rewritten_history_fails_against_the_signed_root(evidence: Path) -> None:
    rows = read_rows(evidence)
    target = next(r for r in rows if r["agent_id"] == "planner")
    i = rows.index(target)
    stored = base64.b64decode(target["stored"])
    target["stored"] = base64.b64encode(stored.replace(b"planner", b"plannex", 1)).decode()
    target["agent_id"] = "plannex"
    rechain(rows, i)
    write_rows(evidence, rows)
    assert_fails(evidence, f"the Merkle root of records 1..{RECORDS} is not the checkpoint's root")


def test_an_erased_record_verifies_through_its_digest(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    hashes = make_ledger(path)
    with raw_store(path) as cf:  # erase record 4's personal data as the format says
        k = struct.pack(">Q", 4)
        s = bytearray(cf["records"][k])
        b = struct.unpack_from("<I", s, 74)[0]
        digest = hashlib.sha256(b"BSTNPII1" + bytes(s[82 + b:])).digest()
        s[1] |= 1
        cf["records"][k] = bytes(s[:78 + b]) + struct.pack("<I", 32) + digest
    with bastion.Ledger.open(path, reader=True) as ledger:
        assert ledger.get(4)["personal_data_erased"] is True
        assert ledger.get(4)["user_id"] is None
    note = key.sign_checkpoint(RECORDS, reference_root(hashes))
    out = bastion.export_evidence(path, tmp_path / "ev", checkpoint=note, verifier=key.verifier)
    r = audit(out)
    assert r.returncode == 0, r.stderr
    assert "(1 with personal data erased" in r.stdout
    rows = read_rows(out)
    rows[3]["user_id"] = "u-3"  # claiming the erased value back is caught
    write_rows(out, rows)
    assert_fails(out, "record 4: field 'user_id'")


def test_parquet_evidence_verifies(tmp_path: Path, key) -> None:
    pytest.importorskip("pyarrow")
    path = str(tmp_path / "ledger")
    hashes = make_ledger(path)
    note = key.sign_checkpoint(RECORDS, reference_root(hashes))
    out = bastion.export_evidence(path, tmp_path / "ev", checkpoint=note,
                                  verifier=key.verifier, format="parquet")
    assert (out / "records.parquet").exists() and not (out / "records.jsonl").exists()
    r = audit(out)
    assert r.returncode == 0, r.stderr


def test_export_refuses_bad_checkpoints_and_non_empty_folders(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    hashes = make_ledger(path)
    note = key.sign_checkpoint(RECORDS, reference_root(hashes))
    out = tmp_path / "ev"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(FileExistsError):
        bastion.export_evidence(path, out, checkpoint=note, verifier=key.verifier)
    bastion.export_evidence(path, out, checkpoint=note, verifier=key.verifier, overwrite=True)
    assert (out / "records.jsonl").exists()
    with pytest.raises(bastion.VerificationError):
        bastion.export_evidence(path, tmp_path / "ev2", checkpoint=note,
                                verifier=bastion.SigningKey.generate(NAME).verifier)
    assert not (tmp_path / "ev2").exists()
    too_big = key.sign_checkpoint(RECORDS + 1, reference_root(hashes))
    with pytest.raises(ValueError, match=f"covers {RECORDS + 1} records, the ledger holds"):
        bastion.export_evidence(path, tmp_path / "ev3", checkpoint=too_big, verifier=key.verifier)
    with pytest.raises(ValueError, match="format"):
        bastion.export_evidence(path, tmp_path / "ev4", checkpoint=note, verifier=key.verifier,
                                format="csv")


def test_a_checkpoint_with_crlf_line_endings_is_not_a_signed_note(evidence: Path) -> None:
    note = (evidence / "checkpoint.txt").read_bytes()
    (evidence / "checkpoint.txt").write_bytes(note.replace(b"\n", b"\r\n"))
    assert_fails(evidence, "carriage return")


def test_a_missing_file_is_a_usage_error_not_a_verdict(evidence: Path) -> None:
    (evidence / "checkpoint.txt").unlink()
    r = audit(evidence)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "cannot check the evidence" in r.stderr and "checkpoint.txt" in r.stderr


def test_export_refuses_a_ledger_with_a_missing_record(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    hashes = make_ledger(path)
    with raw_store(path) as cf:
        del cf["records"][struct.pack(">Q", 6)]
    note = key.sign_checkpoint(RECORDS, reference_root(hashes))
    with pytest.raises(bastion.CorruptionError, match="record 6 is missing or misplaced"):
        bastion.export_evidence(path, tmp_path / "ev", checkpoint=note, verifier=key.verifier)
