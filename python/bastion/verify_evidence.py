#!/usr/bin/env python3
"""Checks an evidence folder exported from a Bastion audit ledger, offline.

    python verify_evidence.py DIR [--record SEQ]

DIR holds records.jsonl (or records.parquet), checkpoint.txt and verifier.txt.
This script is standalone: it needs Python 3.10+, its standard library and the
`cryptography` package (pyarrow only for records.parquet); it imports nothing
from Bastion, so an auditor can read all of it.

It checks, and stops at the first problem, naming the record and field:
  1. checkpoint.txt is a C2SP signed note carrying a valid Ed25519 signature by
     the key in verifier.txt (its name and key id), and its body is a C2SP
     tlog-checkpoint whose origin is the key's name;
  2. every stored record ("stored", base64) parses per Bastion's ledger format
     version 1 (docs/ledger_format.md): sequence, chain link, chain hash,
     salted personal digest (unless erased), and strict field encodings;
  3. the readable fields of each line equal the fields decoded from its stored
     bytes, so they can be trusted;
  4. the RFC 9162 Merkle tree over the chain hashes of records 1..size has the
     checkpoint's root (leaf = SHA-256(0x00 || chain hash), node =
     SHA-256(0x01 || left || right)).
With --record SEQ it also prints that record and checks its inclusion proof.

Exit status: 0 verified; 1 the evidence does not verify; 2 usage or files.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import struct
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - reported to the auditor
    sys.stderr.write("verify_evidence.py needs the 'cryptography' package: "
                     "pip install cryptography\n")
    sys.exit(2)


class Failed(Exception):
    """The evidence does not verify; the message names what and where."""


class Unreadable(Exception):
    """The evidence folder cannot be read (missing files, no pyarrow)."""


# --------------------------------------------------------------------------
# Signed notes and checkpoints (https://c2sp.org/signed-note,
# https://c2sp.org/tlog-checkpoint)

MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash, space
_SPACES = set("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)}


def b64decode_strict(text: str, what: str) -> bytes:
    """RFC 4648 base64 with padding, in its one canonical form."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise Failed(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise Failed(f"{what} is not valid base64 (not in canonical form)")
    return raw


def check_key_name(name: str, what: str) -> None:
    if not name:
        raise Failed(f"{what}: key name is empty")
    for ch in name:
        if ch in _SPACES:
            raise Failed(f"{what}: key name contains whitespace")
        if ch < " " or "\x7f" <= ch < "\xa0":
            raise Failed(f"{what}: key name contains a control character")
        if ch == "+":
            raise Failed(f"{what}: key name contains '+'")


