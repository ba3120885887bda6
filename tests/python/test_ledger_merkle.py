"""The ledger's RFC 9162 Merkle tree from Python: tree heads and proofs from
the installed wheel, checked by a verifier written here with hashlib alone
(RFC 9162 2.1.1, 2.1.3.2 and 2.1.4.2), checkpoints, and verify(trusted=...)."""

from __future__ import annotations

import hashlib

import pytest

import bastion
from helpers import realistic_record

N = 64


# --- an independent verifier: RFC 9162 section 2.1, with hashlib ----------------------

def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(chain_hash: bytes) -> bytes:
    return sha(b"\x00" + chain_hash)


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) over leaf inputs (the records' chain hashes)."""
    if not leaves:
        return sha(b"")
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2; `index` 0-based."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       path: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2 (0 < first < second)."""
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha(b"\x01" + c + fr)
            sr = sha(b"\x01" + c + sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# --- fixtures -------------------------------------------------------------------------

@pytest.fixture
def filled(ledger: bastion.Ledger) -> tuple[bastion.Ledger, list[bytes]]:
    """The ledger with N records, and their chain hashes."""
    for i in range(N):  # one at a time: the tree grows record by record
        ledger.append(realistic_record(i))
    hashes = [bytes.fromhex(ledger.get(seq)["hash"]) for seq in range(1, N + 1)]
    return ledger, hashes


# --- tree heads and proofs ------------------------------------------------------------

def test_tree_heads_match_the_reference_for_every_size(filled):
    ledger, hashes = filled
    assert ledger.tree_head() == (N, mth(hashes))
    for n in range(N + 1):
        size, root = ledger.tree_head(n)
        assert (size, root) == (n, mth(hashes[:n])), n
    assert ledger.tree_head(0)[1] == hashlib.sha256(b"").digest()
    assert bastion.merkle_leaf_hash(hashes[4]) == leaf_hash(hashes[4])


def test_inclusion_proofs_for_every_position_verify_independently(filled):
    ledger, hashes = filled
    for n in range(1, N + 1):
        root = mth(hashes[:n])
        for seq in range(1, n + 1):
            proof = ledger.inclusion_proof(seq, n)
            assert all(isinstance(p, bytes) and len(p) == 32 for p in proof)
            leaf = leaf_hash(hashes[seq - 1])
            assert verify_inclusion(seq - 1, n, leaf, proof, root), (seq, n)
            assert bastion.verify_inclusion(seq, n, leaf, proof, root), (seq, n)
            if proof:
                bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1])] + proof[1:]
                assert not verify_inclusion(seq - 1, n, leaf, bad, root)
                assert not bastion.verify_inclusion(seq, n, leaf, bad, root)
    assert ledger.inclusion_proof(7) == ledger.inclusion_proof(7, N)


def test_consistency_proofs_for_all_pairs_verify_independently(filled):
    ledger, hashes = filled
    roots = [mth(hashes[:n]) for n in range(N + 1)]
    for n in range(1, N + 1):
        for m in range(1, n + 1):
            proof = ledger.consistency_proof(m, n)
            assert bastion.verify_consistency(m, n, roots[m], roots[n], proof), (m, n)
            if m == n:
                assert proof == []
                continue
            assert verify_consistency(m, n, roots[m], roots[n], proof), (m, n)
            assert not verify_consistency(m, n, roots[m], roots[n - 1], proof)
            assert not bastion.verify_consistency(m, n, roots[m], roots[n - 1], proof)


def test_proofs_from_a_reader(filled, ledger_path):
    ledger, hashes = filled
    ledger.flush()
    with bastion.Ledger.open(ledger_path, reader=True) as reader:
        assert reader.tree_head() == (N, mth(hashes))
        assert reader.inclusion_proof(10, 40) == ledger.inclusion_proof(10, 40)
        assert reader.consistency_proof(5, 60) == ledger.consistency_proof(5, 60)


