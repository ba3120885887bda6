#include "bastion/ledger.h"

#include <openssl/rand.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <shared_mutex>

#include <fmt/format.h>

#include "bastion/evidence.h"
#include "ledger/checkpointer.h"
#include "ledger/erase.h"
#include "ledger/index_keys.h"
#include "ledger/query_engine.h"
#include "ledger/merkle.h"
#include "ledger/record_codec.h"
#include "ledger/rocks_store.h"
#include "ledger/sharded.h"
#include "ledger/tree_store.h"
#include "ledger/verifier.h"
#include "ledger/writer.h"
#include "util/path_arg.h"
#include "util/sha256.h"

namespace bastion {

std::string HashToHex(const Hash& h) {
  static const char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    out[2 * i] = kHex[h[i] >> 4];
    out[2 * i + 1] = kHex[h[i] & 15];
  }
  return out;
}

std::string_view DurabilityName(Durability d) {
  switch (d) {
    case Durability::kSync: return "sync";
    case Durability::kGroup: return "group";
    case Durability::kAsync: return "async";
  }
  return "group";
}

std::optional<Durability> DurabilityFromName(std::string_view name) {
  if (name == "sync") return Durability::kSync;
  if (name == "group") return Durability::kGroup;
  if (name == "async") return Durability::kAsync;
  return std::nullopt;
}

std::string_view VerifyProblemName(VerifyProblem p) {
  switch (p) {
    case VerifyProblem::kNone: return "none";
    case VerifyProblem::kUndecodable: return "undecodable";
    case VerifyProblem::kHashMismatch: return "hash_mismatch";
    case VerifyProblem::kBrokenLink: return "broken_link";
    case VerifyProblem::kGap: return "gap";
    case VerifyProblem::kMisplaced: return "misplaced";
    case VerifyProblem::kTruncated: return "truncated";
    case VerifyProblem::kHeadMismatch: return "head_mismatch";
    case VerifyProblem::kExtraRecords: return "extra_records";
    case VerifyProblem::kIndexInconsistent: return "index_inconsistent";
    case VerifyProblem::kCheckpointMismatch: return "checkpoint_mismatch";
    case VerifyProblem::kRolledBack: return "rolled_back";
    case VerifyProblem::kTreeInconsistent: return "tree_inconsistent";
  }
  return "unknown";
}

Result<StoredRecord> DecodeStoredRecord(std::string_view encoded) {
  StoredRecord out;
  Status s = codec::DecodeValue(encoded, &out);
  if (!s.ok()) return s;
  return out;
}

class Ledger::Impl {
 public:
  std::unique_ptr<RocksStore> store;
  std::unique_ptr<Writer> writer;  // null for readers, and once closed
  // A sharded reader reads its shards through this, and has no store.
  std::unique_ptr<ShardedReader> sharded;
  bool reader = false;
  LedgerOptions options;
  std::string path;
  // Shared by every operation, exclusive for Close and Refresh.
  mutable std::shared_mutex mu;
  bool closed = false;
  std::mutex erase_mu;  // one erasure at a time
  // Scheduled checkpoints (LedgerOptions::checkpoints); null without a key.
  std::unique_ptr<Checkpointer> checkpointer;
  std::once_flag checkpoints_stopped;
  // The Merkle tree covers the records (format 2). False for a reader of a
  // ledger of format 1; updated by Refresh.
  bool has_tree = false;
  // Upper tree nodes read by proofs. A reader clears it on Refresh: after a
  // repair the records past the damage, and the nodes over them, change.
  tree::NodeCache nodes;

  Status CheckTree() const {
    if (has_tree) return Status::OK();
    return Status::FailedPrecondition(fmt::format(
        "ledger at '{}' has format 1 and no Merkle tree: open it for writing once to build its "
        "Merkle tree (then reopen this reader)",
        path));
  }

  // The number of records the tree covers: the head.
  Result<uint64_t> TreeSize() {
    if (writer) return writer->head().seq;
    auto head = ReadStoredHead();
    if (!head.ok()) return head.status();
    return head->seq;
  }

  // Whether the stored format is 2 and the tree can be read.
  bool ReadsTree() {
    std::string format;
    return store->tree() != nullptr &&
           store->Get(store->meta(), kMetaFormatKey, &format).ok() && format == kFormatName;
  }

  Status CheckOpen() const {
    if (closed) return Status::FailedPrecondition(fmt::format("ledger at '{}' is closed", path));
    return Status::OK();
  }

  // FailedPrecondition on a sharded reader: `what` belongs to one shard.
  Status CheckOneChain(std::string_view what) const {
    if (sharded) return sharded->PerShard(what);
    return Status::OK();
  }

  Result<Head> ReadStoredHead() {
    std::string value;
    Status s = store->Get(store->meta(), kMetaHeadKey, &value);
    if (s.IsNotFound()) return Head{};
    if (!s.ok()) return s;
    Head head;
    if (!DecodeHead(value, &head)) {
      return Status::Corruption(fmt::format("ledger at '{}': the chain head is unreadable", path));
    }
    return head;
  }

