#include "ledger/merkle.h"

#include <bit>
#include <cstring>

#include "ledger/record_codec.h"

namespace bastion {
namespace merkle {

Hash LeafHash(Sha256* sha, const uint8_t* chain_hash) {
  const uint8_t prefix = 0x00;
  sha->Update(&prefix, 1);
  sha->Update(chain_hash, 32);
  return sha->Final();
}

Hash NodeHash(Sha256* sha, const Hash& left, const Hash& right) {
  const uint8_t prefix = 0x01;
  sha->Update(&prefix, 1);
  sha->Update(left.data(), 32);
  sha->Update(right.data(), 32);
  return sha->Final();
}

Hash EmptyRoot() {
  static const Hash empty = Sha256::Digest("");
  return empty;
}

std::vector<NodeId> Decompose(uint64_t begin, uint64_t end) {
  std::vector<NodeId> out;
  for (int level = 63; level >= 0 && begin < end; --level) {
    const uint64_t width = uint64_t{1} << level;
    if ((end - begin) & width) {
      out.push_back({static_cast<uint8_t>(level), begin >> level});
      begin += width;
    }
  }
  return out;
}

Hash Fold(Sha256* sha, const Hash* hashes, size_t n) {
  if (n == 0) return EmptyRoot();
  Hash r = hashes[n - 1];
  for (size_t i = n - 1; i-- > 0;) r = NodeHash(sha, hashes[i], r);
  return r;
}

std::vector<Hash> ProofPlan::Assemble(Sha256* sha, const std::vector<Hash>& hashes) const {
  std::vector<Hash> out;
  out.reserve(elements.size());
  for (const Element& e : elements) out.push_back(Fold(sha, hashes.data() + e.first, e.count));
  return out;
}

namespace {

void AddNode(ProofPlan* plan, NodeId id) {
  plan->elements.push_back({plan->nodes.size(), 1});
  plan->nodes.push_back(id);
}

// The siblings of the ancestors at levels `from_level` and up of the leaf
// `leaf` (any leaf below the first of them), in a tree of n leaves, bottom
// up: RFC 9162's audit path from that ancestor to the root.
void AddPath(ProofPlan* plan, int from_level, uint64_t leaf, uint64_t n) {
  // Below `inner` the ancestors lie left of the right edge; the sibling at
  // level inner - 1 is the right-edge subtree [start, n) and may be partial.
  const int inner = std::bit_width(leaf ^ (n - 1));
  for (int i = from_level; i < inner; ++i) {
    const uint64_t sibling = (leaf >> i) ^ 1;
    const uint64_t start = sibling << i;
    if (start + (uint64_t{1} << i) <= n) {
      AddNode(plan, {static_cast<uint8_t>(i), sibling});
    } else {
      const std::vector<NodeId> parts = Decompose(start, n);
      plan->elements.push_back({plan->nodes.size(), parts.size()});
      plan->nodes.insert(plan->nodes.end(), parts.begin(), parts.end());
    }
  }
  // Above, the ancestors are on the right edge; a level where the leaf's
  // ancestor is a right child has a perfect left sibling. (Levels where it
  // is a left child have no right sibling within n: RFC 9162's tree skips
  // them.)
  for (int i = std::max(inner, from_level); i < 64; ++i) {
    if ((leaf >> i) & 1) AddNode(plan, {static_cast<uint8_t>(i), (leaf >> i) ^ 1});
  }
}

}  // namespace

ProofPlan InclusionPlan(uint64_t m, uint64_t n) {
  ProofPlan plan;
  AddPath(&plan, 0, m, n);
  return plan;
}

ProofPlan ConsistencyPlan(uint64_t m, uint64_t n) {
  ProofPlan plan;
  if (m == n) return plan;
  // The largest perfect subtree that ends at m: where RFC 9162's SUBPROOF
  // recursion stops. Its root is sent unless it is the old tree itself (m a
  // power of two), whose root the verifier has.
  const int level = std::countr_zero(m);
  const uint64_t index = (m - 1) >> level;
  if (index != 0) AddNode(&plan, {static_cast<uint8_t>(level), index});
  AddPath(&plan, level, m - 1, n);
  return plan;
}

CompactRange CompactRange::FromRoots(uint64_t size, std::vector<Hash> roots) {
  CompactRange r(0);
  r.end_ = size;
  r.roots_ = std::move(roots);
  return r;
}

std::string NodeKey(NodeId id) {
  std::string k;
  codec::PutFixed64BE(&k, id.index << id.level);
  k.push_back(static_cast<char>(id.level));
  return k;
}

bool ParseNodeKey(std::string_view key, NodeId* id) {
  if (key.size() != kNodeKeyBytes) return false;
  const uint8_t level = static_cast<uint8_t>(key[8]);
  const uint64_t first = codec::GetFixed64BE(key.data());
  if (level >= 64 || (first & ((uint64_t{1} << level) - 1)) != 0) return false;
  id->level = level;
  id->index = first >> level;
  return true;
}

std::string CheckpointKey(uint64_t size, uint32_t key_id) {
  std::string k(1, static_cast<char>(kCheckpointTag));
  codec::PutFixed64BE(&k, size);
  for (int i = 3; i >= 0; --i) k.push_back(static_cast<char>(key_id >> (8 * i)));
  return k;
}

bool ParseCheckpointKey(std::string_view key, uint64_t* size, uint32_t* key_id) {
  if (key.size() != kCheckpointKeyBytes || static_cast<uint8_t>(key[0]) != kCheckpointTag) {
    return false;
  }
  *size = codec::GetFixed64BE(key.data() + 1);
  uint32_t id = 0;
  for (int i = 0; i < 4; ++i) id = (id << 8) | static_cast<uint8_t>(key[9 + i]);
  *key_id = id;
  return true;
}

}  // namespace merkle

Hash MerkleLeafHash(const Hash& chain_hash) {
  Sha256 sha;
  return merkle::LeafHash(&sha, chain_hash.data());
}

bool VerifyInclusion(uint64_t index0, uint64_t size, const Hash& leaf_hash,
                     const std::vector<Hash>& proof, const Hash& root) {
  if (index0 >= size) return false;
  Sha256 sha;
  uint64_t fn = index0, sn = size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      r = merkle::NodeHash(&sha, p, r);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = merkle::NodeHash(&sha, r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                       const Hash& new_root, const std::vector<Hash>& proof) {
  if (old_size == 0 || old_size > new_size) return false;
  if (old_size == new_size) return proof.empty() && old_root == new_root;
  if (proof.empty()) return false;
  std::vector<Hash> path;
  path.reserve(proof.size() + 1);
  if (std::has_single_bit(old_size)) path.push_back(old_root);
  path.insert(path.end(), proof.begin(), proof.end());
  uint64_t fn = old_size - 1, sn = new_size - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Sha256 sha;
  Hash fr = path[0], sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      fr = merkle::NodeHash(&sha, c, fr);
      sr = merkle::NodeHash(&sha, c, sr);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = merkle::NodeHash(&sha, sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return fr == old_root && sr == new_root && sn == 0;
}

}  // namespace bastion
