"""Signed checkpoints of a live ledger: taken on demand and on a schedule (Ledger
and Guard), verification against them, the evidence CLI, and erasure under them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bastion
from helpers import raw_store, realistic_record, seq_key

NAME = "audit.example.com/ledger"


@pytest.fixture
def key() -> bastion.SigningKey:
    return bastion.SigningKey.generate(NAME)


def fill(path: str, n: int, **options: object) -> None:
    with bastion.Ledger.open(path, **options) as ledger:
        for i in range(n):
            ledger.append(realistic_record(i))


def test_checkpoint_signs_the_tree_head_and_verify_accepts_it(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    fill(path, 12)
    with bastion.Ledger.open(path) as ledger:
        note = ledger.checkpoint(key)
        size, root = ledger.tree_head()
        assert ledger.checkpoints() == [(12, key.key_id, note)]
    cp = bastion.open_checkpoint(note, key.verifier)
    assert (cp.origin, cp.size, cp.root) == (NAME, size, root) == (NAME, 12, root)
    with bastion.Ledger.open(path, reader=True) as reader:
        report = reader.verify(checkpoint=note, verifier=key.verifier)
        assert report.ok, report
        # A key file works as well as a key object.
        key.save(tmp_path / "key.pem")
    with bastion.Ledger.open(path) as ledger:
        assert ledger.checkpoint(tmp_path / "key.pem") == note  # Ed25519 is deterministic


def _reseal(path: str, seq: int, old: bytes, new: bytes) -> None:
    """Rewrites record `seq` of a closed ledger (same-length text), then
    recomputes every chain hash after it and the head, as an attacker with
    write access would (docs/ledger_format.md, "Hashes")."""
    with raw_store(path) as cfs:
        records, meta = cfs["records"], cfs["meta"]
        last = struct.unpack("<Q", meta[b"head"][:8])[0]
        prev = bytes(records[seq_key(seq - 1)][42:74]) if seq > 1 else bytes(32)
        for s in range(seq, last + 1):
            value = bytearray(records[seq_key(s)])
            if s == seq:
                assert old in value
                value = bytearray(bytes(value).replace(old, new, 1))
            b = struct.unpack("<I", value[74:78])[0]
            public = bytes(value[78:78 + b])
            personal = bytes(value[82 + b:])
            digest = personal if value[1] & 1 else hashlib.sha256(b"BSTNPII1" + personal).digest()
            chain = hashlib.sha256(b"BSTNLDG1" + struct.pack("<Q", s) + prev
                                   + struct.pack("<I", b) + public + digest).digest()
            value[10:42] = prev
            value[42:74] = chain
            records[seq_key(s)] = bytes(value)
            prev = chain
        meta[b"head"] = struct.pack("<Q", last) + prev


def test_a_resealed_history_fails_against_an_earlier_checkpoint(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    with bastion.Ledger.open(path) as ledger:
        for i in range(20):
            ledger.append(realistic_record(i, agent_id="planner" if i != 14 else "approver"))
        early = ledger.checkpoint(key)        # stored in the ledger
        ledger.append(action="tool_call", agent_id="planner", effect="deny")
        kept = ledger.checkpoint(key)         # kept off the host
    _reseal(path, 15, b"approver", b"attacker")
    with bastion.Ledger.open(path, reader=True) as reader:
        assert reader.get(15)["agent_id"] == "attacker"
        plain = reader.verify(check_indexes=False)
        assert plain.ok, "the rewrite is self-consistent without an anchor"
        report = reader.verify(checkpoint=kept, verifier=key.verifier, check_indexes=False)
        assert not report.ok
        assert report.problem == "checkpoint_mismatch"
        assert report.bad_seq == 20  # the stored checkpoint of size 20 disagrees first
        assert "tree size 20" in report.message
        assert reader.verify(checkpoint=early, verifier=key.verifier,
                             check_indexes=False).problem == "checkpoint_mismatch"


def test_bad_evidence_raises_and_bad_arguments_are_named(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    fill(path, 3)
    with bastion.Ledger.open(path) as ledger:
        note = ledger.checkpoint(key)
    other = bastion.SigningKey.generate(NAME)
    with bastion.Ledger.open(path, reader=True) as reader:
        with pytest.raises(bastion.VerificationError, match="not signed by"):
            reader.verify(checkpoint=note, verifier=other.verifier)
        with pytest.raises(bastion.VerificationError):
            reader.verify(checkpoint=note.replace("\n3\n", "\n2\n"), verifier=key.verifier)
        with pytest.raises(ValueError, match="checkpoint and verifier go together"):
            reader.verify(checkpoint=note)
        with pytest.raises(ValueError):
            reader.verify(checkpoint=note, verifier="not a key")
        with pytest.raises(bastion.StateError):
            reader.checkpoint(key)
    with pytest.raises(TypeError, match="signing_key must be a bastion.SigningKey"):
        bastion.Ledger.open(path, signing_key=42)
    with pytest.raises(ValueError, match="need a signing_key"):
        bastion.Ledger.open(path, checkpoint_every=10)
    with pytest.raises(ValueError, match="reader takes no checkpoints"):
        bastion.Ledger.open(path, reader=True, signing_key=key)
    with pytest.raises(bastion.NotFoundError, match="missing.pem"):
        bastion.Ledger.open(path, signing_key=tmp_path / "missing.pem")
    with pytest.raises(TypeError, match="checkpoint_sink must be a path or a callable"):
        bastion.Ledger.open(path, signing_key=key, checkpoint_sink=3)


def test_scheduled_checkpoints_reach_a_file_and_a_callable(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    sink = tmp_path / "latest-checkpoint.txt"
    ledger = bastion.Ledger.open(path, signing_key=key, checkpoint_every=10, checkpoint_sink=sink)
    for i in range(10):
        ledger.append(realistic_record(i))
    deadline = time.monotonic() + 10
    while not sink.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bastion.open_checkpoint(sink.read_text(), key.verifier).size == 10
    for i in range(3):
        ledger.append(realistic_record(10 + i))
    ledger.close()
    assert bastion.open_checkpoint(sink.read_text(), key.verifier).size == 13  # on close
    notes: list[str] = []
    with bastion.Ledger.open(path, signing_key=key, checkpoint_interval=0.02,
                             checkpoint_sink=notes.append) as ledger:
        ledger.append(realistic_record(13))
        deadline = time.monotonic() + 10
        while not notes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert notes and bastion.open_checkpoint(notes[0], key.verifier).size == 14
    with bastion.Ledger.open(path, reader=True) as reader:
        assert [size for size, _, _ in reader.checkpoints()] == [10, 13, 14]


def test_a_sink_that_raises_fails_close_but_keeps_the_records(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")

    def sink(note: str) -> None:
        raise ConnectionError("transparency log unreachable")

    ledger = bastion.Ledger.open(path, signing_key=key, checkpoint_sink=sink)
    ledger.append(realistic_record(0))
    with pytest.raises(bastion.Error, match="transparency log unreachable"):
        ledger.close()
    with bastion.Ledger.open(path, reader=True) as reader:
        assert reader.head()["seq"] == 1
        assert [size for size, _, _ in reader.checkpoints()] == [1]  # stored before the sink


def test_a_guard_checkpoints_on_close_and_its_evidence_verifies(tmp_path: Path, key) -> None:
    key.save(tmp_path / "key.pem")
    with bastion.Guard.open(tmp_path / "guard", signing_key=tmp_path / "key.pem") as guard:
        for i in range(3):
            call = guard.begin_model("gpt-4o", f"where is order {i}?", agent_id="support",
                                     user_id=f"u-{i}")
            assert call.allowed, call.decision
            call.end(f"order {i} ships today", usage={"input_tokens": 12, "output_tokens": 5})
    ledger = tmp_path / "guard" / "ledger"
    with bastion.Ledger.open(str(ledger), reader=True) as reader:
        (size, key_id, note), = reader.checkpoints()
        assert key_id == key.key_id and size == reader.head()["seq"] >= 6
        assert reader.verify(checkpoint=note, verifier=key.verifier).ok
    out = bastion.export_evidence(ledger, tmp_path / "evidence", verifier=key.verifier)
    assert (out / "checkpoint.txt").read_text() == note  # the newest stored one
    r = subprocess.run([sys.executable, "-I", str(out / "verify_evidence.py"), str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with pytest.raises(LookupError, match="holds no checkpoint signed by"):
        bastion.export_evidence(ledger, tmp_path / "e2",
                                verifier=bastion.SigningKey.generate(NAME).verifier)
    with pytest.raises(ValueError, match="signing_key needs a ledger"):
        bastion.Guard.open(signing_key=key)


def test_erasure_keeps_every_checkpoint_and_proof_valid(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    with bastion.Ledger.open(path) as ledger:
        for i in range(9):
            ledger.append(realistic_record(i, user_id="u-42" if i % 3 == 0 else "u-7"))
        before = ledger.checkpoint(key)
        proofs = {s: ledger.inclusion_proof(s, 9) for s in range(1, 10)}
        assert ledger.erase(user_id="u-42", reason="request #12", by="dpo@example.com") == 3
        after = ledger.checkpoint(key)
    cp = bastion.open_checkpoint(before, key.verifier)
    with bastion.Ledger.open(path, reader=True) as reader:
        assert reader.get(1)["personal_data_erased"] and reader.get(1)["user_id"] is None
        for s, proof in proofs.items():
            leaf = bastion.merkle_leaf_hash(bytes.fromhex(reader.get(s)["hash"]))
            assert reader.inclusion_proof(s, 9) == proof
            assert bastion.verify_inclusion(s, 9, leaf, proof, cp.root)
        assert reader.verify(checkpoint=before, verifier=key.verifier).ok
        assert reader.verify(checkpoint=after, verifier=key.verifier).ok
        old_root = cp.root
        new = bastion.open_checkpoint(after, key.verifier)
        assert bastion.verify_consistency(9, new.size, old_root, new.root,
                                          reader.consistency_proof(9, new.size))
    out = bastion.export_evidence(path, tmp_path / "evidence", verifier=key.verifier)
    r = subprocess.run([sys.executable, "-I", str(out / "verify_evidence.py"), str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "u-42" not in (out / "records.jsonl").read_text()


def bastion_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("bastion", path=os.path.dirname(sys.executable))
    assert exe, "the bastion script is installed with the wheel"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def test_the_evidence_commands(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger")
    fill(path, 7)
    pem = tmp_path / "key.pem"
    gen = bastion_cli("keys", "generate", NAME, "--out", str(pem))
    assert gen.returncode == 0, gen.stderr
    verifier = gen.stdout.strip()
    (tmp_path / "verifier.txt").write_text(verifier + "\n")

    cp = bastion_cli("ledger", "checkpoint", path, "--key", str(pem), "--out",
                     str(tmp_path / "cp.txt"))
    assert cp.returncode == 0, cp.stderr
    assert bastion.open_checkpoint((tmp_path / "cp.txt").read_text(), verifier).size == 7

    prove = bastion_cli("ledger", "prove", path, "3", "--size", "5", "--json")
    assert prove.returncode == 0, prove.stderr
    proof = json.loads(prove.stdout)
    assert proof["verified"] and proof["tree_size"] == 5 and len(proof["proof"]) == 3
    with bastion.Ledger.open(path, reader=True) as reader:
        assert [bytes.fromhex(h) for h in proof["proof"]] == reader.inclusion_proof(3, 5)

    for v in (verifier, str(tmp_path / "verifier.txt")):
        ok = bastion_cli("ledger", "verify", path, "--checkpoint", str(tmp_path / "cp.txt"),
                         "--verifier", v)
        assert ok.returncode == 0, ok.stdout + ok.stderr
    half = bastion_cli("ledger", "verify", path, "--checkpoint", str(tmp_path / "cp.txt"))
    assert half.returncode == 2 and "go together" in half.stderr

    ev = bastion_cli("ledger", "export-evidence", path, "--out", str(tmp_path / "ev"),
                     "--verifier", verifier)
    assert ev.returncode == 0, ev.stderr
    assert "records 1..7" in ev.stdout
    audit = subprocess.run([sys.executable, "-I", str(tmp_path / "ev" / "verify_evidence.py"),
                            str(tmp_path / "ev")], capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, audit.stderr

    fill_more = bastion_cli("ledger", "export-evidence", path, "--out", str(tmp_path / "ev2"),
                            "--key", str(pem))
    assert fill_more.returncode == 0, fill_more.stderr
    none = bastion_cli("ledger", "export-evidence", path, "--out", str(tmp_path / "ev3"))
    assert none.returncode == 2 and "--verifier" in none.stderr

    _reseal(path, 1, b"planner", b"plannex")
    plain = bastion_cli("ledger", "verify", path, "--no-indexes")
    assert plain.returncode == 0, plain.stdout
    caught = bastion_cli("ledger", "verify", path, "--no-indexes", "--checkpoint",
                         str(tmp_path / "cp.txt"), "--verifier", verifier)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "checkpoint_mismatch" in caught.stdout


def test_a_guard_dropped_while_its_sink_runs_does_not_deadlock(tmp_path: Path) -> None:
    # The last reference to a guard goes with a GuardedCall, on the main
    # thread holding the GIL, while the checkpoint thread is in a Python sink.
    code = f"""