  // Fresh salts for `n` records, from one call to the random generator.
  static Status Salts(size_t n, std::vector<uint8_t>* salts) {
    salts->resize(n * codec::kSaltBytes);
    if (RAND_bytes(salts->data(), static_cast<int>(salts->size())) != 1) {
      return Status::Internal("the system random generator failed");
    }
    return Status::OK();
  }

  Status Encode(Record& r, PendingRecord* out) {
    uint8_t salt[codec::kSaltBytes];
    BASTION_RETURN_IF_ERROR(codec::NewSalt(salt));
    return Encode(r, salt, out);
  }

  Status Encode(Record& r, const uint8_t* salt, PendingRecord* out) {
    BASTION_RETURN_IF_ERROR(ValidateRecord(r));
    if (r.timestamp_ns == 0) {
      r.timestamp_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    }
    codec::EncodeValue(r, salt, &out->value, &out->personal_digest);
    if (out->value.size() > kMaxRecordBytes) {
      return Status::InvalidArgument(fmt::format("record encodes to {} bytes, over the {}-byte limit",
                                                 out->value.size(), kMaxRecordBytes));
    }
    out->index = index::EntriesFor(r);
    out->timestamp_ns = r.timestamp_ns;
    return Status::OK();
  }

  Result<uint64_t> Submit(std::vector<PendingRecord>* pending, Durability d,
                          bool deferred = false) {
    const bool awaited = !deferred && d != Durability::kAsync;
    for (auto& p : *pending) {
      p.sync = d == Durability::kSync;
      p.awaited = awaited;
    }
    using Handoff = Writer::Handoff;
    const size_t n = pending->size();
    auto ticket = writer->Submit(pending, deferred                  ? Handoff::kDeferred
                                          : d == Durability::kAsync ? Handoff::kWriter
                                                                    : Handoff::kCaller);
    if (!ticket.ok()) return ticket.status();
    if (!awaited) return ticket->first;
    BASTION_RETURN_IF_ERROR(
        writer->Wait(ticket->first + n - 1, ticket->epoch, d == Durability::kSync));
    return ticket->first;
  }
};

