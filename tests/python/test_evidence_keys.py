"""Signing keys and signed checkpoints, checked against an independent Ed25519
(the `cryptography` package) in both directions."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

import bastion
from bastion import cli

NAME = "audit.example.com/ledger"
ROOT = hashlib.sha256(b"a tree").digest()


def c2sp_key_id(name: str, public_key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4], "big")


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(body, [(key name, key id || signature)]) of a signed note."""
    body, _, sigs = note.rpartition("\n\n")
    lines = []
    for line in sigs.splitlines():
        assert line.startswith("\u2014 "), line
        name, sig = line[2:].split(" ")
        lines.append((name, base64.b64decode(sig, validate=True)))
    return body + "\n", lines


def test_a_key_round_trips_through_a_file_readable_by_its_owner_only(tmp_path: Path) -> None:
    key = bastion.SigningKey.generate(NAME)
    path = tmp_path / "key.pem"
    key.save(path)  # os.PathLike
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith(f"bastion-signing-key: {NAME}\n-----BEGIN PRIVATE KEY-----\n")
    back = bastion.SigningKey.load(str(path))
    assert (back.name, back.key_id, back.verifier) == (key.name, key.key_id, key.verifier)
    # Ed25519 signatures are deterministic: the same key signs identically.
    assert back.sign_checkpoint(7, ROOT) == key.sign_checkpoint(7, ROOT)


def test_save_refuses_to_replace_a_file_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("precious")
    os.chmod(path, 0o644)
    key = bastion.SigningKey.generate(NAME)
    with pytest.raises(FileExistsError):
        key.save(path)
    assert path.read_text() == "precious"
    key.save(path, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bastion.SigningKey.load(path).verifier == key.verifier


def test_repr_never_shows_key_material() -> None:
    key = bastion.SigningKey.generate(NAME)
    pem_body = "".join(key._pem().splitlines()[2:-1])
    r = repr(key)
    assert NAME in r and f"{key.key_id:08x}" in r
    assert pem_body not in r and "PRIVATE" not in r


@pytest.mark.parametrize("name,rule", [("", "empty"), ("a b", "whitespace"), ("a+b", "contains '\\+'"),
                                       ("tab\tx", "whitespace")])
def test_key_names_follow_the_c2sp_rules(name: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        bastion.SigningKey.generate(name)


def test_the_verifier_key_is_the_c2sp_form_of_the_public_key() -> None:
    key = bastion.SigningKey.generate(NAME)
    name, id_hex, key_b64 = key.verifier.split("+", 2)
    raw = base64.b64decode(key_b64, validate=True)
    assert name == NAME and raw[0] == 1 and len(raw) == 33
    assert int(id_hex, 16) == key.key_id == c2sp_key_id(NAME, raw[1:])


def test_cryptography_verifies_a_checkpoint_the_wheel_signed() -> None:
    key = bastion.SigningKey.generate(NAME)
    note = key.sign_checkpoint(42, ROOT)
    body, sigs = split_note(note)
    assert body == f"{NAME}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert [name for name, _ in sigs] == [NAME]
    sig = sigs[0][1]
    assert int.from_bytes(sig[:4], "big") == key.key_id
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.verifier.split("+", 2)[2])[1:])
    public.verify(sig[4:], body.encode())  # raises InvalidSignature on failure
    with pytest.raises(Exception):
        public.verify(sig[4:], body.replace("42", "43").encode())


def test_the_wheel_opens_a_checkpoint_cryptography_signed() -> None:
    private = Ed25519PrivateKey.generate()
    public = raw_public(private.public_key())
    kid = c2sp_key_id(NAME, public)
    verifier = f"{NAME}+{kid:08x}+" + base64.b64encode(b"\x01" + public).decode()
    body = f"{NAME}\n1000\n{base64.b64encode(ROOT).decode()}\nan extension line\n"
    sig = kid.to_bytes(4, "big") + private.sign(body.encode())
    note = f"{body}\n\u2014 {NAME} {base64.b64encode(sig).decode()}\n"
    cp = bastion.open_checkpoint(note, verifier)
    assert (cp.origin, cp.size, cp.root, cp.key_id) == (NAME, 1000, ROOT, kid)
    assert cp.extensions == ("an extension line",)
    # A signature by a witness's key beside it changes nothing.
    witness = Ed25519PrivateKey.generate()
    wid = c2sp_key_id("witness", raw_public(witness.public_key()))
    wsig = wid.to_bytes(4, "big") + witness.sign(body.encode())
    cosigned = note + f"\u2014 witness {base64.b64encode(wsig).decode()}\n"
    assert bastion.open_checkpoint(cosigned, verifier) == cp


