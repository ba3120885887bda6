// Test-only helpers that reach below the Ledger API: a RocksDB handle on a
// closed ledger's directory (to tamper with what is stored), and codec
// helpers for building stored values by hand.
#ifndef BASTION_TESTS_LEDGER_RAW_STORE_H_
#define BASTION_TESTS_LEDGER_RAW_STORE_H_

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "bastion/ledger.h"
#include "ledger/record_codec.h"

namespace bastion::testing {

// The ledger's RocksDB, opened directly as a primary (the ledger must be
// closed). Every mutation is a plain Put/Delete: no chain, no index upkeep.
class RawDb {
 public:
  // Opens every column family the store has (a ledger of format 1 has no
  // `tree`), in the ledger's order.
  static std::unique_ptr<RawDb> Open(const std::string& path) {
    std::vector<std::string> names;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names);
    EXPECT_TRUE(s.ok()) << "listing " << path << "'s column families: " << s.ToString();
    if (!s.ok()) return nullptr;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const char* name : {"default", "records", "index", "meta", "tree"}) {
      if (std::find(names.begin(), names.end(), name) != names.end()) {
        cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
      }
    }
    auto raw = std::unique_ptr<RawDb>(new RawDb());
    rocksdb::DB* db = nullptr;
    s = rocksdb::DB::Open(rocksdb::DBOptions(), path, cfs, &raw->handles_, &db);
    EXPECT_TRUE(s.ok()) << "opening " << path << " with RocksDB: " << s.ToString();
    if (!s.ok()) return nullptr;
    raw->db_.reset(db);
    return raw;
  }
  ~RawDb() { Close(); }

  void Close() {
    if (!db_) return;
    for (auto* h : handles_) EXPECT_TRUE(db_->DestroyColumnFamilyHandle(h).ok());
    handles_.clear();
    EXPECT_TRUE(db_->Close().ok());
    db_.reset();
  }

  rocksdb::ColumnFamilyHandle* records() const { return handles_[1]; }
  rocksdb::ColumnFamilyHandle* index() const { return handles_[2]; }
  rocksdb::ColumnFamilyHandle* meta() const { return handles_[3]; }
  // nullptr when the store has no `tree` column family.
  rocksdb::ColumnFamilyHandle* tree() const { return handles_.size() > 4 ? handles_[4] : nullptr; }

  // Drops the `tree` column family: what a ledger of format 1 lacks.
  void DropTree() {
    ASSERT_NE(tree(), nullptr);
    ASSERT_TRUE(db_->DropColumnFamily(tree()).ok());
    ASSERT_TRUE(db_->DestroyColumnFamilyHandle(tree()).ok());
    handles_.pop_back();
  }
  // Creates the `tree` column family.
  void CreateTree() {
    ASSERT_EQ(tree(), nullptr);
    rocksdb::ColumnFamilyHandle* h = nullptr;
    ASSERT_TRUE(db_->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "tree", &h).ok());
    handles_.push_back(h);
  }
  rocksdb::DB* db() const { return db_.get(); }

  std::string Get(rocksdb::ColumnFamilyHandle* cf, const std::string& key) {
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf, key, &value);
    EXPECT_TRUE(s.ok()) << "raw get: " << s.ToString();
    return value;
  }
  void Put(rocksdb::ColumnFamilyHandle* cf, const std::string& key, const std::string& value) {
    rocksdb::Status s = db_->Put(rocksdb::WriteOptions(), cf, key, value);
    ASSERT_TRUE(s.ok()) << "raw put: " << s.ToString();
  }
  void Delete(rocksdb::ColumnFamilyHandle* cf, const std::string& key) {
    rocksdb::Status s = db_->Delete(rocksdb::WriteOptions(), cf, key);
    ASSERT_TRUE(s.ok()) << "raw delete: " << s.ToString();
  }
  std::vector<std::pair<std::string, std::string>> Scan(rocksdb::ColumnFamilyHandle* cf) {
    std::vector<std::pair<std::string, std::string>> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
    EXPECT_TRUE(it->status().ok());
    return out;
  }

 private:
  RawDb() = default;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

// The records column family's key of `seq`: 8 bytes, big-endian.
inline std::string SeqKey(uint64_t seq) {
  std::string k;
  codec::PutFixed64BE(&k, seq);
  return k;
}

// Copies a closed ledger's directory.
inline void CopyLedger(const std::string& from, const std::string& to) {
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
}

// The "erased" form of a stored value: flag bit set and the salt + personal
// section replaced by its 32-byte PersonalDigest. The chain hash is unchanged.
inline std::string ErasedView(const std::string& value) {
  codec::ValueView view;
  Status s = codec::ParseValue(value, &view);
  EXPECT_TRUE(s.ok()) << s.ToString();
  const Hash digest = codec::PersonalDigest(view.personal);
  const size_t plen_at = codec::kHeaderBytes + view.body.size();
  std::string out = value.substr(0, plen_at);
  out[codec::kOffFlags] = static_cast<char>(out[codec::kOffFlags] | codec::kFlagPersonalErased);
  const char len[4] = {32, 0, 0, 0};
  out.append(len, 4);
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

}  // namespace bastion::testing

#endif  // BASTION_TESTS_LEDGER_RAW_STORE_H_