namespace {

namespace fs = std::filesystem;

// Records per write batch while a writer builds the tree of a format-1 ledger.
constexpr uint64_t kUpgradeBatchRecords = 65536;

// The sequence number the stored chain head names; 0 when there is none.
Result<uint64_t> StoredHeadSeq(RocksStore* st) {
  std::string value;
  Status s = st->Get(st->meta(), kMetaHeadKey, &value);
  if (s.IsNotFound()) return uint64_t{0};
  if (!s.ok()) return s;
  Head head;
  if (!DecodeHead(value, &head)) return Status::Corruption("the chain head is unreadable");
  return head.seq;
}

// The last stored record's sequence number, if any.
Result<std::optional<uint64_t>> LastStoredSeq(RocksStore* st) {
  auto it = st->NewIterator(st->records());
  it->SeekToLast();
  if (it->Valid()) {
    if (it->key().size() != 8) return std::optional<uint64_t>();  // verify describes it
    return std::optional<uint64_t>(codec::GetFixed64BE(it->key().data()));
  }
  BASTION_RETURN_IF_ERROR(st->IteratorStatus(it.get(), "reading the ledger's last record"));
  return std::optional<uint64_t>();
}

// Checks the format marker. `*fresh` is set when there is none because the
// store was never written to (a writer is creating it).
Status CheckFormatMarker(RocksStore* st, const std::string& path, bool* fresh) {
  *fresh = false;
  std::string format;
  Status s = st->Get(st->meta(), kMetaFormatKey, &format);
  if (s.IsNotFound()) {
    if (st->LatestSequenceNumber() == 0) {
      *fresh = true;
      return Status::OK();
    }
    return Status::Corruption(fmt::format(
        "ledger at '{}' has no format marker (meta key 'format') although it has been written "
        "to: its files are damaged or were changed behind the ledger's back",
        path));
  }
  if (!s.ok()) return s.WithContext(fmt::format("ledger at '{}': reading the format marker", path));
  if (format == kFormatName || format == kFormat1Name) return Status::OK();
  constexpr std::string_view kPrefix = "bastion-ledger/";
  const bool other_version =
      format.size() > kPrefix.size() && format.compare(0, kPrefix.size(), kPrefix) == 0 &&
      std::all_of(format.begin() + kPrefix.size(), format.end(),
                  [](char c) { return c >= '0' && c <= '9'; });
  if (other_version) {
    return Status::InvalidArgument(fmt::format(
        "ledger at '{}' has format '{}'; this version of Bastion reads '{}' and '{}'", path,
        format.substr(0, 64), kFormat1Name, kFormatName));
  }
  std::string shown;
  for (char c : format.substr(0, 64)) {
    shown += c >= 0x20 && c < 0x7f ? std::string(1, c)
                                   : fmt::format("\\x{:02x}", static_cast<uint8_t>(c));
  }
  return Status::Corruption(fmt::format(
      "ledger at '{}': the format marker (meta key 'format') is garbled: '{}' ({} bytes); "
      "expected '{}'",
      path, shown, format.size(), kFormatName));
}

// What replaying a damaged write-ahead log read-only finds.
struct WalDiagnosis {
  std::vector<WalDamage> damage;  // empty: the logs replay cleanly
  uint64_t last_intact_seq = 0;   // the head before the first damaged record
  uint64_t lost_through_seq = 0;  // the last record seen past the damage; 0: none
};

// Changes nothing on disk.
Result<WalDiagnosis> DiagnoseWal(const std::string& path) {
  WalDiagnosis d;
  {
    auto st = RocksStore::OpenReadOnly(path, rocksdb::WALRecoveryMode::kPointInTimeRecovery,
                                       &d.damage);
    if (!st.ok()) return st.status();
    auto seq = StoredHeadSeq(st->get());
    if (!seq.ok()) return seq.status();
    d.last_intact_seq = *seq;
  }
  if (d.damage.empty()) return d;
  std::vector<WalDamage> ignored;
  auto st = RocksStore::OpenReadOnly(path, rocksdb::WALRecoveryMode::kSkipAnyCorruptedRecords,
                                     &ignored);
  if (st.ok()) {
    auto seq = StoredHeadSeq(st->get());
    if (seq.ok() && *seq > d.last_intact_seq) d.lost_through_seq = *seq;
  }
  return d;
}

std::string DamagedFiles(const WalDiagnosis& d) {
  std::string out;
  for (const auto& w : d.damage) {
    if (out.find(w.file) != std::string::npos) continue;
    if (!out.empty()) out += ", ";
    out += w.file;
  }
  return out;
}

std::string LossText(const WalDiagnosis& d) {
  if (d.lost_through_seq == 0) {
    return fmt::format("records after {} are lost, if there were any", d.last_intact_seq);
  }
  return fmt::format("records {}..{} are lost (and any later ones the damage hides)",
                     d.last_intact_seq + 1, d.lost_through_seq);
}

// Explains a failed open: when the write-ahead log is what is damaged, names
// it, the last intact record and the repair; otherwise returns `error`.
Status ExplainOpenError(const std::string& path, const Status& error) {
  if (!error.IsCorruption()) return error;
  auto d = DiagnoseWal(path);
  if (!d.ok() || d->damage.empty()) return error;
  return Status::Corruption(fmt::format(
      "ledger at '{}': write-ahead log {} is damaged ({}); the last intact record is {}. "
      "Nothing was changed. A repair keeps records 1..{} and records the loss in the chain; "
      "{}. Run `bastion ledger repair {} --accept-loss` (Ledger.repair / Ledger::Repair with "
      "accept_loss)",
      path, DamagedFiles(*d), d->damage.front().what, d->last_intact_seq, d->last_intact_seq,
      LossText(*d), path));
}

// Writes the postings of records a crash left out of the posting lists (they
// are gathered in memory for a while), and the index mark where it is absent,
// so that every batch written from now on can rely on it. Returns the mark.
Result<uint64_t> RecoverPostings(RocksStore* st, uint64_t head_seq) {
  auto mark = ReadIndexMark(st, nullptr);
  if (!mark.ok()) return mark.status();
  auto indexed = IndexedUpTo(*mark, head_seq);
  if (!indexed.ok()) return indexed.status();
  if (mark->has_value() && *indexed == head_seq) return head_seq;
  std::vector<PostingEntry> entries;
  auto it = st->NewIterator(st->records(), nullptr, /*scan=*/true);
  for (it->Seek(codec::RecordKey(*indexed + 1)); it->Valid(); it->Next()) {
    const uint64_t seq = it->key().size() == 8 ? codec::GetFixed64BE(it->key().data()) : 0;
    codec::ValueView view;
    index::IndexedFields fields;
    Status d = codec::ParseValue({it->value().data(), it->value().size()}, &view);
    if (d.ok()) d = codec::DecodeFields(view, &fields);
    if (!d.ok()) {
      return d.WithContext(fmt::format("rebuilding the postings of record {}", seq));
    }
    AddPostingEntries(index::EntriesFor(fields), seq, &entries);
  }
  BASTION_RETURN_IF_ERROR(st->IteratorStatus(it.get(), "rebuilding the ledger's postings"));
  rocksdb::WriteBatch wb;
  PutPostingBlocks(st, &entries, head_seq, &wb);
  BASTION_RETURN_IF_ERROR(st->Write(&wb, /*sync=*/true));
  entries.clear();
  return head_seq;
}

}  // namespace

Ledger::Ledger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Ledger::~Ledger() { (void)Close(); }

Result<std::unique_ptr<Ledger>> Ledger::Open(const std::string& path, const LedgerOptions& options) {
  BASTION_RETURN_IF_ERROR(CheckPathArgument(path, "ledger path"));
  if (options.queue_capacity == 0 || options.max_batch_records == 0) {
    return Status::InvalidArgument("queue_capacity and max_batch_records must be positive");
  }
  return OpenWriter(path, options, /*point_in_time_recovery=*/false);
}

