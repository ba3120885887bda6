#include "ledger/rocks_store.h"

#include "ledger/index_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <system_error>

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/options_util.h>

namespace bastion {
namespace {

namespace fs = std::filesystem;

// Every ledger has these; `tree` (format 2) follows them, absent from a
// ledger of format 1 until a writer upgrades it.
const char* const kColumnFamilies[] = {"default", "records", "index", "meta"};
constexpr const char* kTreeFamily = "tree";

// Keys that are inserted next to the previous key with the same prefix: a
// record key after the previous record, a posting block after the previous
// block of its value, a time key after the previous time key, the head over
// itself. RocksDB keeps an insert hint per prefix, so such an insert costs a
// few comparisons instead of a search from the top of the memtable's skip
// list (about 2 us per key in a full memtable).
class InsertNeighbourPrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "bastion.InsertNeighbourPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    if (key.size() == 8) return rocksdb::Slice(key.data(), 1);  // record: 0x00 | seq
    if (key.size() == index::kPostingKeyBytes &&
        static_cast<uint8_t>(key[0]) != static_cast<uint8_t>(index::Kind::kTime)) {
      return rocksdb::Slice(key.data(), 9);  // posting: kind | value hash
    }
    if (key.size() == index::kTimeKeyBytes) return rocksdb::Slice(key.data(), 1);
    // A tree node (first leaf | level): each level's nodes are written in
    // order, so the level (the last byte) keys the hint.
    if (key.size() == 9) return rocksdb::Slice(key.data() + 8, 1);
    return key;  // meta keys and checkpoints: the key itself
  }
  bool InDomain(const rocksdb::Slice& key) const override { return !key.empty(); }
};

class DiscardLogger final : public rocksdb::Logger {
 public:
  DiscardLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::HEADER_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

class ManualRecovery final : public rocksdb::EventListener {
 public:
  const char* Name() const override { return "bastion.ManualRecovery"; }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

rocksdb::Options BaseOptions() {
  rocksdb::Options o;
  // One thread writes at a time (the writer's lock), and insert hints need
  // the memtable written by one thread.
  o.allow_concurrent_memtable_write = false;
  o.max_background_jobs = 2;
  o.bytes_per_sync = 1 << 20;
  o.keep_log_file_num = 4;  // info logs (discarded anyway), not write-ahead logs
  // An erasure relies on an obsolete write-ahead log being deleted: neither
  // reused (a recycled log keeps its old bytes past the new end) nor archived.
  o.recycle_log_file_num = 0;
  o.WAL_ttl_seconds = 0;
  o.WAL_size_limit_MB = 0;
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  return o;
}

rocksdb::ColumnFamilyOptions FamilyOptions(const LedgerOptions& lo) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(lo.block_cache_bytes);
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = lo.write_buffer_bytes;
  cf.max_write_buffer_number = 4;
  // LZ4 decompresses about twice as fast as Snappy at a similar ratio; verify
  // and export scan every block.
  cf.compression = rocksdb::kLZ4Compression;
  cf.memtable_insert_with_hint_prefix_extractor = std::make_shared<InsertNeighbourPrefix>();
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

// The tree is read by point lookups only (a proof is ~log2(n) of them in
// one MultiGet): bloom filters let each skip the memtables and tables that do
// not hold its key, and its 32-byte hashes do not compress.
rocksdb::ColumnFamilyOptions TreeFamilyOptions(const LedgerOptions& lo) {
  rocksdb::ColumnFamilyOptions cf = FamilyOptions(lo);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(lo.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.whole_key_filtering = true;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.compression = rocksdb::kNoCompression;
  cf.memtable_prefix_bloom_size_ratio = 0.05;
  cf.memtable_whole_key_filtering = true;
  return cf;
}

// The ledger's column families, with `tree` when `with_tree`.
std::vector<rocksdb::ColumnFamilyDescriptor> Descriptors(const LedgerOptions& lo, bool with_tree) {
  const rocksdb::ColumnFamilyOptions cf = FamilyOptions(lo);
  std::vector<rocksdb::ColumnFamilyDescriptor> out;
  for (const char* name : kColumnFamilies) out.emplace_back(name, cf);
  if (with_tree) out.emplace_back(kTreeFamily, TreeFamilyOptions(lo));
  return out;
}

// Whether the store at `path` has the `tree` column family. A store that
// cannot be listed is left to the open to report.
bool HasTreeFamily(const std::string& path) {
  std::vector<std::string> families;
  if (!rocksdb::DB::ListColumnFamilies(BaseOptions(), path, &families).ok()) return true;
  return std::find(families.begin(), families.end(), kTreeFamily) != families.end();
}

// Keeps what RocksDB's recovery says about damaged write-ahead logs
// ("<path>/000004.log: dropping 123 bytes; Corruption: checksum mismatch").
class WalDamageLogger final : public rocksdb::Logger {
 public:
  explicit WalDamageLogger(std::vector<WalDamage>* damage)
      : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL), damage_(damage) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[1024];
    vsnprintf(line, sizeof(line), format, ap);
    const std::string_view text(line);
    const size_t at = text.find(".log: dropping ");
    if (at == std::string_view::npos) return;
    // A last record cut short by a crash is not damage (strict opens accept it).
    if (text.find("trailing data", at) != std::string_view::npos ||
        text.find("truncated", at) != std::string_view::npos) {
      return;
    }
    const size_t start = text.rfind('/', at);
    const size_t name_begin = start == std::string_view::npos ? text.rfind(' ', at) + 1 : start + 1;
    damage_->push_back({std::string(text.substr(name_begin, at + 4 - name_begin)),
                        std::string(text.substr(at + 6))});
  }