import threading, time, bastion
key = bastion.SigningKey.generate({NAME!r})
entered = threading.Event()
def sink(note):
    entered.set()
    time.sleep(0.3)
g = bastion.Guard.open({str(tmp_path / "guard")!r}, signing_key=key,
                       checkpoint_interval=0.01, checkpoint_sink=sink)
call = g.begin_model("gpt-4o", "hi", agent_id="a")
del g
assert entered.wait(10)
del call
print("closed")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "closed" in r.stdout, r.stderr
    with bastion.Ledger.open(str(tmp_path / "guard" / "ledger"), reader=True) as reader:
        assert reader.checkpoints()[-1][0] == reader.head()["seq"]


def test_a_sink_cannot_close_its_ledger(tmp_path: Path, key) -> None:
    path = str(tmp_path / "ledger")
    errors: list[BaseException] = []
    holder: dict[str, bastion.Ledger] = {}

    def sink(note: str) -> None:
        try:
            holder["ledger"].close()
        except bastion.Error as e:
            errors.append(e)

    holder["ledger"] = ledger = bastion.Ledger.open(path, signing_key=key, checkpoint_every=1,
                                                    checkpoint_sink=sink)
    ledger.append(realistic_record(0))
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert errors and "cannot close the ledger" in str(errors[0])
    ledger.close()
    assert ledger.closed


def test_roots_must_be_contiguous_and_keys_unencrypted(tmp_path: Path, key) -> None:
    with pytest.raises(BufferError):
        key.sign_checkpoint(1, memoryview(bytes(range(64)))[::2])
    with pytest.raises(ValueError, match="32"):
        key.sign_checkpoint(1, bytes(31))
    assert key.sign_checkpoint(1, bytearray(32)) == key.sign_checkpoint(1, bytes(32))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    (tmp_path / "enc.pem").write_text(f"bastion-signing-key: {NAME}\n" + pem.decode())
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        bastion.SigningKey.load(tmp_path / "enc.pem")