Result<std::unique_ptr<Ledger>> Ledger::OpenWriter(const std::string& path,
                                                   const LedgerOptions& options,
                                                   bool point_in_time_recovery) {
  auto store = RocksStore::OpenPrimary(
      path, options, point_in_time_recovery ? WalRecovery::kPointInTime : WalRecovery::kStrict);
  if (!store.ok()) return ExplainOpenError(path, store.status());
  auto impl = std::make_unique<Impl>();
  impl->store = std::move(*store);
  impl->options = options;
  impl->path = path;
  RocksStore* st = impl->store.get();

  bool fresh = false;
  BASTION_RETURN_IF_ERROR(CheckFormatMarker(st, path, &fresh));
  if (fresh) {
    rocksdb::WriteBatch wb;
    wb.Put(st->meta(), kMetaFormatKey, kFormatName);
    BASTION_RETURN_IF_ERROR(st->Write(&wb, /*sync=*/true));
  }
  // An erasure whose scrub a crash interrupted: its old values go first.
  if (Status s = ResumeScrub(st); !s.ok()) {
    return s.WithContext(fmt::format("ledger at '{}'", path));
  }

  auto head = impl->ReadStoredHead();
  if (!head.ok()) return head.status();
  auto last_stored = LastStoredSeq(st);
  if (!last_stored.ok()) return last_stored.status().WithContext(fmt::format("ledger at '{}'", path));
  const std::optional<uint64_t> last = *last_stored;
  if (last.value_or(0) != head->seq) {
    return Status::Corruption(fmt::format(
        "ledger at '{}': the chain head names record {} but the last stored record is {}; "
        "run verify on a reader to see what is wrong",
        path, head->seq, last.value_or(0)));
  }
  if (head->seq > 0) {
    std::string format;
    auto rec = st->Get(st->records(), codec::RecordKey(head->seq), &format);
    codec::ValueView view;
    if (!rec.ok() || !codec::ParseValue(format, &view).ok() ||
        std::memcmp(view.hash.data(), head->hash.data(), 32) != 0) {
      return Status::Corruption(fmt::format(
          "ledger at '{}': the chain head does not match record {}; run verify on a reader",
          path, head->seq));
    }
  }
  auto indexed = RecoverPostings(st, head->seq);
  if (!indexed.ok()) return indexed.status().WithContext(fmt::format("ledger at '{}'", path));
  if (!impl->ReadsTree()) {
    // Format 1: build the Merkle tree over the existing records first.
    Status s = tree::Upgrade(st, head->seq, kUpgradeBatchRecords);
    if (!s.ok()) {
      return s.WithContext(fmt::format("ledger at '{}': upgrading to format 2", path));
    }
  }
  auto tree = tree::LoadRange(st, head->seq);
  if (!tree.ok()) return tree.status().WithContext(fmt::format("ledger at '{}'", path));
  impl->has_tree = true;
  impl->writer = std::make_unique<Writer>(st, options, *head, *indexed, std::move(*tree));
  std::unique_ptr<Ledger> ledger(new Ledger(std::move(impl)));
  if (const auto& key = options.checkpoints.key) {
    auto stored = ledger->Checkpoints();
    if (!stored.ok()) return stored.status().WithContext(fmt::format("ledger at '{}'", path));
    uint64_t last = 0;
    for (const StoredCheckpoint& cp : *stored) {
      if (cp.key_id == key->key_id()) last = std::max(last, cp.size);
    }
    ledger->impl_->checkpointer =
        std::make_unique<Checkpointer>(ledger.get(), options.checkpoints, last);
  }
  return ledger;
}

Result<std::unique_ptr<Ledger>> Ledger::OpenReader(const std::string& path,
                                                   const ReaderOptions& options) {
  BASTION_RETURN_IF_ERROR(CheckPathArgument(path, "ledger path"));
  BASTION_RETURN_IF_ERROR(
      CheckPathArgument(options.secondary_path, "secondary_path", /*allow_empty=*/true));
  if (!ShardedReader::HasShards(path)) return OpenOneReader(path, options);
  auto sharded = ShardedReader::Open(path, options);
  if (!sharded.ok()) return sharded.status();
  auto impl = std::make_unique<Impl>();
  impl->sharded = std::move(*sharded);
  impl->path = path;
  impl->reader = true;
  return std::unique_ptr<Ledger>(new Ledger(std::move(impl)));
}

Result<std::unique_ptr<Ledger>> Ledger::OpenOneReader(const std::string& path,
                                                      const ReaderOptions& options) {
  auto store = RocksStore::OpenSecondary(path, options);
  if (!store.ok()) return ExplainOpenError(path, store.status());
  auto impl = std::make_unique<Impl>();
  impl->store = std::move(*store);
  impl->path = path;
  impl->reader = true;
  RocksStore* st = impl->store.get();
  // A table file the MANIFEST lists but that is gone fails a writer's open
  // (RocksDB opens every table); a secondary skips it, and what it held (the
  // marker, the head, records) is then missing: reported here or by Verify.
  bool fresh = false;
  BASTION_RETURN_IF_ERROR(CheckFormatMarker(st, path, &fresh));
  // The head is read so that a damaged table holding it fails here; a head
  // that is missing, undecodable or out of step with the records is left to
  // Verify to describe.
  std::string head_value;
  if (Status hs = st->Get(st->meta(), kMetaHeadKey, &head_value); !hs.ok() && !hs.IsNotFound()) {
    return hs.WithContext(fmt::format("ledger at '{}': reading the chain head", path));
  }
  impl->has_tree = impl->ReadsTree();
  return std::unique_ptr<Ledger>(new Ledger(std::move(impl)));
}

