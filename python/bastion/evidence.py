"""Signed checkpoints and the evidence folder an auditor verifies offline.

    key = bastion.SigningKey.generate("audit.example.com/ledger")
    key.save("ledger-key.pem")                 # mode 0600; keep it secret
    print(key.verifier)                        # public: give it to auditors

    note = key.sign_checkpoint(size, root)     # C2SP tlog-checkpoint, signed
    cp = bastion.open_checkpoint(note, key.verifier)

    bastion.export_evidence("./audit", "./evidence", checkpoint=note,
                            verifier=key.verifier)
    # the auditor: python evidence/verify_evidence.py evidence
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from bastion import _core
from bastion._core import Ledger, SigningKey

# Records read from the ledger per call while exporting.
_PAGE = 1024

_README = """\
Evidence from a Bastion audit ledger
====================================

records.{ext}       every record of the ledger, oldest first: its readable fields
                    and "stored", the base64 of the exact bytes the ledger stored
checkpoint.txt      a signed checkpoint (C2SP tlog-checkpoint in a C2SP signed
                    note): the number of records it covers and the root of the
                    RFC 9162 Merkle tree over their chain hashes
verifier.txt        the public Ed25519 verifier key of the checkpoint's signer
verify_evidence.py  a standalone checker (Python 3.10+, the standard library and
                    the `cryptography` package; nothing from Bastion)

To check the evidence:

    pip install cryptography
    python verify_evidence.py .            # this folder
    python verify_evidence.py . --record 42

It checks the checkpoint's signature and key id, parses every stored record
(docs/ledger_format.md of Bastion), recomputes each chain hash and link, checks
that the readable fields equal the stored ones, and recomputes the Merkle root
over the records the checkpoint covers. It exits 0 with a summary, or non-zero
naming the first record and field that fail.

Obtain verifier.txt from the ledger's operator through a channel other than
this folder: a checkpoint proves only what the key that signed it vouches for.
"""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: the tree of the first `size` records has root `root`."""

    origin: str
    size: int
    root: bytes
    key_id: int
    extensions: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"Checkpoint(origin={self.origin!r}, size={self.size}, "
                f"root={self.root.hex()!r}, key_id={self.key_id:08x})")


def open_checkpoint(note: str, verifier: str) -> Checkpoint:
    """Checks a signed checkpoint against a verifier key and returns what it says.

    Raises bastion.VerificationError if the note is malformed, is not signed by
    `verifier`, or its signature does not verify; ValueError
    (bastion.InvalidArgumentError) if `verifier` is not a verifier key.
    """
    origin, size, root, key_id, extensions = _core._open_checkpoint(note, verifier)
    return Checkpoint(origin, size, root, key_id, tuple(extensions))