 private:
  std::vector<WalDamage>* damage_;
};

// A directory without CURRENT is a new ledger only if it holds none of the
// files a RocksDB database keeps: opening would otherwise create an empty
// database over them (and delete their tables as obsolete).
Status CheckNoOrphanedFiles(const std::string& path) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    const auto ends_with = [&](std::string_view suffix) {
      return name.size() > suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (name.rfind("MANIFEST-", 0) == 0 || ends_with(".sst") || ends_with(".log") ||
        ends_with(".ldb")) {
      return Status::Corruption(fmt::format(
          "ledger at '{}' has no CURRENT file but holds a ledger's files ({}, ...): CURRENT was "
          "deleted or the directory is damaged; nothing was changed",
          path, name));
    }
  }
  return Status::OK();
}

// RocksDB's own LOCK file is held by another process (one that does not take
// bastion.lock). Only RocksDB's message prefix is matched: a path or an I/O
// error naming, say, "/srv/blockstore" is not a lock conflict.
bool IsLockError(const rocksdb::Status& s) {
  const char* state = s.getState();
  return s.IsIOError() && state != nullptr &&
         std::string_view(state).starts_with("While lock file");
}

}  // namespace

void SetWriterOptions(rocksdb::DBOptions* options) {
  static const auto logger = std::make_shared<DiscardLogger>();
  options->info_log = logger;
  options->listeners.push_back(std::make_shared<ManualRecovery>());
}

Result<std::unique_ptr<DirLock>> DirLock::CreateAndAcquire(const std::string& dir,
                                                           std::string_view what) {
  std::error_code ec;
  const fs::path p(dir);
  if (fs::exists(p, ec) && !fs::is_directory(p, ec)) {
    return Status::InvalidArgument(
        fmt::format("{} at '{}' is a file, not a directory", what, dir));
  }
  fs::create_directories(p, ec);
  if (ec) {
    return Status::IOError(
        fmt::format("cannot create {} directory '{}': {}", what, dir, ec.message()));
  }
  return Acquire(dir, what);
}

Result<std::unique_ptr<DirLock>> DirLock::Acquire(const std::string& dir, std::string_view what) {
  std::error_code ec;
  const fs::path canonical = fs::canonical(dir, ec);
  if (ec) {
    return Status::IOError(fmt::format("cannot open {} at '{}': {}", what, dir, ec.message()));
  }
  const std::string file = (canonical / kFileName).string();
  int fd;
  do {
    fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    return Status::IOError(
        fmt::format("cannot open {} at '{}': cannot create its lock file '{}': {}", what, dir,
                    file, strerror(err)));
  }
  int rc;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return Status::Busy(fmt::format(
          "{} at '{}' is in use: the directory '{}' is already open for writing by another "
          "writer, in this or another process",
          what, dir, canonical.string()));
    }
    return Status::IOError(
        fmt::format("cannot lock {} at '{}' ('{}'): {}", what, dir, file, strerror(err)));
  }
  return std::unique_ptr<DirLock>(new DirLock(fd));
}

DirLock::~DirLock() { ::close(fd_); }  // closing the last descriptor releases the flock

