// The RFC 9162 Merkle tree over the ledger's records: hashing, the compact
// range the writer keeps at the tree's right edge, and which stored
// perfect-subtree nodes a root or a proof needs. No I/O here: the caller
// fetches the nodes (see docs/ledger_format.md, "The Merkle tree").
//
// A node (level, index) is the root of the perfect subtree over the leaves
// [index * 2^level, (index + 1) * 2^level) (0-based leaf numbers; leaf i is
// record i + 1). Every node of RFC 9162's tree for any size is either such a
// perfect node or lies on its right edge, where it is the right fold of the
// perfect nodes that decompose its leaves.
#ifndef BASTION_LEDGER_MERKLE_H_
#define BASTION_LEDGER_MERKLE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/ledger.h"
#include "bastion/merkle.h"
#include "util/sha256.h"

namespace bastion::merkle {

Hash LeafHash(Sha256* sha, const uint8_t* chain_hash);
Hash NodeHash(Sha256* sha, const Hash& left, const Hash& right);
Hash EmptyRoot();

struct NodeId {
  uint8_t level = 0;
  uint64_t index = 0;
  bool operator==(const NodeId&) const = default;
};

// The perfect nodes that decompose the leaves [begin, end), left to right,
// for a `begin` that is a multiple of a power of two above end - begin (0, or
// the start of a right-edge subtree): one per set bit of end - begin, largest
// first.
std::vector<NodeId> Decompose(uint64_t begin, uint64_t end);

// SHA-256 right fold: h[0] for one hash, else H(h[0], Fold(h[1..])). The root
// of a decomposition; EmptyRoot() for none.
Hash Fold(Sha256* sha, const Hash* hashes, size_t n);

// What a proof is made of: each element is the fold of `nodes[first ..
// first + count)` (one perfect node, or a right-edge subtree's decomposition).
struct ProofPlan {
  std::vector<NodeId> nodes;
  struct Element {
    size_t first = 0, count = 0;
  };
  std::vector<Element> elements;
  // Builds the proof from the hashes of `nodes` (same order).
  std::vector<Hash> Assemble(Sha256* sha, const std::vector<Hash>& hashes) const;
};

// RFC 9162 2.1.3.1 PATH(m, D[n]), leaf m 0-based; requires m < n.
ProofPlan InclusionPlan(uint64_t m, uint64_t n);
// RFC 9162 2.1.4.1 PROOF(m, D[n]); requires 0 < m <= n (empty for m == n).
ProofPlan ConsistencyPlan(uint64_t m, uint64_t n);

// The roots of the perfect subtrees that decompose the leaves [begin, end)
// (the "frontier"), where `begin` is a multiple of a power of two no smaller
// than any subtree this range will hold: 0 for the whole tree, or an aligned
// slice start. Appending a leaf completes the perfect subtrees that end with
// it; each is reported, the leaf itself first.
class CompactRange {
 public:
  explicit CompactRange(uint64_t begin = 0) : begin_(begin), end_(begin) {}
  // A range [0, size) from the roots of Decompose(0, size), largest first.
  static CompactRange FromRoots(uint64_t size, std::vector<Hash> roots);

  uint64_t begin() const { return begin_; }
  uint64_t end() const { return end_; }
  const std::vector<Hash>& roots() const { return roots_; }

  // Appends the leaf `leaf_hash` at index end(); calls emit(level, index,
  // hash) for the leaf and every node it completes, bottom up.
  template <typename Emit>
  void AppendLeaf(Sha256* sha, const Hash& leaf_hash, Emit&& emit) {
    emit(uint8_t{0}, end_, leaf_hash);
    AppendNode(sha, 0, leaf_hash, emit);
  }
  // Appends a perfect node of `level` at end(), which must be a multiple of
  // 2^level relative to begin(); emits only the nodes it completes.
  template <typename Emit>
  void AppendNode(Sha256* sha, int level, Hash h, Emit&& emit) {
    uint64_t rel = (end_ - begin_) >> level;
    uint64_t index = end_ >> level;
    end_ += uint64_t{1} << level;
    while (rel & 1) {
      h = NodeHash(sha, roots_.back(), h);
      roots_.pop_back();
      rel >>= 1;
      index >>= 1;
      ++level;
      emit(static_cast<uint8_t>(level), index, h);
    }
    roots_.push_back(std::move(h));
  }
  // The fold of the roots: the Merkle root of [begin, end) when begin is 0.
  Hash Root(Sha256* sha) const { return Fold(sha, roots_.data(), roots_.size()); }

 private:
  uint64_t begin_, end_;
  std::vector<Hash> roots_;  // largest first
};

// Keys of the `tree` column family (docs/ledger_format.md): a node is
// u64be first leaf (index << level) || u8 level (9 bytes), so that the nodes
// of a subtree are neighbours and a proof's lower nodes share a few blocks; a
// checkpoint is 0xFF || u64be size || u32be key id (13 bytes).
inline constexpr size_t kNodeKeyBytes = 9;
// Nodes below this level are not stored: they are computed from the chain
// hashes of the (at most 4) records under them, which a table block usually
// holds together. Each stored level costs an append a key per 2^level
// records (docs/ledger_format.md has the measurements).
inline constexpr int kLowestStoredLevel = 2;
inline constexpr size_t kCheckpointKeyBytes = 13;
inline constexpr uint8_t kCheckpointTag = 0xFF;
std::string NodeKey(NodeId id);
bool ParseNodeKey(std::string_view key, NodeId* id);
std::string CheckpointKey(uint64_t size, uint32_t key_id);
bool ParseCheckpointKey(std::string_view key, uint64_t* size, uint32_t* key_id);

}  // namespace bastion::merkle

#endif  // BASTION_LEDGER_MERKLE_H_