def key_id(name: str, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


class Verifier:
    def __init__(self, text: str) -> None:
        text = text.strip()
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise Failed("verifier.txt: expected <name>+<key id>+<key>, a field is missing")
        name, id_hex, key_b64 = parts
        check_key_name(name, "verifier.txt")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", id_hex):
            raise Failed(f"verifier.txt: key id {id_hex!r} is not 8 hex digits")
        raw = b64decode_strict(key_b64, "verifier.txt: the key")
        if not raw or raw[0] != ED25519:
            raise Failed("verifier.txt: the algorithm byte is not 0x01 (Ed25519)")
        if len(raw) != 33:
            raise Failed(f"verifier.txt: an Ed25519 key is 32 bytes, got {len(raw) - 1}")
        self.name = name
        self.public_key = raw[1:]
        self.key_id = int(id_hex, 16)
        if key_id(name, self.public_key) != self.key_id:
            raise Failed(f"verifier.txt: key id {id_hex} does not match the name and key")
        try:
            self.key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError:
            raise Failed("verifier.txt: the key is not an Ed25519 public key") from None

    @property
    def label(self) -> str:
        return f"{self.name}+{self.key_id:08x}"


def open_checkpoint(note: str, verifier: Verifier) -> tuple[int, bytes, list[str]]:
    """The (size, root, extension lines) of a checkpoint signed by `verifier`."""
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise Failed(f"checkpoint.txt: the signed note is more than {MAX_NOTE_BYTES} bytes")
    for i, ch in enumerate(note):
        if ch == "\r":
            raise Failed(f"checkpoint.txt: character {i}: carriage return (lines end in \\n only)")
        if (ch < " " and ch != "\n") or ch == "\x7f":
            raise Failed(f"checkpoint.txt: character {i}: control character {ord(ch):#04x}")
    split = note.rfind("\n\n")
    if split < 0:
        raise Failed("checkpoint.txt: no blank line before the signatures (it is not signed)")
    body, sigs = note[:split + 1], note[split + 2:]
    if not sigs.endswith("\n"):
        raise Failed("checkpoint.txt: the signature block does not end in a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise Failed(f"checkpoint.txt: more than {MAX_SIGNATURES} signatures")
    signed = False
    body_bytes = body.encode("utf-8")
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise Failed("checkpoint.txt: a signature line does not start with an em dash and a space")
        name, sep, sig_b64 = line[len(SIG_PREFIX):].partition(" ")
        if not sep:
            raise Failed("checkpoint.txt: a signature line lacks '<key name> <signature>'")
        check_key_name(name, "checkpoint.txt signature line")
        sig = b64decode_strict(sig_b64, f"checkpoint.txt: the signature by {name}")
        if len(sig) < 5:
            raise Failed(f"checkpoint.txt: the signature by {name} is too short")
        if name != verifier.name or int.from_bytes(sig[:4], "big") != verifier.key_id:
            continue  # another key's signature
        try:
            verifier.key.verify(sig[4:], body_bytes)
        except InvalidSignature:
            raise Failed(f"checkpoint.txt: signature by {verifier.label} does not verify "
                         "(altered body or wrong key)") from None
        signed = True
    if not signed:
        raise Failed(f"checkpoint.txt: checkpoint is not signed by {verifier.label}")

    rows = body[:-1].split("\n")
    if len(rows) < 3:
        raise Failed("checkpoint.txt: the checkpoint needs an origin, a tree size and a root hash")
    origin, size_text, root_b64, *extensions = rows
    if origin != verifier.name:
        raise Failed(f"checkpoint.txt line 1: origin {origin!r} is not the key's name "
                     f"{verifier.name!r}")
    if not re.fullmatch(r"0|[1-9][0-9]*", size_text) or int(size_text) >= 1 << 64:
        raise Failed(f"checkpoint.txt line 2: tree size {size_text!r} is not a decimal number "
                     "without leading zeros below 2^64")
    root = b64decode_strict(root_b64, "checkpoint.txt line 3: the root hash")
    if len(root) != 32:
        raise Failed(f"checkpoint.txt line 3: the root hash is {len(root)} bytes, not 32")
    for i, ext in enumerate(extensions):
        if not ext:
            raise Failed(f"checkpoint.txt line {i + 4}: empty extension line")
    return int(size_text), root, extensions


# --------------------------------------------------------------------------
# Stored records (docs/ledger_format.md, version 1)

STRING, UINT, INT, REASONS, ATTRIBUTES = "string", "uint", "int", "reasons", "attributes"
# tag -> (name, type, personal)
FIELDS: dict[int, tuple[str, str, bool]] = {
    1: ("agent_id", STRING, False), 2: ("agent_role", STRING, False),
    3: ("parent_agent_id", STRING, False), 4: ("user_id", STRING, True),
    5: ("tenant_id", STRING, False), 6: ("action", STRING, False),
    7: ("model", STRING, False), 8: ("tool", STRING, False),
    9: ("operation", STRING, False), 10: ("resource_id", STRING, False),
    11: ("input_summary", STRING, True), 12: ("output_summary", STRING, True),
    13: ("input_tokens", UINT, False), 14: ("output_tokens", UINT, False),
    15: ("cache_read_tokens", UINT, False), 16: ("cache_write_tokens", UINT, False),
    17: ("reasoning_tokens", UINT, False), 18: ("cost_usd", INT, False),
    19: ("effect", STRING, False), 20: ("reasons", REASONS, False),
    21: ("timestamp_ns", INT, False), 22: ("duration_ns", INT, False),
    23: ("trace_id", STRING, False), 24: ("span_id", STRING, False),
    25: ("parent_span_id", STRING, False), 26: ("request_id", STRING, False),
    27: ("run_id", STRING, False), 28: ("thread_id", STRING, False),
    29: ("step_index", INT, False), 30: ("risk_level", STRING, False),
    31: ("policy_version", STRING, False), 32: ("approval_status", STRING, False),
    33: ("approved_by", STRING, True), 34: ("attributes", ATTRIBUTES, True),
}
EFFECTS = ("allow", "modify", "require_approval", "deny")
MAX_RECORD_BYTES = 1 << 20
MAX_LIST = 256


class Reader:
    """Strict reads from one section; errors name the section and offset."""

    def __init__(self, data: bytes, section: str) -> None:
        self.data, self.pos, self.section = data, 0, section

    def fail(self, what: str) -> Failed:
        return Failed(f"{self.section} section, offset {self.pos}: {what}")

    def done(self) -> bool:
        return self.pos == len(self.data)

    def varint(self) -> int:
        value, shift, start = 0, 0, self.pos
        while True:
            if self.pos >= len(self.data):
                raise self.fail("varint runs past the end")
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if self.pos - start >= 10:
                raise self.fail("varint is longer than 10 bytes")
        n = self.pos - start
        if n > 1 and self.data[self.pos - 1] == 0:
            raise self.fail("varint is not in its shortest form")
        if value >= 1 << 64:
            raise self.fail("varint is above 2^64-1")
        return value

    def string(self, name: str, allow_empty: bool = False) -> str:
        n = self.varint()
        if self.pos + n > len(self.data):
            raise self.fail(f"{name}: string runs past the end")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        if not raw and not allow_empty:
            raise self.fail(f"{name}: empty string (an empty field is omitted)")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{name}: not valid UTF-8") from None


def unzigzag(v: int) -> int:
    return (v >> 1) ^ -(v & 1)


def decode_section(data: bytes, section: str, personal: bool) -> dict[str, Any]:
    r = Reader(data, section)
    out: dict[str, Any] = {}
    last_tag = 0
    while not r.done():
        tag = r.varint()
        if tag not in FIELDS:
            raise r.fail(f"unknown field tag {tag}")
        if tag <= last_tag:
            raise r.fail(f"field tag {tag} after tag {last_tag} (tags must ascend)")
        last_tag = tag
        name, kind, is_personal = FIELDS[tag]
        if is_personal != personal:
            raise r.fail(f"{name} does not belong in the {section} section")
        if kind == STRING:
            value: Any = r.string(name)
            if name == "effect" and value not in EFFECTS:
                raise r.fail(f"effect {value!r} is not one of {', '.join(EFFECTS)}")
        elif kind == UINT:
            value = r.varint()
            if value == 0:
                raise r.fail(f"{name} is zero (a zero field is omitted)")
        elif kind == INT:
            value = unzigzag(r.varint())
            if value == 0 and name != "step_index":
                raise r.fail(f"{name} is zero (a zero field is omitted)")
        elif kind == REASONS:
            n = r.varint()
            if not 1 <= n <= MAX_LIST:
                raise r.fail(f"reasons: count {n} is not within 1..{MAX_LIST}")
            value = [{"policy_id": r.string("reason policy_id", True),
                      "message": r.string("reason message", True)} for _ in range(n)]
        else:
            n = r.varint()
            if not 1 <= n <= MAX_LIST:
                raise r.fail(f"attributes: count {n} is not within 1..{MAX_LIST}")
            value, prev = {}, None
            for _ in range(n):
                key = r.string("attribute key")
                kb = key.encode("utf-8")
                if prev is not None and kb <= prev:
                    raise r.fail(f"attribute key {key!r} does not ascend (keys are sorted, unique)")
                prev = kb
                value[key] = r.string(f"attribute {key!r}", True)
        out[name] = value
    if not personal and "action" not in out:
        raise Failed(f"{section} section: the required field action is missing")
    return out


def parse_stored(stored: bytes, expected_seq: int, prev_hash: bytes) -> dict[str, Any]:
    """Parses and checks one stored record; returns its decoded place and fields."""
    if len(stored) > MAX_RECORD_BYTES:
        raise Failed(f"stored record is {len(stored)} bytes, more than {MAX_RECORD_BYTES}")
    if len(stored) < 82:
        raise Failed(f"stored record is {len(stored)} bytes, shorter than its 82-byte frame")
    version, flags = stored[0], stored[1]
    if version != 1:
        raise Failed(f"version is {version}, not 1")
    if flags & ~1:
        raise Failed(f"flags {flags:#04x} set reserved bits")
    erased = bool(flags & 1)
    seq = struct.unpack_from("<Q", stored, 2)[0]
    if seq != expected_seq:
        raise Failed(f"stored seq is {seq}, expected {expected_seq} (a record is missing, "
                     "reordered or inserted)")
    stored_prev, stored_hash = stored[10:42], stored[42:74]
    if stored_prev != prev_hash:
        raise Failed("prev_hash is not the previous record's chain hash (broken link)")
    b = struct.unpack_from("<I", stored, 74)[0]
    if 78 + b + 4 > len(stored):
        raise Failed("public section length runs past the end")
    public = stored[78:78 + b]
    p = struct.unpack_from("<I", stored, 78 + b)[0]
    if 82 + b + p != len(stored):
        raise Failed(f"the record is {len(stored)} bytes, its sections say {82 + b + p}")
    personal = stored[82 + b:]
    if erased:
        if p != 32:
            raise Failed(f"erased record's personal section is {p} bytes, not the 32-byte digest")
        digest = personal
    else:
        if p < 16:
            raise Failed(f"personal section is {p} bytes, shorter than its 16-byte salt")
        digest = hashlib.sha256(b"BSTNPII1" + personal).digest()
    expected = hashlib.sha256(b"BSTNLDG1" + struct.pack("<Q", seq) + stored_prev +
                              struct.pack("<I", b) + public + digest).digest()
    if expected != stored_hash:
        raise Failed("chain hash does not match the record's content (tampered)")
    fields = decode_section(public, "public", personal=False)
    if not erased:
        fields.update(decode_section(personal[16:], "personal", personal=True))
    return {"seq": seq, "prev_hash": stored_prev, "hash": stored_hash, "erased": erased,
            "fields": fields}


def readable(decoded: dict[str, Any]) -> dict[str, Any]:
    """The fields as the export writes them (Ledger.get, JSON-safe)."""
    f = decoded["fields"]
    out: dict[str, Any] = {
        "seq": decoded["seq"],
        "hash": decoded["hash"].hex(),
        "prev_hash": decoded["prev_hash"].hex(),
        "personal_data_erased": decoded["erased"],
    }
    for _, (name, kind, personal) in sorted(FIELDS.items()):
        value = f.get(name)
        if personal and decoded["erased"]:  # erased: the personal fields read as null
            out[name] = None
        elif name == "cost_usd":
            out[name] = Decimal(value or 0).scaleb(-9)
        elif name == "step_index":
            out[name] = value
        elif kind in (UINT, INT):
            out[name] = value or 0
        elif kind == REASONS:  # an empty policy id or message reads as null
            out[name] = [{k: v or None for k, v in r.items()} for r in value or []]
        elif kind == ATTRIBUTES:
            out[name] = value or {}
        else:
            out[name] = value
    return out


def compare(line: dict[str, Any], decoded: dict[str, Any]) -> None:
    want = readable(decoded)
    extra = sorted(set(line) - set(want) - {"stored"})
    if extra:
        raise Failed(f"field {extra[0]!r} is not a field of the ledger")
    for name, value in want.items():
        if name not in line:
            raise Failed(f"field {name!r} is missing")
        got = line[name]
        if name == "cost_usd":
            try:
                same = isinstance(got, str) and Decimal(got) == value
            except ArithmeticError:
                same = False
        elif isinstance(value, bool) or isinstance(got, bool):
            same = type(got) is type(value) and got == value
        else:
            same = got == value and type(got) is type(value)
        if not same:
            raise Failed(f"field {name!r}: the readable value {got!r} is not the stored "
                         f"value {value!r}")


# --------------------------------------------------------------------------
# RFC 9162 Merkle tree over chain hashes

def leaf_hash(chain_hash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + chain_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 2.1.1, over leaf hashes, in one pass."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    stack: list[tuple[int, bytes]] = []  # (subtree size, hash), sizes strictly decreasing
    for h in leaves:
        size = 1
        while stack and stack[-1][0] == size:
            h = node_hash(stack.pop()[1], h)
            size *= 2
        stack.append((size, h))
    root = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        root = node_hash(h, root)
    return root


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def inclusion_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1."""
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return inclusion_path(m, leaves[:k]) + [merkle_root(leaves[k:])]
    return inclusion_path(m - k, leaves[k:]) + [merkle_root(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# --------------------------------------------------------------------------

def load_lines(folder: Path) -> list[dict[str, Any]]:
    jsonl, parquet = folder / "records.jsonl", folder / "records.parquet"
    if jsonl.exists():
        rows = []
        with open(jsonl, encoding="utf-8") as f:
            for i, text in enumerate(f, 1):
                try:
                    row = json.loads(text)
                except ValueError as e:
                    raise Failed(f"records.jsonl line {i}: not JSON ({e})") from None
                if not isinstance(row, dict):
                    raise Failed(f"records.jsonl line {i}: not a JSON object")
                rows.append(row)
        return rows
    if parquet.exists():
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise Unreadable("records.parquet needs pyarrow: pip install pyarrow") from None
        rows = pq.read_table(parquet).to_pylist()
        for row in rows:  # nested fields travel as JSON text
            for name in ("reasons", "attributes"):
                if isinstance(row.get(name), str):
                    row[name] = json.loads(row[name])
        return rows
    raise Unreadable(f"{folder}: neither records.jsonl nor records.parquet")


def verify(folder: Path, record: int | None, out: Any) -> None:
    try:  # bytes, not text mode: a "\r" must not be translated away
        verifier_raw = (folder / "verifier.txt").read_bytes()
        note_raw = (folder / "checkpoint.txt").read_bytes()
    except OSError as e:
        raise Unreadable(str(e)) from None
    try:
        verifier_text = verifier_raw.decode("utf-8")
        note = note_raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Failed(f"verifier.txt or checkpoint.txt is not valid UTF-8 ({e})") from None
    verifier = Verifier(verifier_text)
    size, root, _ = open_checkpoint(note, verifier)
    rows = load_lines(folder)

    prev = bytes(32)
    leaves: list[bytes] = []
    chosen: dict[str, Any] | None = None
    erased = 0
    for i, row in enumerate(rows, 1):
        try:
            stored_b64 = row.get("stored")
            if not isinstance(stored_b64, str):
                raise Failed("field 'stored' is missing or not a string")
            decoded = parse_stored(b64decode_strict(stored_b64, "field 'stored'"), i, prev)
            compare(row, decoded)
        except Failed as e:
            raise Failed(f"record {i}: {e}") from None
        prev = decoded["hash"]
        leaves.append(leaf_hash(decoded["hash"]))
        erased += decoded["erased"]
        if record == i:
            chosen = row
    if len(rows) < size:
        raise Failed(f"the checkpoint covers {size} records, the evidence holds {len(rows)} "
                     f"(records {len(rows) + 1}..{size} are missing)")
    if merkle_root(leaves[:size]) != root:
        raise Failed(f"the Merkle root of records 1..{size} is not the checkpoint's root "
                     "(the records are not the ones the checkpoint signed)")

    if record is not None:
        if chosen is None:
            raise Failed(f"record {record}: not in the evidence (it holds 1..{len(rows)})")
        shown = {k: v for k, v in chosen.items() if k != "stored"}
        out.write(json.dumps(shown, indent=2, ensure_ascii=False) + "\n")
        if record > size:
            out.write(f"record {record} is after the checkpoint (size {size}): no inclusion "
                      "proof; it is covered by the hash chain only\n")
        else:
            path = inclusion_path(record - 1, leaves[:size])
            if not verify_inclusion(record - 1, size, leaves[record - 1], path, root):
                raise Failed(f"record {record}: its inclusion proof does not verify")
            out.write(f"inclusion proof of record {record} in the tree of {size} records: "
                      f"{len(path)} hashes, verified against the checkpoint's root\n")

    tail = ""
    if len(rows) > size:
        tail = (f" Records {size + 1}..{len(rows)} come after the checkpoint: their chain "
                "links and hashes are checked, but no signature covers them yet.")
    out.write(
        f"OK: checkpoint of {verifier.name} (key {verifier.key_id:08x}) signs {size} records "
        f"with Merkle root {root.hex()}. All {len(rows)} records parse as ledger format 1, "
        f"their chain hashes and links are intact, their readable fields equal the stored "
        f"ones ({erased} with personal data erased, checked through their digests), and "
        f"records 1..{size} hash to the signed root.{tail}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="the evidence folder")
    ap.add_argument("--record", type=int, metavar="SEQ",
                    help="print this record and check its inclusion proof")
    args = ap.parse_args(argv)
    try:
        verify(args.folder, args.record, sys.stdout)
    except Failed as e:
        sys.stderr.write(f"FAILED: {e}\n")
        return 1
    except Unreadable as e:
        sys.stderr.write(f"cannot check the evidence: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