Status RocksStore::Convert(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::OK();
  const std::string msg = fmt::format("{}: {}", context, s.ToString());
  if (s.IsNotFound()) return Status::NotFound(msg);
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
  if (s.IsBusy() || s.IsTryAgain()) return Status::Busy(msg);
  return Status::IOError(msg);
}

Result<std::unique_ptr<RocksStore>> RocksStore::OpenPrimary(const std::string& path,
                                                            const LedgerOptions& lo,
                                                            WalRecovery wal_recovery) {
  std::error_code ec;
  fs::path p(path);
  if (!p.has_filename() && p.has_parent_path()) p = p.parent_path();  // "x/led/" is "x/led"
  const fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, ec)) {
    return Status::NotFound(fmt::format(
        "cannot open ledger at '{}': parent directory '{}' does not exist", path,
        parent.string()));
  }
  if (fs::exists(p, ec) && !fs::is_directory(p, ec)) {
    return Status::InvalidArgument(
        fmt::format("cannot open ledger at '{}': it is a file, not a directory", path));
  }
  if (!fs::exists(p / "CURRENT", ec)) {
    if (fs::is_directory(p, ec)) BASTION_RETURN_IF_ERROR(CheckNoOrphanedFiles(path));
    if (!lo.create_if_missing) return Status::NotFound(fmt::format("no ledger at '{}'", path));
  }
  // The writer's claim comes first: nothing below may read or create a store
  // that another writer is using.
  fs::create_directory(p, ec);
  if (ec) {
    return Status::IOError(
        fmt::format("cannot create ledger directory '{}': {}", path, ec.message()));
  }
  auto lock = DirLock::Acquire(path, "ledger");
  if (!lock.ok()) {
    if (!lock.status().IsBusy()) return lock.status();
    return Status::Busy(lock.status().message() +
                        "; open it with OpenReader / Ledger.open(..., reader=True) to read it");
  }
  const bool has_db = fs::exists(p / "CURRENT", ec);
  bool with_tree = true;
  if (has_db) {
    std::vector<std::string> families;
    rocksdb::Status ls = rocksdb::DB::ListColumnFamilies(BaseOptions(), path, &families);
    if (!ls.ok()) {
      return Convert(ls, fmt::format("ledger at '{}' cannot be read (damaged CURRENT or MANIFEST?)",
                                     path));
    }
    for (const char* name : kColumnFamilies) {
      if (std::find(families.begin(), families.end(), name) == families.end()) {
        // A damaged MANIFEST also lists only "default"; the OPTIONS file that
        // RocksDB keeps beside it still names a ledger's column families.
        rocksdb::ConfigOptions config;
        config.ignore_unknown_options = true;
        config.ignore_unsupported_options = true;
        rocksdb::DBOptions saved_db;
        std::vector<rocksdb::ColumnFamilyDescriptor> saved;
        if (rocksdb::LoadLatestOptions(config, path, &saved_db, &saved).ok() &&
            std::any_of(saved.begin(), saved.end(), [&](const auto& d) { return d.name == name; })) {
          return Status::Corruption(fmt::format(
              "ledger at '{}' cannot be read: its MANIFEST lists no '{}' column family although "
              "its OPTIONS file does (damaged MANIFEST?)",
              path, name));
        }
        return Status::InvalidArgument(fmt::format(
            "'{}' holds a RocksDB database that is not a Bastion ledger (no '{}' column family)",
            path, name));
      }
    }
    // Format 1 has no tree: the writer creates it (CreateTree) once the
    // ledger is known to be sound.
    with_tree = std::find(families.begin(), families.end(), kTreeFamily) != families.end();
  }

  rocksdb::DBOptions options(BaseOptions());
  SetWriterOptions(&options);
  options.create_if_missing = lo.create_if_missing;
  options.create_missing_column_families = !has_db;
  // RocksDB's default (point-in-time) silently drops every record after a
  // damaged one, acknowledged or not. This mode still tolerates a last record
  // cut short by a crash (never acknowledged), and fails on anything else.
  options.wal_recovery_mode = wal_recovery == WalRecovery::kStrict
                                  ? rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords
                                  : rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  auto store = std::unique_ptr<RocksStore>(new RocksStore());
  store->path_ = path;
  store->lock_ = std::move(*lock);
  rocksdb::DB* raw = nullptr;
  store->family_options_ = TreeFamilyOptions(lo);
  rocksdb::Status s =
      rocksdb::DB::Open(options, path, Descriptors(lo, with_tree), &store->handles_, &raw);
  if (!s.ok()) {
    if (IsLockError(s)) {
      return Status::Busy(fmt::format(
          "ledger at '{}' is already open for writing by another Ledger (in this or another "
          "process); open it with OpenReader / Ledger.open(..., reader=True) to read it",
          path));
    }
    return Convert(s, fmt::format("cannot open ledger at '{}'", path));
  }
  store->db_.reset(raw);
  return store;
}

