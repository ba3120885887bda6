#include "ledger/tree_store.h"

#include <cstring>

#include <fmt/format.h>
#include <rocksdb/write_batch.h>

#include "ledger/record_codec.h"
#include "ledger/writer.h"

namespace bastion::tree {

bool NodeCache::Lookup(merkle::NodeId id, Hash* h) const {
  if (id.level < kMinLevel) return false;
  std::shared_lock lock(mu_);
  auto it = nodes_.find(Key(id));
  if (it == nodes_.end()) return false;
  *h = it->second;
  return true;
}

void NodeCache::Insert(merkle::NodeId id, const Hash& h) {
  if (id.level < kMinLevel) return;
  std::unique_lock lock(mu_);
  if (nodes_.size() >= kCapacity) nodes_.clear();
  nodes_.emplace(Key(id), h);
}

void NodeCache::Clear() {
  std::unique_lock lock(mu_);
  nodes_.clear();
}

Status ReadNodes(RocksStore* store, const std::vector<merkle::NodeId>& ids,
                 std::vector<Hash>* hashes, const rocksdb::Snapshot* snapshot, NodeCache* cache) {
  hashes->resize(ids.size());
  if (ids.empty()) return Status::OK();
  // Each node not in the cache is read as one stored node, or (below the
  // lowest stored level) as the records under it.
  struct Read {
    size_t id;     // place in `ids`
    size_t first;  // its first key
    size_t count;  // keys: 1 for a stored node, else its records
  };
  std::vector<Read> reads;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;
  std::vector<std::string> keys;
  reads.reserve(ids.size());
  keys.reserve(ids.size() + 8);
  cfs.reserve(ids.size() + 8);
  for (size_t i = 0; i < ids.size(); ++i) {
    const merkle::NodeId& id = ids[i];
    if (cache != nullptr && cache->Lookup(id, &(*hashes)[i])) continue;
    if (id.level < merkle::kLowestStoredLevel) {
      const uint64_t first_leaf = id.index << id.level, leaves = uint64_t{1} << id.level;
      reads.push_back({i, keys.size(), leaves});
      for (uint64_t leaf = first_leaf; leaf < first_leaf + leaves; ++leaf) {
        cfs.push_back(store->records());
        keys.push_back(codec::RecordKey(leaf + 1));
      }
    } else {
      reads.push_back({i, keys.size(), 1});
      cfs.push_back(store->tree());
      keys.push_back(merkle::NodeKey(id));
    }
  }
  if (keys.empty()) return Status::OK();
  std::vector<std::string> values;
  const std::vector<Status> statuses = store->MultiGet(cfs, keys, &values, snapshot);
  Sha256 sha;
  std::vector<Hash> level;
  for (const Read& r : reads) {
    const merkle::NodeId& id = ids[r.id];
    const bool derived = id.level < merkle::kLowestStoredLevel;
    for (size_t k = r.first; k < r.first + r.count; ++k) {
      auto what = [&] {
        return derived ? fmt::format("record {} (a leaf of the Merkle tree)",
                                     codec::GetFixed64BE(keys[k].data()))
                       : fmt::format("Merkle tree node (level {}, index {})", id.level, id.index);
      };
      if (statuses[k].IsNotFound()) {
        return Status::Corruption(fmt::format("{} is missing; run verify", what()));
      }
      if (!statuses[k].ok()) return statuses[k].WithContext(fmt::format("reading {}", what()));
      if (derived && values[k].size() < codec::kHeaderBytes) {
        return Status::Corruption(fmt::format("{} is too short to hold a chain hash", what()));
      }
      if (!derived && values[k].size() != 32) {
        return Status::Corruption(
            fmt::format("{} is {} bytes, not 32; run verify", what(), values[k].size()));
      }
    }
    if (!derived) {
      std::memcpy((*hashes)[r.id].data(), values[r.first].data(), 32);
      if (cache != nullptr) cache->Insert(id, (*hashes)[r.id]);
      continue;
    }
    // The perfect subtree over the records, level by level.
    level.clear();
    for (size_t k = r.first; k < r.first + r.count; ++k) {
      level.push_back(merkle::LeafHash(
          &sha, reinterpret_cast<const uint8_t*>(values[k].data() + codec::kOffHash)));
    }
    for (size_t n = level.size(); n > 1; n /= 2) {
      for (size_t j = 0; j < n / 2; ++j) level[j] = merkle::NodeHash(&sha, level[2 * j], level[2 * j + 1]);
    }
    (*hashes)[r.id] = level[0];
  }
  return Status::OK();
}

Result<Hash> RootAt(RocksStore* store, uint64_t size, NodeCache* cache) {
  std::vector<Hash> hashes;
  BASTION_RETURN_IF_ERROR(ReadNodes(store, merkle::Decompose(0, size), &hashes, nullptr, cache));
  Sha256 sha;
  return merkle::Fold(&sha, hashes.data(), hashes.size());
}

Result<merkle::CompactRange> LoadRange(RocksStore* store, uint64_t size) {
  std::vector<Hash> roots;
  BASTION_RETURN_IF_ERROR(ReadNodes(store, merkle::Decompose(0, size), &roots));
  return merkle::CompactRange::FromRoots(size, std::move(roots));
}

Status Upgrade(RocksStore* store, uint64_t head_seq, uint64_t batch_records) {
  BASTION_RETURN_IF_ERROR(store->CreateTree());
  uint64_t covered = 0;
  {
    std::string value;
    Status s = store->Get(store->meta(), kMetaTreeKey, &value);
    if (s.ok()) {
      if (value.size() != 8) {
        return Status::Corruption(fmt::format(
            "the tree mark (meta key 'tree') is {} bytes, not 8", value.size()));
      }
      covered = codec::GetFixed64(value.data());
      if (covered > head_seq) {
        return Status::Corruption(fmt::format(
            "the tree mark (meta key 'tree') names record {}, past the chain head {}", covered,
            head_seq));
      }
    } else if (!s.IsNotFound()) {
      return s;
    }
  }
  auto range = LoadRange(store, covered);
  if (!range.ok()) return range.status().WithContext("resuming the Merkle tree's construction");
  merkle::CompactRange tree = std::move(*range);
  Sha256 sha;
  rocksdb::WriteBatch wb;
  auto put_node = [&](uint8_t level, uint64_t index, const Hash& h) {
    if (level < merkle::kLowestStoredLevel) return;
    wb.Put(store->tree(), merkle::NodeKey({level, index}),
           rocksdb::Slice(reinterpret_cast<const char*>(h.data()), h.size()));
  };
  auto finish_batch = [&](uint64_t upto) -> Status {
    if (upto == head_seq) {
      wb.Delete(store->meta(), kMetaTreeKey);
      wb.Put(store->meta(), kMetaFormatKey, kFormatName);
    } else {
      std::string mark;
      codec::PutFixed64(&mark, upto);
      wb.Put(store->meta(), kMetaTreeKey, mark);
    }
    Status s = store->Write(&wb, /*sync=*/upto == head_seq);
    wb.Clear();
    return s;
  };
  if (covered == head_seq) return finish_batch(head_seq);
  auto it = store->NewIterator(store->records(), nullptr, /*scan=*/true);
  uint64_t seq = covered + 1;
  for (it->Seek(codec::RecordKey(seq)); it->Valid() && seq <= head_seq; it->Next(), ++seq) {
    const rocksdb::Slice key = it->key();
    if (key.size() != 8 || codec::GetFixed64BE(key.data()) != seq) {
      return Status::Corruption(fmt::format(
          "building the Merkle tree: record {} is missing or misplaced; run verify", seq));
    }
    codec::ValueView view;
    Status s = codec::ParseValue({it->value().data(), it->value().size()}, &view);
    if (!s.ok()) return s.WithContext(fmt::format("building the Merkle tree: record {}", seq));
    tree.AppendLeaf(&sha,
                    merkle::LeafHash(&sha, reinterpret_cast<const uint8_t*>(view.hash.data())),
                    put_node);
    if (seq == head_seq || (seq - covered) % batch_records == 0) {
      BASTION_RETURN_IF_ERROR(finish_batch(seq));
    }
  }
  BASTION_RETURN_IF_ERROR(store->IteratorStatus(it.get(), "building the Merkle tree"));
  if (seq <= head_seq) {
    return Status::Corruption(fmt::format(
        "building the Merkle tree: the records end at {} but the chain head names {}", seq - 1,
        head_seq));
  }
  return Status::OK();
}

}  // namespace bastion::tree