namespace {

std::string CurrentUser() {
  if (const char* user = getenv("USER"); user != nullptr && *user != '\0') return user;
  if (const passwd* pw = getpwuid(getuid()); pw != nullptr && pw->pw_name != nullptr) {
    return pw->pw_name;
  }
  return fmt::format("uid {}", getuid());
}

std::string UtcStamp(std::time_t t, const char* format) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof(out), format, &tm);
  return out;
}

Status SyncPath(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return Status::IOError(fmt::format("cannot open '{}' to sync it", p.string()));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError(fmt::format("cannot sync '{}'", p.string()));
  return Status::OK();
}

// Copies the write-ahead logs and the files that describe the store
// (CURRENT, MANIFEST-*, OPTIONS-*) into a new <path>/quarantine/<UTC time>/.
Result<std::string> Quarantine(const std::string& path, std::time_t now) {
  const fs::path base = fs::path(path) / "quarantine";
  const std::string stamp = UtcStamp(now, "%Y%m%dT%H%M%SZ");
  std::error_code ec;
  fs::create_directories(base, ec);
  if (ec) {
    return Status::IOError(
        fmt::format("cannot create '{}' for the damaged files: {}", base.string(), ec.message()));
  }
  fs::path dir = base / stamp;
  for (int n = 2; fs::exists(dir, ec); ++n) dir = base / fmt::format("{}-{}", stamp, n);
  if (!fs::create_directory(dir, ec) || ec) {
    return Status::IOError(fmt::format("cannot create '{}': {}", dir.string(), ec.message()));
  }
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    const std::string name = entry.path().filename().string();
    const bool keep = name == "CURRENT" || name.rfind("MANIFEST-", 0) == 0 ||
                      name.rfind("OPTIONS-", 0) == 0 ||
                      (name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0);
    if (!keep) continue;
    fs::copy_file(entry.path(), dir / name, ec);
    if (ec) {
      return Status::IOError(fmt::format("cannot copy '{}' to '{}': {}", entry.path().string(),
                                         dir.string(), ec.message()));
    }
    BASTION_RETURN_IF_ERROR(SyncPath(dir / name, false));
  }
  if (ec) return Status::IOError(fmt::format("cannot list '{}': {}", path, ec.message()));
  BASTION_RETURN_IF_ERROR(SyncPath(dir, true));
  BASTION_RETURN_IF_ERROR(SyncPath(base, true));
  return dir.string();
}

}  // namespace

Result<RepairReport> Ledger::Repair(const std::string& path, const RepairOptions& options) {
  LedgerOptions lo = options.ledger;
  lo.create_if_missing = false;
  RepairReport report;
  {
    auto opened = Open(path, lo);
    if (opened.ok()) {
      BASTION_RETURN_IF_ERROR((*opened)->Close());
      report.message = fmt::format("ledger at '{}' opens cleanly; nothing to repair", path);
      return report;
    }
    if (!opened.status().IsCorruption()) return opened.status();
    auto d = DiagnoseWal(path);
    if (!d.ok() || d->damage.empty()) {
      return opened.status().WithContext(
          "repair recovers from a damaged write-ahead log only; this damage is elsewhere "
          "(restore the ledger from a copy)");
    }
    report.last_intact_seq = d->last_intact_seq;
    report.lost_through_seq = d->lost_through_seq;
    for (const auto& w : d->damage) {
      if (std::find(report.damaged_files.begin(), report.damaged_files.end(), w.file) ==
          report.damaged_files.end()) {
        report.damaged_files.push_back(w.file);
      }
    }
    report.message = fmt::format("write-ahead log {} is damaged ({}); records 1..{} are kept, {}",
                                 DamagedFiles(*d), d->damage.front().what, d->last_intact_seq,
                                 LossText(*d));
    if (!options.accept_loss) {
      return Status::FailedPrecondition(fmt::format(
          "ledger at '{}': {}. Nothing was changed: repair with accept_loss (--accept-loss) to "
          "accept that loss",
          path, report.message));
    }
  }

  const std::time_t now = std::time(nullptr);
  auto quarantine = Quarantine(path, now);
  if (!quarantine.ok()) return quarantine.status();
  report.quarantine_path = *quarantine;

  auto opened = OpenWriter(path, lo, /*point_in_time_recovery=*/true);
  if (!opened.ok()) {
    return opened.status().WithContext(fmt::format(
        "repairing ledger at '{}' (the damaged files are kept in '{}')", path,
        report.quarantine_path));
  }
  std::unique_ptr<Ledger> ledger = std::move(*opened);
  auto head = ledger->GetHead();
  if (!head.ok()) return head.status();
  // The writer's own recovery replays exactly what the read-only diagnosis
  // did. Anything else means the directory changed in between (another repair
  // finished first, or a writer ran): recording this repair's loss would then
  // be false.
  if (head->seq != report.last_intact_seq) {
    return Status::FailedPrecondition(fmt::format(
        "ledger at '{}' changed while it was being repaired: the damage was read with records "
        "1..{} intact, the recovered ledger ends at record {} (another repair or writer?); "
        "nothing was recorded, and the files copied are in '{}'",
        path, report.last_intact_seq, head->seq, report.quarantine_path));
  }

  Record r;
  r.action = "repair";
  r.agent_id = options.by.empty() ? CurrentUser() : options.by;
  r.resource_id = fs::relative(report.quarantine_path, path).string();
  r.risk_level = "critical";
  const std::string lost_from = std::to_string(report.last_intact_seq + 1);
  const std::string lost_through =
      report.lost_through_seq > report.last_intact_seq ? std::to_string(report.lost_through_seq)
                                                       : "unknown";
  std::string damaged;
  for (const auto& f : report.damaged_files) damaged += (damaged.empty() ? "" : ",") + f;
  r.reasons.push_back(
      {"bastion.repair",
       fmt::format("repaired on {} by {}: {}; the damaged files are kept in {}",
                   UtcStamp(now, "%Y-%m-%dT%H:%M:%SZ"), r.agent_id, report.message,
                   r.resource_id)});
  r.attributes = {{"last_intact_seq", std::to_string(report.last_intact_seq)},
                  {"lost_from_seq", lost_from},
                  {"lost_through_seq", lost_through},
                  {"damaged_files", damaged},
                  {"quarantine", r.resource_id}};
  if (!options.reason.empty()) r.attributes.emplace_back("reason", options.reason);
  auto seq = ledger->Append(std::move(r), Durability::kSync);
  if (!seq.ok()) return seq.status().WithContext("appending the repair record");
  report.repair_seq = *seq;
  report.repaired = true;
  BASTION_RETURN_IF_ERROR(ledger->Close());
  return report;
}

