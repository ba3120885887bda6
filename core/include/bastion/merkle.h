// RFC 9162 Merkle tree proofs over a ledger, checked without the ledger.
//
// The tree's leaves are the ledger's records in sequence order; a record's
// leaf input is its 32-byte chain hash (StoredRecord::hash), so
//
//   leaf hash = SHA-256(0x00 || chain hash)
//   node hash = SHA-256(0x01 || left || right)
//   empty tree root = SHA-256("")
//
//   bastion::Hash leaf = bastion::MerkleLeafHash(record.hash);
//   auto proof = ledger->InclusionProof(record.seq, head.size);
//   bool ok = bastion::VerifyInclusion(record.seq - 1, head.size, leaf, *proof, head.root);
//
// These functions are pure (no I/O, thread-safe) and never throw: a malformed
// proof, a size out of range or a wrong root makes them return false.
#ifndef BASTION_MERKLE_H_
#define BASTION_MERKLE_H_

#include <cstdint>
#include <vector>

#include "bastion/ledger.h"  // Hash

namespace bastion {

// SHA-256(0x00 || chain_hash): the leaf hash of a record.
Hash MerkleLeafHash(const Hash& chain_hash);

// RFC 9162 2.1.3.2: true iff `proof` proves that the leaf with 0-based index
// `index0` and hash `leaf_hash` is in the tree of `size` leaves whose root is
// `root`. False when index0 >= size.
bool VerifyInclusion(uint64_t index0, uint64_t size, const Hash& leaf_hash,
                     const std::vector<Hash>& proof, const Hash& root);

// RFC 9162 2.1.4.2: true iff `proof` proves that the tree of `old_size`
// leaves with root `old_root` is a prefix of the tree of `new_size` leaves
// with root `new_root`. For old_size == new_size the proof is empty and the
// roots must be equal. False for old_size == 0 (there is nothing to prove)
// and for old_size > new_size.
bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                       const Hash& new_root, const std::vector<Hash>& proof);

}  // namespace bastion

#endif  // BASTION_MERKLE_H_