def _save_key(self: SigningKey, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Writes the private key to `path`, readable by its owner only (mode 0600).

    Refuses (FileExistsError) to replace an existing file unless overwrite=True.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(os.fspath(path), flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(self._pem())
            f.flush()
            os.fsync(f.fileno())
    finally:
        if fd >= 0:
            os.close(fd)


def _load_key(path: str | os.PathLike[str]) -> SigningKey:
    """Reads a key written by SigningKey.save (or a Go signer key in a file)."""
    return SigningKey.from_text(Path(path).read_text(encoding="utf-8"))


SigningKey.save = _save_key  # type: ignore[attr-defined]
SigningKey.load = staticmethod(_load_key)  # type: ignore[attr-defined]


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _records(ledger: Ledger, last: int) -> Iterator[dict[str, Any]]:
    seq = 1
    while seq <= last:
        page = ledger._stored(seq, min(last, seq + _PAGE - 1))
        if not page:
            return
        for stored in page:
            # Pairs each stored value with its decoded fields; a gap or a
            # misplaced record would pair the wrong ones.
            if len(stored) < 10 or int.from_bytes(stored[2:10], "little") != seq:
                raise _core.CorruptionError(
                    f"record {seq} is missing or misplaced: the ledger does not verify "
                    f"(run Ledger.verify()); evidence needs an intact chain")
            # Evidence is of one chain: a record's shard is where it was read
            # from, not one of its fields.
            row = {k: _json_value(v) for k, v in ledger.get(seq).items() if k != "shard"}
            row["stored"] = base64.b64encode(stored).decode("ascii")
            yield row
            seq += 1


def latest_checkpoint(ledger_path: str | os.PathLike[str], verifier: str) -> str:
    """The signed note of the newest checkpoint the ledger holds that
    `verifier` opens. LookupError when there is none."""
    with Ledger.open(os.fspath(ledger_path), reader=True) as ledger:
        stored = ledger.checkpoints()
    for _size, _key_id, note in reversed(stored):
        try:
            open_checkpoint(note, verifier)
        except _core.VerificationError:
            continue
        return note
    raise LookupError(
        f"the ledger at {os.fspath(ledger_path)} holds no checkpoint signed by "
        f"{verifier.split('+')[0]} (take one with Ledger.checkpoint(key), or open the ledger or "
        f"guard with signing_key=...)")


def export_evidence(ledger_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                    verifier: str, checkpoint: str | None = None, format: str = "jsonl",
                    overwrite: bool = False) -> Path:
    """Writes the evidence folder for an auditor and returns its path.

    `out_dir` receives records.jsonl (or records.parquet with format="parquet",
    which needs pyarrow), checkpoint.txt, verifier.txt, verify_evidence.py and
    README.txt. The checkpoint is checked against `verifier` first (a
    VerificationError leaves nothing written). Refuses (FileExistsError) a
    non-empty `out_dir` unless overwrite=True. The ledger is opened as a
    reader, so an agent may keep writing to it; the export holds every record
    up to the head at the time it starts. Without `checkpoint`, the newest
    checkpoint the ledger holds that `verifier` opens is used (LookupError
    when there is none: take one with Ledger.checkpoint or a signing_key).
    """
    if format not in ("jsonl", "parquet"):
        raise ValueError(f"format must be 'jsonl' or 'parquet', got {format!r}")
    if checkpoint is None:
        checkpoint = latest_checkpoint(ledger_path, verifier)
    cp = open_checkpoint(checkpoint, verifier)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty (pass overwrite=True to replace its files)")
    with Ledger.open(os.fspath(ledger_path), reader=True) as ledger:
        last = ledger.head()["seq"]
        if last < cp.size:
            raise ValueError(f"the checkpoint covers {cp.size} records, the ledger holds {last}")
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("records.jsonl", "records.parquet"):
            (out / stale).unlink(missing_ok=True)
        rows = _records(ledger, last)
        if format == "jsonl":
            with open(out / "records.jsonl", "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                    f.write("\n")
        else:
            _write_parquet(out / "records.parquet", list(rows))
    (out / "checkpoint.txt").write_text(checkpoint, encoding="utf-8")
    (out / "verifier.txt").write_text(verifier.strip() + "\n", encoding="utf-8")
    shutil.copyfile(Path(__file__).with_name("verify_evidence.py"), out / "verify_evidence.py")
    (out / "README.txt").write_text(_README.replace("{ext}", format), encoding="utf-8")
    return out


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("format='parquet' needs pyarrow: pip install pyarrow") from e
    # Nested fields (reasons, attributes) as JSON text, so every column has one
    # type; token counts are unsigned 64-bit.
    columns: dict[str, Any] = {}
    for name in (rows[0] if rows else {}):
        values = [row[name] for row in rows]
        if name in ("reasons", "attributes"):
            columns[name] = pa.array([json.dumps(v, ensure_ascii=False) for v in values],
                                     pa.string())
        elif name.endswith("_tokens"):
            columns[name] = pa.array(values, pa.uint64())
        else:
            columns[name] = pa.array(values)
    pq.write_table(pa.table(columns), path)