Result<uint64_t> Ledger::Append(Record record) {
  return Append(std::move(record), impl_->options.default_durability);
}

Result<uint64_t> Ledger::Append(Record record, Durability durability) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->reader) return Status::FailedPrecondition("the ledger is open read-only");
  std::vector<PendingRecord> pending(1);
  BASTION_RETURN_IF_ERROR(impl_->Encode(record, &pending[0]));
  return impl_->Submit(&pending, durability);
}

Result<uint64_t> Ledger::AppendDeferred(Record record) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->reader) return Status::FailedPrecondition("the ledger is open read-only");
  std::vector<PendingRecord> pending(1);
  BASTION_RETURN_IF_ERROR(impl_->Encode(record, &pending[0]));
  return impl_->Submit(&pending, Durability::kAsync, /*deferred=*/true);
}

Result<uint64_t> Ledger::AppendBatch(std::vector<Record> records) {
  return AppendBatch(std::move(records), impl_->options.default_durability);
}

Result<uint64_t> Ledger::AppendBatch(std::vector<Record> records, Durability durability) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->reader) return Status::FailedPrecondition("the ledger is open read-only");
  if (records.empty()) return Status::InvalidArgument("no records to append");
  std::vector<PendingRecord> pending(records.size());
  std::vector<uint8_t> salts;
  BASTION_RETURN_IF_ERROR(Impl::Salts(records.size(), &salts));
  for (size_t i = 0; i < records.size(); ++i) {
    Status s = impl_->Encode(records[i], &salts[i * codec::kSaltBytes], &pending[i]);
    if (!s.ok()) return s.WithContext(fmt::format("record {} of the batch", i));
  }
  return impl_->Submit(&pending, durability);
}

Result<EraseReport> Ledger::Erase(const EraseRequest& request) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->reader) {
    return Status::FailedPrecondition(
        "the ledger is open read-only; erasing needs its writer (Ledger::Open)");
  }
  std::lock_guard<std::mutex> serial(impl_->erase_mu);
  return EraseRecords(impl_->store.get(), impl_->writer.get(), request,
                      [&](Record r, std::vector<ExtraWrite> writes) -> Result<uint64_t> {
                        std::vector<PendingRecord> pending(1);
                        BASTION_RETURN_IF_ERROR(impl_->Encode(r, &pending[0]));
                        pending[0].extra = std::move(writes);
                        return impl_->Submit(&pending, Durability::kSync);
                      });
}

Status Ledger::Flush() {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (!impl_->writer) return Status::OK();
  return impl_->writer->Flush();
}

Result<Head> Ledger::GetHead() {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  BASTION_RETURN_IF_ERROR(impl_->CheckOneChain("the chain head"));
  if (impl_->writer) return impl_->writer->head();
  return impl_->ReadStoredHead();
}

Result<StoredRecord> Ledger::Get(uint64_t seq) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  BASTION_RETURN_IF_ERROR(impl_->CheckOneChain(fmt::format("record {}", seq)));
  std::string value;
  Status s = impl_->store->Get(impl_->store->records(), codec::RecordKey(seq), &value);
  if (s.IsNotFound()) return Status::NotFound(fmt::format("no record {}", seq));
  if (!s.ok()) return s;
  auto rec = DecodeStoredRecord(value);
  if (!rec.ok()) return rec.status().WithContext(fmt::format("record {}", seq));
  return rec;
}

