// The Merkle tree as stored: reading the nodes a root or a proof needs, the
// writer's compact range on open, and building the tree of a ledger of
// format 1 (the upgrade to format 2).
#ifndef BASTION_LEDGER_TREE_STORE_H_
#define BASTION_LEDGER_TREE_STORE_H_

#include <cstdint>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "bastion/ledger.h"
#include "ledger/merkle.h"
#include "ledger/rocks_store.h"

namespace bastion::tree {

// Upper nodes read before, kept in memory: a perfect node never changes once
// its records are written, and the few upper ones are in almost every proof.
// Thread-safe. Holds at most kCapacity nodes (then starts over).
class NodeCache {
 public:
  static constexpr int kMinLevel = 4;
  static constexpr size_t kCapacity = 1 << 17;
  bool Lookup(merkle::NodeId id, Hash* h) const;
  void Insert(merkle::NodeId id, const Hash& h);
  void Clear();

 private:
  static uint64_t Key(merkle::NodeId id) { return (uint64_t{id.level} << 58) | id.index; }
  mutable std::shared_mutex mu_;
  std::unordered_map<uint64_t, Hash> nodes_;  // guarded by mu_
};

// The hashes of `ids`, read in one MultiGet: stored nodes from the tree
// column family, nodes below merkle::kLowestStoredLevel computed from the
// chain hashes of the records under them; nodes in `cache` (when given) from
// there, and upper ones read are added to it. Corruption names a node or
// record that is missing or malformed.
Status ReadNodes(RocksStore* store, const std::vector<merkle::NodeId>& ids,
                 std::vector<Hash>* hashes, const rocksdb::Snapshot* snapshot = nullptr,
                 NodeCache* cache = nullptr);

// The root of the tree over records 1..size.
Result<Hash> RootAt(RocksStore* store, uint64_t size, NodeCache* cache = nullptr);

// The compact range of the tree over records 1..size, from its stored nodes.
Result<merkle::CompactRange> LoadRange(RocksStore* store, uint64_t size);

// Builds the tree of a ledger of format 1 whose records end at `head_seq`:
// creates the tree column family, adds the nodes of `batch_records` records
// per write batch with the meta mark `tree` (records covered), and in the
// last batch sets the format to 2 and removes the mark. An upgrade cut short
// resumes from the mark.
Status Upgrade(RocksStore* store, uint64_t head_seq, uint64_t batch_records);

}  // namespace bastion::tree

#endif  // BASTION_LEDGER_TREE_STORE_H_