Result<std::unique_ptr<RocksStore>> RocksStore::OpenSecondary(const std::string& path,
                                                              const ReaderOptions& ro) {
  std::error_code ec;
  if (!fs::exists(fs::path(path) / "CURRENT", ec)) {
    if (fs::is_directory(path, ec)) BASTION_RETURN_IF_ERROR(CheckNoOrphanedFiles(path));
    return Status::NotFound(fmt::format("no ledger at '{}'", path));
  }
  auto store = std::unique_ptr<RocksStore>(new RocksStore());
  store->path_ = path;
  store->secondary_ = true;
  if (ro.secondary_path.empty()) {
    std::string tmpl = (fs::temp_directory_path(ec) / "bastion-reader-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      return Status::IOError("cannot create a temporary directory for the ledger reader");
    }
    store->secondary_path_ = tmpl;
    store->remove_secondary_path_ = true;
  } else {
    store->secondary_path_ = ro.secondary_path;
  }
  rocksdb::DBOptions options(BaseOptions());
  options.max_open_files = -1;  // required by secondary instances
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s;
  // TryAgain means CURRENT names a MANIFEST that is not there: normal for a
  // moment while the writer switches manifests, damage if it persists.
  for (int attempt = 0; attempt < 5; ++attempt) {
    s = rocksdb::DB::OpenAsSecondary(options, path, store->secondary_path_,
                                     Descriptors(LedgerOptions{}, HasTreeFamily(path)),
                                     &store->handles_, &raw);
    if (!s.IsTryAgain()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20 << attempt));
  }
  if (!s.ok()) {
    if (s.IsTryAgain()) {
      return Status::Corruption(fmt::format(
          "ledger at '{}' cannot be read: its CURRENT file names a MANIFEST that does not "
          "exist ({})",
          path, s.ToString()));
    }
    Status out = Convert(s, fmt::format("cannot open ledger at '{}' for reading", path));
    if (s.IsInvalidArgument()) {
      out = Status::InvalidArgument(fmt::format(
          "'{}' is not a Bastion ledger ({})", path, s.ToString()));
    }
    return out;
  }
  store->db_.reset(raw);
  return store;
}

Result<std::unique_ptr<RocksStore>> RocksStore::OpenReadOnly(const std::string& path,
                                                             rocksdb::WALRecoveryMode mode,
                                                             std::vector<WalDamage>* damage) {
  rocksdb::DBOptions options(BaseOptions());
  options.wal_recovery_mode = mode;
  options.info_log = std::make_shared<WalDamageLogger>(damage);
  auto store = std::unique_ptr<RocksStore>(new RocksStore());
  store->path_ = path;
  store->secondary_ = true;  // no snapshots needed: nothing writes to it
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(
      options, path, Descriptors(LedgerOptions{}, HasTreeFamily(path)), &store->handles_, &raw);
  if (!s.ok()) return Convert(s, fmt::format("cannot read ledger at '{}'", path));
  store->db_.reset(raw);
  return store;
}

RocksStore::~RocksStore() { Close(); }

Status RocksStore::CreateTree() {
  if (tree() != nullptr) return Status::OK();
  rocksdb::ColumnFamilyHandle* h = nullptr;
  BASTION_RETURN_IF_ERROR(Convert(db_->CreateColumnFamily(family_options_, kTreeFamily, &h),
                                  "creating the ledger's tree column family"));
  handles_.push_back(h);
  return Status::OK();
}

Status RocksStore::Close() {
  Status result;
  if (db_) {
    for (auto* h : handles_) {
      rocksdb::Status s = db_->DestroyColumnFamilyHandle(h);
      if (result.ok() && !s.ok()) result = Convert(s, "closing ledger");
    }
    handles_.clear();
    rocksdb::Status s = db_->Close();
    if (result.ok() && !s.ok() && !s.IsAborted()) result = Convert(s, "closing ledger");
    db_.reset();
  }
  lock_.reset();
  if (remove_secondary_path_) {  // also after a failed open
    std::error_code ec;
    fs::remove_all(secondary_path_, ec);
    remove_secondary_path_ = false;
  }
  return result;
}