Status Ledger::ScanStored(uint64_t from_seq, uint64_t to_seq,
                          const std::function<bool(uint64_t, std::string_view)>& fn) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  BASTION_RETURN_IF_ERROR(impl_->CheckOneChain("a scan by sequence number"));
  if (from_seq > to_seq) {
    return Status::InvalidArgument(fmt::format("from_seq {} is after to_seq {}", from_seq, to_seq));
  }
  RocksStore* st = impl_->store.get();
  auto snap = st->Snapshot();
  auto it = st->NewIterator(st->records(), snap.get(), /*scan=*/true);
  const std::string first = codec::RecordKey(from_seq);
  for (it->Seek(first); it->Valid(); it->Next()) {
    if (it->key().size() != 8) continue;  // not a record key: Verify reports it
    const uint64_t seq = codec::GetFixed64BE(it->key().data());
    if (seq > to_seq) break;
    if (!fn(seq, {it->value().data(), it->value().size()})) return Status::OK();
  }
  return st->IteratorStatus(it.get(), "records");
}

Result<QueryResult> Ledger::Find(const Query& query) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->sharded) return impl_->sharded->Find(query);
  return RunQuery(impl_->store.get(), query);
}

VerifyReport Ledger::Verify(const VerifyOptions& options) {
  std::shared_lock lock(impl_->mu);
  Status s = impl_->CheckOpen();
  if (!s.ok()) {
    VerifyReport r;
    r.error = s;
    r.message = s.ToString();
    return r;
  }
  if (impl_->sharded) return impl_->sharded->Verify(options);
  return VerifyLedger(impl_->store.get(), options);
}

Result<LedgerStats> Ledger::Stats() {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->sharded) return impl_->sharded->Stats();
  RocksStore* st = impl_->store.get();
  LedgerStats stats;
  auto snap = st->Snapshot();
  {
    std::string value;
    Status s = st->Get(st->meta(), kMetaFormatKey, &value, snap.get());
    if (s.ok()) stats.format = value;
    s = st->Get(st->meta(), kMetaHeadKey, &value, snap.get());
    if (s.ok() && !DecodeHead(value, &stats.head)) {
      return Status::Corruption("the chain head is unreadable");
    }
  }
  auto it = st->NewIterator(st->records(), snap.get(), true);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    codec::ValueView view;
    index::IndexedFields v;
    const uint64_t seq = it->key().size() == 8 ? codec::GetFixed64BE(it->key().data()) : 0;
    Status s = codec::ParseValue({it->value().data(), it->value().size()}, &view);
    // Stats read public fields only: no need to decode the personal section.
    if (s.ok()) s = codec::DecodeSection(view.body, /*personal=*/false, &v);
    if (!s.ok()) return s.WithContext(fmt::format("record {}", seq));
    ++stats.records;
    const int64_t ts = v.timestamp_ns;
    if (stats.records == 1 || ts < stats.first_timestamp_ns) stats.first_timestamp_ns = ts;
    stats.last_timestamp_ns = std::max(stats.last_timestamp_ns, ts);
    const auto name = [](std::string_view x) {
      return x.empty() ? std::string("(none)") : std::string(x);
    };
    ++stats.by_action[std::string(v.Of(index::Kind::kAction))];
    ++stats.by_effect[name(v.Of(index::Kind::kEffect))];
    ++stats.by_agent[name(v.Of(index::Kind::kAgent))];
  }
  BASTION_RETURN_IF_ERROR(st->IteratorStatus(it.get(), "reading the ledger's records"));
  stats.disk_bytes = st->DiskBytes();
  return stats;
}

Status Ledger::Refresh() {
  std::unique_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->writer) return Status::OK();  // the writer always sees its own state
  if (impl_->sharded) return impl_->sharded->Refresh();
  if (ShardedReader::HasShards(impl_->path)) {
    // A second worker began a shard since this reader opened: read them all
    // from now on, the main ledger included.
    auto sharded = ShardedReader::Open(impl_->path, ReaderOptions{});
    if (!sharded.ok()) return sharded.status();
    impl_->sharded = std::move(*sharded);
    impl_->store.reset();
    impl_->nodes.Clear();
    return Status::OK();
  }
  BASTION_RETURN_IF_ERROR(impl_->store->CatchUpWithPrimary());
  impl_->has_tree = impl_->ReadsTree();
  impl_->nodes.Clear();
  return Status::OK();
}

Result<TreeHead> Ledger::TreeHeadAt(std::optional<uint64_t> size) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  BASTION_RETURN_IF_ERROR(impl_->CheckOneChain("the Merkle tree head"));
  BASTION_RETURN_IF_ERROR(impl_->CheckTree());
  auto head = impl_->TreeSize();
  if (!head.ok()) return head.status();
  const uint64_t n = size.value_or(*head);
  if (n > *head) {
    return Status::InvalidArgument(
        fmt::format("tree size {} is past the ledger's head (record {})", n, *head));
  }
  auto root = tree::RootAt(impl_->store.get(), n, &impl_->nodes);
  if (!root.ok()) return root.status().WithContext(fmt::format("ledger at '{}'", impl_->path));
  return TreeHead{n, *root};
}