def test_out_of_range_and_wrong_types_are_clear_errors(filled):
    ledger, hashes = filled
    with pytest.raises(bastion.InvalidArgumentError, match="past the ledger's head"):
        ledger.tree_head(N + 1)
    with pytest.raises(bastion.InvalidArgumentError, match="record 0 in the tree of size 5"):
        ledger.inclusion_proof(0, 5)
    with pytest.raises(bastion.InvalidArgumentError, match=f"record 3 in the tree of size {N + 1}"):
        ledger.inclusion_proof(3, N + 1)
    with pytest.raises(bastion.InvalidArgumentError, match="from tree size 0 to 5"):
        ledger.consistency_proof(0, 5)
    with pytest.raises(TypeError, match="seq must be int"):
        ledger.inclusion_proof("3")
    with pytest.raises(TypeError, match="chain_hash must be bytes"):
        bastion.merkle_leaf_hash(hashes[0].hex())
    with pytest.raises(ValueError, match="chain_hash must be 32 bytes, got 31"):
        bastion.merkle_leaf_hash(hashes[0][:31])
    root = mth(hashes)
    with pytest.raises(ValueError, match="root must be 32 bytes"):
        bastion.verify_inclusion(1, N, leaf_hash(hashes[0]), [], root + b"x")
    with pytest.raises(TypeError, match=r"proof\[1\] must be bytes"):
        bastion.verify_inclusion(1, N, leaf_hash(hashes[0]), [root, "x"], root)
    with pytest.raises(TypeError, match="proof must be a list"):
        bastion.verify_consistency(1, 2, root, root, root)
    assert bastion.verify_inclusion(0, N, leaf_hash(hashes[0]), [], root) is False


# --- checkpoints ----------------------------------------------------------------------

def test_checkpoints_are_kept_in_order(filled, ledger_path):
    ledger, _ = filled
    assert ledger.checkpoints() == []
    ledger._put_checkpoint(40, 2, "note b\n")
    ledger._put_checkpoint(10, 9, "note a\n")
    ledger._put_checkpoint(40, 1, "note c\n")
    with pytest.raises(bastion.InvalidArgumentError, match=str(N + 1)):
        ledger._put_checkpoint(N + 1, 1, "x")
    with pytest.raises(TypeError, match="note must be str"):
        ledger._put_checkpoint(5, 1, b"x")
    expected = [(10, 9, "note a\n"), (40, 1, "note c\n"), (40, 2, "note b\n")]
    assert ledger.checkpoints() == expected
    ledger.close()
    with bastion.Ledger.open(ledger_path, reader=True) as reader:
        assert reader.checkpoints() == expected
        with pytest.raises(bastion.StateError):
            reader._put_checkpoint(5, 1, "x")


# --- verify against trusted tree heads --------------------------------------------------

def test_verify_against_trusted_heads(filled, tmp_path):
    ledger, hashes = filled
    early, late = ledger.tree_head(20), ledger.tree_head()
    assert ledger.verify(trusted=[early, late]).ok
    # Another history of the same length and content, rebuilt from scratch
    # (each record's salt differs): self-consistent, but not the trusted one.
    other = str(tmp_path / "other")
    with bastion.Ledger.open(other) as forged:
        for i in range(N):
            forged.append(realistic_record(i))
        assert forged.verify().ok
        report = forged.verify(trusted=[late, early])
        assert not report.ok
        assert (report.problem, report.bad_seq) == ("checkpoint_mismatch", 20)
        assert "records 1..20 do not match the checkpoint of tree size 20" in report.message
        assert "no smaller trusted checkpoint agrees" in report.message
        report = forged.verify(trusted=[late], check_indexes=False)
        assert (report.problem, report.bad_seq) == ("checkpoint_mismatch", N)
        # Record N + 1 does not exist: the trusted head is past this history.
        report = forged.verify(trusted=[(N + 5, late[1])])
        assert (report.problem, report.bad_seq) == ("rolled_back", N + 1)
        assert f"records {N + 1}..{N + 5} were removed" in report.message


def test_verify_trusted_argument_errors(filled):
    ledger, _ = filled
    head = ledger.tree_head()
    with pytest.raises(TypeError, match=r"trusted\[0\] must be a \(size, root\) tuple"):
        ledger.verify(trusted=[head[1]])
    with pytest.raises(ValueError, match=r"trusted\[1\] root must be 32 bytes"):
        ledger.verify(trusted=[head, (3, b"short")])
    with pytest.raises(TypeError, match="trusted must be a list"):
        ledger.verify(trusted=b"x" * 32)
    with pytest.raises(bastion.InvalidArgumentError, match="from record 1"):
        ledger.verify(trusted=[head], from_seq=2)