Status RocksStore::Write(rocksdb::WriteBatch* batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return Convert(db_->Write(wo, batch), "writing to the ledger");
}

Status RocksStore::SyncWal() { return Convert(db_->SyncWAL(), "syncing the ledger's log"); }

std::shared_ptr<const rocksdb::Snapshot> RocksStore::Snapshot() {
  if (secondary_) return nullptr;
  rocksdb::DB* db = db_.get();
  return std::shared_ptr<const rocksdb::Snapshot>(
      db->GetSnapshot(), [db](const rocksdb::Snapshot* s) { db->ReleaseSnapshot(s); });
}

Status RocksStore::Get(rocksdb::ColumnFamilyHandle* cf, std::string_view key, std::string* value,
                       const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  rocksdb::Status s = db_->Get(ro, cf, rocksdb::Slice(key.data(), key.size()), value);
  return Convert(s, "reading the ledger");
}

std::vector<Status> RocksStore::MultiGet(rocksdb::ColumnFamilyHandle* cf,
                                         const std::vector<std::string>& keys,
                                         std::vector<std::string>* values,
                                         const rocksdb::Snapshot* snapshot) {
  return MultiGet(std::vector<rocksdb::ColumnFamilyHandle*>(keys.size(), cf), keys, values,
                  snapshot);
}

std::vector<Status> RocksStore::MultiGet(const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
                                         const std::vector<std::string>& keys,
                                         std::vector<std::string>* values,
                                         const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  // The batched form: keys of one table are looked up together.
  const size_t n = keys.size();
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> pinned(n);
  std::vector<rocksdb::Status> statuses(n);
  std::vector<rocksdb::ColumnFamilyHandle*> families(cfs);
  db_->MultiGet(ro, n, families.data(), slices.data(), pinned.data(), statuses.data());
  values->resize(n);
  std::vector<Status> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (statuses[i].ok()) (*values)[i].assign(pinned[i].data(), pinned[i].size());
    out.push_back(Convert(statuses[i], "reading the ledger"));
  }
  return out;
}

std::unique_ptr<rocksdb::Iterator> RocksStore::NewIterator(rocksdb::ColumnFamilyHandle* cf,
                                                           const rocksdb::Snapshot* snapshot,
                                                           bool scan) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  if (scan) {
    ro.readahead_size = 2 << 20;
    ro.fill_cache = false;  // a full scan would only evict the hot blocks
    // Every record is hash-checked or strictly decoded on the way out, which
    // catches a damaged block as well; skipping the block CRC saves ~10%.
    ro.verify_checksums = false;
  }
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(ro, cf));
}

Status RocksStore::IteratorStatus(rocksdb::Iterator* it, std::string_view context) {
  return Convert(it->status(), context);
}

Status RocksStore::CatchUpWithPrimary() {
  return Convert(db_->TryCatchUpWithPrimary(), "catching up with the ledger's writer");
}

Status RocksStore::Resume() { return Convert(db_->Resume(), "recovering the ledger's store"); }

Status RocksStore::FlushMemtables() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  fo.allow_write_stall = true;
  return Convert(db_->Flush(fo, handles_), "flushing the ledger's memtables");
}

Status RocksStore::CompactRange(rocksdb::ColumnFamilyHandle* cf, std::string_view begin,
                                std::string_view end) {
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  const rocksdb::Slice b(begin.data(), begin.size()), e(end.data(), end.size());
  return Convert(db_->CompactRange(co, cf, &b, &e), "compacting the ledger");
}

Status RocksStore::DeleteObsoleteFiles() {
  // With deletions enabled (they always are here) this finds the obsolete
  // files by listing the directory and deletes them before returning.
  return Convert(db_->EnableFileDeletions(/*force=*/true), "deleting the ledger's obsolete files");
}

uint64_t RocksStore::OldestSnapshotSequence() const {
  uint64_t seq = 0;
  if (!db_->GetIntProperty(rocksdb::DB::Properties::kOldestSnapshotSequence, &seq)) return 0;
  return seq;
}

uint64_t RocksStore::DiskBytes() const {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path_, ec)) {
    if (entry.is_regular_file(ec)) total += entry.file_size(ec);
  }
  return total;
}

}  // namespace bastion