Result<std::vector<Hash>> Ledger::InclusionProof(uint64_t seq, std::optional<uint64_t> tree_size) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  BASTION_RETURN_IF_ERROR(impl_->CheckOneChain("an inclusion proof"));
  BASTION_RETURN_IF_ERROR(impl_->CheckTree());
  auto head = impl_->TreeSize();
  if (!head.ok()) return head.status();
  const uint64_t n = tree_size.value_or(*head);
  if (seq < 1 || seq > n || n > *head) {
    return Status::InvalidArgument(fmt::format(
        "inclusion proof of record {} in the tree of size {}: needs 1 <= record <= tree size <= "
        "head ({})",
        seq, n, *head));
  }
  const merkle::ProofPlan plan = merkle::InclusionPlan(seq - 1, n);
  std::vector<Hash> hashes;
  Status s = tree::ReadNodes(impl_->store.get(), plan.nodes, &hashes, nullptr, &impl_->nodes);
  if (!s.ok()) return s.WithContext(fmt::format("ledger at '{}'", impl_->path));
  Sha256 sha;
  return plan.Assemble(&sha, hashes);
}

Result<std::vector<Hash>> Ledger::ConsistencyProof(uint64_t old_size, uint64_t new_size) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  BASTION_RETURN_IF_ERROR(impl_->CheckOneChain("a consistency proof"));
  BASTION_RETURN_IF_ERROR(impl_->CheckTree());
  auto head = impl_->TreeSize();
  if (!head.ok()) return head.status();
  if (old_size < 1 || old_size > new_size || new_size > *head) {
    return Status::InvalidArgument(fmt::format(
        "consistency proof from tree size {} to {}: needs 1 <= old size <= new size <= head ({})",
        old_size, new_size, *head));
  }
  const merkle::ProofPlan plan = merkle::ConsistencyPlan(old_size, new_size);
  std::vector<Hash> hashes;
  Status s = tree::ReadNodes(impl_->store.get(), plan.nodes, &hashes, nullptr, &impl_->nodes);
  if (!s.ok()) return s.WithContext(fmt::format("ledger at '{}'", impl_->path));
  Sha256 sha;
  return plan.Assemble(&sha, hashes);
}

Status Ledger::PutCheckpoint(const StoredCheckpoint& cp) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->reader) return Status::FailedPrecondition("the ledger is open read-only");
  auto head = impl_->TreeSize();
  if (!head.ok()) return head.status();
  if (cp.size > *head) {
    return Status::InvalidArgument(fmt::format(
        "checkpoint of tree size {} is past the ledger's head (record {})", cp.size, *head));
  }
  rocksdb::WriteBatch wb;
  wb.Put(impl_->store->tree(), merkle::CheckpointKey(cp.size, cp.key_id), cp.note);
  return impl_->store->Write(&wb, /*sync=*/true);
}

Result<std::vector<StoredCheckpoint>> Ledger::Checkpoints() {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  BASTION_RETURN_IF_ERROR(impl_->CheckOneChain("checkpoints"));
  std::vector<StoredCheckpoint> out;
  RocksStore* st = impl_->store.get();
  if (st->tree() == nullptr) return out;
  auto it = st->NewIterator(st->tree());
  const char tag = static_cast<char>(merkle::kCheckpointTag);
  for (it->Seek(rocksdb::Slice(&tag, 1)); it->Valid(); it->Next()) {
    StoredCheckpoint cp;
    const std::string_view key(it->key().data(), it->key().size());
    if (!merkle::ParseCheckpointKey(key, &cp.size, &cp.key_id)) {
      return Status::Corruption(fmt::format(
          "ledger at '{}': a key of {} bytes among the checkpoints is not a checkpoint's",
          impl_->path, key.size()));
    }
    cp.note = it->value().ToString();
    out.push_back(std::move(cp));
  }
  BASTION_RETURN_IF_ERROR(st->IteratorStatus(it.get(), "reading the ledger's checkpoints"));
  return out;
}

bool Ledger::read_only() const { return impl_->reader; }

const std::string& Ledger::path() const { return impl_->path; }

Status Ledger::CheckpointStatus() const {
  return impl_->checkpointer ? impl_->checkpointer->error() : Status::OK();
}

Status Ledger::Close() {
  // The checkpoint thread calls into the ledger: it stops before the lock is
  // taken, and the last checkpoint covers every record.
  Status checkpoint;
  if (impl_->checkpointer) {
    std::call_once(impl_->checkpoints_stopped, [&] {
      impl_->checkpointer->Stop();
      if (!impl_->options.checkpoints.on_close) return;
      checkpoint = Flush();
      if (checkpoint.ok()) checkpoint = impl_->checkpointer->TakeIfNew();
      checkpoint = checkpoint.WithContext("the closing checkpoint");
    });
  }
  std::unique_lock lock(impl_->mu);
  if (impl_->closed) return Status::OK();
  impl_->closed = true;
  Status result;
  if (impl_->writer) result = impl_->writer->Stop();
  impl_->writer.reset();
  Status s = impl_->sharded ? impl_->sharded->Close() : impl_->store->Close();
  if (!result.ok()) return result;
  return s.ok() ? checkpoint : s;
}

}  // namespace bastion
