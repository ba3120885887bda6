// The ledger's RocksDB database: column families "records", "index" and
// "meta", opened as the primary (read-write) or as a secondary instance that
// follows a primary in another process. The only place that turns
// rocksdb::Status into bastion::Status. The budget state's store shares the
// writer's lock and options from here.
#ifndef BASTION_LEDGER_ROCKS_STORE_H_
#define BASTION_LEDGER_ROCKS_STORE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "bastion/ledger.h"
#include "bastion/status.h"

namespace bastion {

// The one-writer claim on a store directory: an exclusive flock on the file
// `bastion.lock` inside it, held until the object dies. flock conflicts
// between any two open file descriptions of the file, so a second claim fails
// whatever path spelling (symlink, "./", "//", trailing "/") leads to the
// directory, in this process or another. (RocksDB's own LOCK file is tracked
// per process by path string and misses such aliases.) The kernel drops the
// claim when the process dies.
class DirLock {
 public:
  // `what` names the store in messages ("ledger", "budget state"). Busy if
  // the directory is claimed; IOError if the lock file cannot be created.
  // The directory must exist.
  static Result<std::unique_ptr<DirLock>> Acquire(const std::string& dir, std::string_view what);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

  static constexpr const char* kFileName = "bastion.lock";

  // Creates `dir` (and its parents) for a store named `what` and acquires
  // it: InvalidArgument when a file stands there, IOError when it cannot be
  // created, and Acquire's errors.
  static Result<std::unique_ptr<DirLock>> CreateAndAcquire(const std::string& dir,
                                                           std::string_view what);

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

// Sets what every RocksDB database Bastion writes needs beside its tuning:
//  - RocksDB's own info log is discarded. Its default, a LOG file in the
//    store's directory written by background threads, is one more file a full
//    disk breaks outside any call that could report it; every failure that
//    matters reaches a caller as a Status.
//  - No automatic recovery after a failed write: RocksDB would retry in a
//    background thread every few seconds and refuse Resume() meanwhile. The
//    store recovers through Resume(), called by the next write.
void SetWriterOptions(rocksdb::DBOptions* options);

// What a primary open does with a damaged write-ahead log.
enum class WalRecovery {
  // Fails with Corruption (and changes nothing); only a last record cut short
  // by a crash while it was written is dropped.
  kStrict,
  // Recovers the records before the first damaged one and drops the rest
  // (Ledger::Repair only).
  kPointInTime,
};

// One damaged write-ahead log as RocksDB's recovery reported it.
struct WalDamage {
  std::string file;  // file name, e.g. "000004.log"
  std::string what;  // e.g. "dropping 21847 bytes; Corruption: checksum mismatch"
};

class RocksStore {
 public:
  static Result<std::unique_ptr<RocksStore>> OpenPrimary(
      const std::string& path, const LedgerOptions& options,
      WalRecovery wal_recovery = WalRecovery::kStrict);
  static Result<std::unique_ptr<RocksStore>> OpenSecondary(const std::string& path,
                                                           const ReaderOptions& options);
  // A read-only instance that changes nothing on disk (not even RocksDB's
  // info log), for finding out what a damaged log still holds: its write-ahead
  // logs are replayed with `mode`, and the damage replaying met is added to
  // `damage`. Not for use beside a writer.
  static Result<std::unique_ptr<RocksStore>> OpenReadOnly(const std::string& path,
                                                          rocksdb::WALRecoveryMode mode,
                                                          std::vector<WalDamage>* damage);
  ~RocksStore();

  rocksdb::ColumnFamilyHandle* records() const { return handles_[1]; }
  rocksdb::ColumnFamilyHandle* index() const { return handles_[2]; }
  rocksdb::ColumnFamilyHandle* meta() const { return handles_[3]; }
  // The Merkle tree's nodes and checkpoints; nullptr for a ledger of format 1
  // until CreateTree.
  rocksdb::ColumnFamilyHandle* tree() const {
    return handles_.size() > 4 ? handles_[4] : nullptr;
  }
  // Creates the `tree` column family if it is missing (primary only).
  Status CreateTree();
  bool secondary() const { return secondary_; }
  const std::string& path() const { return path_; }

  // A consistent point-in-time view for a multi-step read; nullptr on a
  // secondary instance, whose view changes only in CatchUpWithPrimary.
  std::shared_ptr<const rocksdb::Snapshot> Snapshot();

  Status Write(rocksdb::WriteBatch* batch, bool sync);
  Status SyncWal();
  // NotFound if the key is absent.
  Status Get(rocksdb::ColumnFamilyHandle* cf, std::string_view key, std::string* value,
             const rocksdb::Snapshot* snapshot = nullptr);
  // One status per key.
  std::vector<Status> MultiGet(rocksdb::ColumnFamilyHandle* cf,
                               const std::vector<std::string>& keys,
                               std::vector<std::string>* values,
                               const rocksdb::Snapshot* snapshot = nullptr);
  // Key i read from column family cfs[i], all in one call.
  std::vector<Status> MultiGet(const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
                               const std::vector<std::string>& keys,
                               std::vector<std::string>* values,
                               const rocksdb::Snapshot* snapshot = nullptr);
  // `scan`: the caller reads long ranges (enables readahead).
  std::unique_ptr<rocksdb::Iterator> NewIterator(rocksdb::ColumnFamilyHandle* cf,
                                                 const rocksdb::Snapshot* snapshot = nullptr,
                                                 bool scan = false);
  // Status of an iterator once it is no longer Valid().
  Status IteratorStatus(rocksdb::Iterator* it, std::string_view context);
  Status CatchUpWithPrimary();
  // After a failed write RocksDB refuses writes (a "background error") until
  // this succeeds: it writes the memtables out and starts a new log, so it
  // needs free space. OK when there was no error.
  Status Resume();
  uint64_t DiskBytes() const;

  // For an erasure's scrub (erase.cc), which must leave no old value on disk.
  // Writes every column family's memtable to a table file, waiting for it;
  // the write-ahead logs that held them become obsolete.
  Status FlushMemtables();
  // Rewrites every table file holding keys in [begin, end] of `cf`, down to
  // and including the last level, dropping overwritten and deleted values
  // that no snapshot needs.
  Status CompactRange(rocksdb::ColumnFamilyHandle* cf, std::string_view begin,
                      std::string_view end);
  // Deletes every file of the directory the store no longer uses (old logs,
  // compacted tables, old MANIFEST and OPTIONS files), now. A table file an
  // open iterator still reads is deleted when the iterator is.
  Status DeleteObsoleteFiles();
  // RocksDB's sequence number of the oldest snapshot alive; 0 when none is.
  uint64_t OldestSnapshotSequence() const;
  // RocksDB's sequence number of the last write: 0 for a store never written.
  uint64_t LatestSequenceNumber() const { return db_->GetLatestSequenceNumber(); }
  Status Close();

  // The single conversion point from RocksDB's status.
  static Status Convert(const rocksdb::Status& s, std::string_view context);

 private:
  RocksStore() = default;
  std::string path_;
  std::string secondary_path_;
  bool remove_secondary_path_ = false;
  bool secondary_ = false;
  std::unique_ptr<DirLock> lock_;  // the primary's claim; released after the db closes
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyOptions family_options_;  // the tree's, for CreateTree
};

}  // namespace bastion

#endif  // BASTION_LEDGER_ROCKS_STORE_H_