def test_a_go_signer_key_signs_as_cryptography_does() -> None:
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    public = raw_public(private.public_key())
    kid = c2sp_key_id("go.example", public)
    text = f"PRIVATE+KEY+go.example+{kid:08x}+" + base64.b64encode(b"\x01" + seed).decode()
    key = bastion.SigningKey.from_text(text)
    assert (key.name, key.key_id) == ("go.example", kid)
    assert base64.b64decode(key.verifier.split("+", 2)[2])[1:] == public
    body, sigs = split_note(key.sign_checkpoint(5, ROOT))
    # Deterministic Ed25519 (RFC 8032): the same seed gives the same signature.
    assert sigs[0][1][4:] == private.sign(body.encode())
    with pytest.raises(ValueError, match="does not match the key"):
        bastion.SigningKey.from_text(text.replace(f"+{kid:08x}+", f"+{kid ^ 1:08x}+"))


def test_open_checkpoint_raises_verification_error_for_bad_evidence() -> None:
    key = bastion.SigningKey.generate(NAME)
    other = bastion.SigningKey.generate(NAME)  # same name, another key
    note = key.sign_checkpoint(9, ROOT)
    with pytest.raises(bastion.VerificationError, match=f"not signed by {NAME}\\+{other.key_id:08x}"):
        bastion.open_checkpoint(note, other.verifier)
    altered = note.replace("\n9\n", "\n8\n", 1)
    with pytest.raises(bastion.VerificationError, match="does not verify"):
        bastion.open_checkpoint(altered, key.verifier)
    with pytest.raises(bastion.VerificationError, match="not signed"):
        bastion.open_checkpoint(note.split("\n\n")[0] + "\n", key.verifier)
    assert issubclass(bastion.VerificationError, bastion.Error)


@pytest.mark.parametrize("verifier,message", [
    ("", "empty"),
    ("name-only", "a field is missing"),
    ("k+zzzzzzzz+AQ==", "not 8 hex digits"),
    ("k+00000000+not base64!", "not valid base64"),
    ("k+00000000+" + base64.b64encode(b"\x02" + bytes(32)).decode(), "algorithm byte"),
    ("k+00000000+" + base64.b64encode(b"\x01" + bytes(31)).decode(), "32 bytes"),
    ("k+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(), "does not match"),
])
def test_a_malformed_verifier_is_a_value_error(verifier: str, message: str) -> None:
    note = bastion.SigningKey.generate("k").sign_checkpoint(1, ROOT)
    with pytest.raises(ValueError, match=message):
        bastion.open_checkpoint(note, verifier)


def test_sign_checkpoint_takes_a_root_as_bytes_or_hex() -> None:
    key = bastion.SigningKey.generate(NAME)
    assert key.sign_checkpoint(3, ROOT.hex()) == key.sign_checkpoint(3, bytearray(ROOT))
    with pytest.raises(ValueError, match="31 bytes"):
        key.sign_checkpoint(3, ROOT[:31])
    with pytest.raises(TypeError):
        key.sign_checkpoint(3, 12345)  # type: ignore[arg-type]


def test_cli_generates_a_key_and_prints_its_verifier(tmp_path: Path, capsys) -> None:
    out = tmp_path / "key.pem"
    assert cli.main(["keys", "generate", NAME, "--out", str(out)]) == 0
    verifier = capsys.readouterr().out.strip()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert bastion.SigningKey.load(out).verifier == verifier
    assert cli.main(["keys", "verifier", str(out)]) == 0
    assert capsys.readouterr().out.strip() == verifier
    # No silent replacement of a key.
    assert cli.main(["keys", "generate", NAME, "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert bastion.SigningKey.load(out).verifier == verifier
    assert cli.main(["keys", "generate", "bad name", "--out", str(tmp_path / "x.pem")]) == 2
    assert "whitespace" in capsys.readouterr().err
    assert cli.main(["keys", "verifier", str(tmp_path / "missing.pem")]) == 2
