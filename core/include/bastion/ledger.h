// The audit ledger: an append-only, hash-chained log of Records in RocksDB.
//
//   bastion::LedgerOptions options;                 // defaults: group commit
//   auto opened = bastion::Ledger::Open("/var/lib/agent/ledger", options);
//   if (!opened.ok()) { report(opened.status()); return; }
//   std::unique_ptr<bastion::Ledger> ledger = std::move(*opened);
//
//   bastion::Record r;
//   r.action = "model_call"; r.agent_id = "planner"; r.model = "gpt-4o";
//   bastion::Result<uint64_t> seq = ledger->Append(r);   // group: waits for the write
//
//   bastion::Query q;
//   q.agent_id = "planner"; q.limit = 50;               // newest first
//   bastion::Result<bastion::QueryResult> page = ledger->Find(q);
//
//   bastion::VerifyReport report = ledger->Verify({});  // whole chain + indexes
//   if (!report.ok) std::cerr << report.message << "\n";
//
// Thread safety: every method may be called from any number of threads at
// once. Appends are serialized by a writer thread; sequence order is chain
// order. A ledger directory can be open for writing by one Ledger at a time,
// whatever path leads to it (symlinks, "./", "//", a trailing "/") and in
// whichever process; any number of readers (OpenReader) may follow it.
//
// Sharded ledgers: several processes write one ledger by each writing a shard
// of it, a complete ledger of its own at <L>/shards/<name> (ShardPath), next
// to the main ledger <L> itself, if any. OpenReader(L) then reads them all as
// one ledger: see OpenReader and docs/ledger.md, "Sharded ledgers".
#ifndef BASTION_LEDGER_H_
#define BASTION_LEDGER_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/record.h"
#include "bastion/status.h"

namespace bastion {

using Hash = std::array<uint8_t, 32>;
std::string HashToHex(const Hash& h);

enum class Durability : uint8_t {
  // fsync of the write-ahead log before Append returns. No acknowledged record
  // is lost, even on power failure. Concurrent sync appends share one fsync.
  kSync,
  // Append returns once the record is written (survives a process crash); the
  // log is fsynced within LedgerOptions::group_sync_interval.
  kGroup,
  // Append returns once the record is queued; the queue is bounded
  // (backpressure) and flushed on Close. A process crash loses the queue, never
  // the chain's integrity.
  kAsync,
};
std::string_view DurabilityName(Durability d);
std::optional<Durability> DurabilityFromName(std::string_view name);

class SigningKey;  // bastion/evidence.h

// Signed checkpoints the ledger takes by itself: every `every_records`
// records, every `interval`, and on Close. Each is signed with `key`, stored
// in the ledger (Checkpoints()) and handed to `sink`, so that it leaves the
// host. Nothing is taken without a key. See docs/evidence.md.
struct CheckpointSchedule {
  std::shared_ptr<const SigningKey> key;
  // 0: not by count. Checked every 50 ms, so a burst may pass the count by
  // what arrives meanwhile.
  uint64_t every_records = 0;
  // 0: not by time. A period without new records takes none.
  std::chrono::milliseconds interval{0};
  // Take one in Close, covering every record (if any is new).
  bool on_close = true;
  // Receives each new checkpoint's signed note once it is stored, on the
  // ledger's checkpoint thread or in Close. An error is kept (see
  // Ledger::CheckpointStatus), returned by Close, and the sink is called again
  // with the next checkpoint. The sink must not close or destroy the ledger
  // (Close joins the thread the sink runs on).
  std::function<Status(const std::string& note)> sink;
};

struct LedgerOptions {
  // --- opening ---
  // Create the ledger if the directory holds none. The parent directory must
  // exist either way.
  bool create_if_missing = true;

  // --- durability ---
  // Used by Append calls that do not name one.
  Durability default_durability = Durability::kGroup;
  // Upper bound on how long a group-mode record stays un-fsynced.
  std::chrono::milliseconds group_sync_interval{10};
  // Records waiting for the writer thread, across all modes; a full queue
  // blocks producers (backpressure).
  size_t queue_capacity = 65536;
  // Records the writer puts into one RocksDB write batch at most.
  size_t max_batch_records = 4096;
  // How long an async record may wait in the queue for the records that
  // follow it, so the writer thread writes them in one batch and is not woken
  // for each record. A full batch (max_batch_records) is written at once. A
  // process crash loses what waits, as it loses the rest of the queue.
  std::chrono::microseconds async_batch_delay{1000};

  // --- indexes ---
  // A batch writes its records, their time-index keys and the chain head; the
  // posting lists of the user/agent/tenant/... indexes are gathered in memory
  // and written as one block per value once this many records wait, or
  // index_interval after the first of them. Queries read the few records not
  // yet in the posting lists directly, and opening the ledger after a crash
  // rebuilds their postings, so a query never misses a record. 0: every batch
  // writes its own postings.
  size_t index_batch_records = 1024;
  std::chrono::milliseconds index_interval{50};

  // --- store tuning ---
  // RocksDB memtable size; larger absorbs bursts of appends better.
  size_t write_buffer_bytes = 64 << 20;
  // RocksDB block cache for records and indexes; the Merkle tree (read by
  // proofs) has one of its own of the same size.
  size_t block_cache_bytes = 64 << 20;

  // --- signed checkpoints (writer only) ---
  CheckpointSchedule checkpoints;
};

struct ReaderOptions {
  // Directory where the secondary instance keeps its own info log. Empty: a
  // fresh temporary directory, removed on close.
  std::string secondary_path;
};

// A record as stored: its place in the chain and its content.
struct StoredRecord {
  uint64_t seq = 0;
  Hash prev_hash{};
  Hash hash{};
  bool personal_data_erased = false;
  Record record;
  // The shard it was read from: "" for the main shard (the ledger directory
  // itself) and for a ledger without shards. `seq` and the hashes are its
  // place in that shard's chain.
  std::string shard;
};

struct Head {
  uint64_t seq = 0;  // 0: the ledger is empty
  Hash hash{};       // all zero when empty (the genesis "previous hash")
};

// The root of the RFC 9162 Merkle tree over records 1..size (see
// bastion/merkle.h). The empty tree's root is SHA-256("").
struct TreeHead {
  uint64_t size = 0;
  Hash root{};
  bool operator==(const TreeHead&) const = default;
};

// A checkpoint as stored: the tree size and signing key it is for, and the
// signed note text, opaque to the ledger.
struct StoredCheckpoint {
  uint64_t size = 0;
  uint32_t key_id = 0;
  std::string note;
};

// Filters are ANDed; an unset filter matches everything. Equality filters use
// the secondary indexes; [since_ns, until_ns] (inclusive) uses the time index
// when it is the only filter and is applied to candidates otherwise.
struct Query {
  std::optional<std::string> user_id, agent_id, tenant_id, action, tool, effect, risk_level,
      run_id, trace_id;
  std::optional<int64_t> since_ns, until_ns;
  bool newest_first = true;
  // At most this many records; 0 means no limit.
  size_t limit = 100;
  // Continue after the last record of a previous page (QueryResult::next_cursor).
  std::string cursor;
};

// Order of results: by sequence number (append order), except for queries whose
// only filter is a time range, which come ordered by (timestamp, sequence).
// A sharded reader orders every query by (timestamp, shard name, sequence).
struct QueryResult {
  // Encoded records exactly as stored; decode with DecodeRecord. Keeping them
  // encoded makes large exports cheap until a field is actually read.
  std::vector<std::string> encoded;
  // From a sharded reader: the shard of each record of `encoded` (same size;
  // "" for the main shard). Empty from a ledger without shards.
  std::vector<std::string> shards;
  // Opaque; non-empty when more records may match.
  std::string next_cursor;
};

enum class VerifyProblem : uint8_t {
  kNone,
  kUndecodable,         // a stored record cannot be decoded
  kHashMismatch,        // content does not match its chain hash (tampered)
  kBrokenLink,          // prev_hash is not the previous record's hash
  kGap,                 // a sequence number is missing (deleted record)
  kMisplaced,           // a record is stored under another sequence (reordered/inserted)
  kTruncated,           // records at the end are missing; the head names a later one
  kHeadMismatch,        // the head does not match the last record, or is unreadable
  kExtraRecords,        // records exist past the head (appended behind the ledger's back)
  kIndexInconsistent,   // a secondary index disagrees with the records
  kCheckpointMismatch,  // the records differ from a trusted tree head (rewritten history)
  kRolledBack,          // a trusted tree head is past the chain head (records removed)
  kTreeInconsistent,    // the stored Merkle tree disagrees with the records
};
std::string_view VerifyProblemName(VerifyProblem p);

struct VerifyOptions {
  // Inclusive range of sequence numbers; unset means the first / the head.
  std::optional<uint64_t> from_seq, to_seq;
  // Also check that every record is indexed and every index entry points to a
  // matching record. Costs an extra pass over the indexes.
  bool check_indexes = true;
  // Threads hashing in parallel; 0 means one per core.
  unsigned threads = 0;
  // Called now and then with (records checked, records to check); returning
  // false stops the verification (the report then says "cancelled").
  std::function<bool(uint64_t, uint64_t)> progress;
  // Tree heads known to be genuine (from checkpoints kept elsewhere). The
  // Merkle root is recomputed from the records walked (never read from the
  // stored tree) and compared at each size: a history rewritten behind the
  // ledger's back, chain hashes resealed and all, fails with
  // kCheckpointMismatch naming the smallest size that disagrees; a size past
  // the head fails with kRolledBack. The walk then starts at record 1:
  // from_seq must be unset or 1, and to_seq unset or at least every size
  // (else report.error is InvalidArgument).
  std::vector<TreeHead> trusted;
};

struct VerifyReport {
  bool ok = false;
  uint64_t records_checked = 0;
  uint64_t bytes_checked = 0;  // stored bytes hashed
  uint64_t from_seq = 0, to_seq = 0;
  // On failure: the first bad sequence number and what is wrong with it.
  VerifyProblem problem = VerifyProblem::kNone;
  uint64_t bad_seq = 0;
  std::string message;  // human-readable, names the sequence number
  bool cancelled = false;
  Status error;         // the store failed while reading (not a chain problem)
  // Unset for a ledger without shards. From a sharded reader: the shard of
  // the problem above ("" for the main shard; the message starts with
  // "shard '<name>': "), unset when all is well; in each report of `shards`,
  // the shard it is about.
  std::optional<std::string> shard;
  // From a sharded reader: one report per shard in shard-name order (main
  // first), each verified on its own chain. The counts above are their sums;
  // from_seq and to_seq are 0.
  std::vector<VerifyReport> shards;
};

struct LedgerStats {
  uint64_t records = 0;
  Head head;
  int64_t first_timestamp_ns = 0, last_timestamp_ns = 0;
  uint64_t disk_bytes = 0;  // SST and WAL files
  std::string format;
  std::map<std::string, uint64_t> by_action, by_effect, by_agent;
  // A sharded reader: records per shard ("" for the main shard). The counts
  // and byte sizes above are summed over the shards, the times span them all,
  // and `head` is left empty (each shard has its own chain: open the shard).
  std::map<std::string, uint64_t> by_shard;
};

struct RepairOptions {
  // Repair keeps the records before the damage and drops the rest; it refuses
  // (FailedPrecondition, naming what would be lost) unless this is true.
  bool accept_loss = false;
  // Who repairs, stored as the repair record's agent_id. Empty: the user
  // running the process ($USER, else the uid).
  std::string by;
  // Why, stored as the repair record's "reason" attribute. Optional.
  std::string reason;
  // Used to open the ledger for the repair and the repair record's append.
  LedgerOptions ledger;
};

struct RepairReport {
  // false: the ledger opened cleanly and nothing was changed.
  bool repaired = false;
  // The last record kept, and the last record the damaged log still showed
  // past the damage (records last_intact_seq+1 .. lost_through_seq are lost;
  // later ones may have been lost too, unseen).
  uint64_t last_intact_seq = 0;
  uint64_t lost_through_seq = 0;
  // The "repair" record appended to the chain.
  uint64_t repair_seq = 0;
  // The damaged write-ahead logs (file names), kept byte for byte in
  // quarantine_path with the MANIFEST, CURRENT and OPTIONS files of the time.
  std::vector<std::string> damaged_files;
  std::string quarantine_path;
  std::string message;
};

// Which records' personal data Ledger::Erase erases, who asks and why.
struct EraseRequest {
  // Every record whose user_id is this (exact match). Non-empty, at most
  // kMaxIdBytes, valid UTF-8.
  std::optional<std::string> user_id;
  // These records (duplicates allowed), whoever their user. At least one of
  // user_id and seqs is required.
  std::vector<uint64_t> seqs;
  // Why, and who erases (a person or role): both required, non-empty, valid
  // UTF-8, at most kMaxIdBytes each. They are kept in the erasure record and
  // must not contain the user id being erased.
  std::string reason;
  std::string by;
};

struct EraseReport {
  // Records whose personal data this call erased, and the listed ones
  // (EraseRequest::seqs) that were erased before and were left as they were.
  uint64_t erased = 0;
  uint64_t already_erased = 0;
  // The "erasure" record appended to the chain.
  uint64_t erasure_seq = 0;
  // The records this call erased, ascending.
  std::vector<uint64_t> seqs;
  // Repair quarantine folders (quarantine/<time>/, relative to the ledger
  // directory) that an erasure leaves alone: they hold byte-for-byte copies
  // of old write-ahead logs, which may still contain the erased values.
  std::vector<std::string> quarantine_folders;
};

class Ledger {
 public:
  // Opens (or creates) the ledger at `path` for appending. Errors:
  //   Busy                 another Ledger (this or another process) writes to
  //                        the same directory, by whatever path; the message
  //                        names the directory. Held until Close.
  //   InvalidArgument      `path` is empty or holds a NUL byte
  //   NotFound             no ledger there and create_if_missing is false, or
  //                        the parent directory is missing
  //   Corruption           the store's files (CURRENT, MANIFEST, table files,
  //                        write-ahead log, ...) are damaged or missing, the
  //                        format marker or the chain head is missing, or the
  //                        head does not match the records. Nothing is changed.
  //                        A damaged write-ahead log is named with the last
  //                        intact record: Repair() recovers up to it.
  //   InvalidArgument      the directory holds something that is not a ledger,
  //                        or a ledger of another format
  // A log whose last record was cut short by a crash while it was written
  // (never acknowledged) is not damage: that record is dropped silently.
  static Result<std::unique_ptr<Ledger>> Open(const std::string& path,
                                              const LedgerOptions& options = {});

  // Repairs a ledger whose write-ahead log is damaged: copies the logs (and
  // the MANIFEST, CURRENT and OPTIONS files) to <path>/quarantine/<UTC time>/,
  // recovers the records before the first damaged one, and appends (sync) a
  // "repair" record saying what was lost, when and by whom. A ledger that
  // opens cleanly is left alone (repaired = false). Errors: FailedPrecondition
  // without accept_loss; Busy if a writer has it open; NotFound; and the open
  // error itself for damage a repair cannot fix (tables, MANIFEST, head).
  static Result<RepairReport> Repair(const std::string& path, const RepairOptions& options);

  // Opens a read-only view that follows a ledger another process may be
  // writing to (a RocksDB secondary instance). It sees the state as of open or
  // the last Refresh(). Append fails with FailedPrecondition. Opening checks
  // what Open checks, except that a chain head out of step with the records
  // is left to Verify to describe.
  //
  // When `path` has a shards/ folder, the reader is sharded: it opens the
  // main shard (when `path` itself holds a ledger) and every shard under
  // shards/ that has a CURRENT file (a shard a writer is still creating is
  // skipped until a Refresh finds it complete; one whose column families are
  // not all there yet is retried for about 0.6 s), and reads them as one ledger:
  //   Find       the matching records of every shard, by (timestamp, shard
  //              name, seq), in the query's direction; limit and cursor work
  //              as on one ledger. Each record's shard is in QueryResult::shards.
  //   Verify     each shard's chain on its own; the report names the shard of
  //              a problem and holds one report per shard (VerifyReport::shards).
  //              from_seq / to_seq / trusted are per shard: InvalidArgument /
  //              FailedPrecondition naming the shard paths.
  //   Stats      summed (LedgerStats::by_shard).
  //   Refresh    catches up every shard and opens the shards created since
  //              (a reader opened before the first shard existed turns sharded).
  // GetHead, Get, ScanStored, the Merkle tree, proofs and checkpoints belong to
  // one chain: FailedPrecondition naming the shard paths to open instead.
  // A shard name that is not valid (ValidateShardName) fails the open with
  // InvalidArgument naming it.
  static Result<std::unique_ptr<Ledger>> OpenReader(const std::string& path,
                                                    const ReaderOptions& options = {});

  ~Ledger();  // Close()s, ignoring errors
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Validates, encodes and queues `record`, and waits as `durability` says.
  // Returns the record's sequence number (1-based, gap-free). `record` is taken
  // by value: it is moved into the queue; its timestamp is set to now if 0.
  // Errors: InvalidArgument (validation; nothing is written), FailedPrecondition
  // (closed or read-only), or the store's error (IOError for a full disk).
  // A failed write discards that record and every record queued behind it
  // (their appends fail too; async ones are reported by the next Append, Flush
  // or Close); records written before it are kept. Each later Append first
  // resumes the store and fails with its error while that fails (the disk is
  // still full); once it succeeds, appends continue the chain where it ended.
  Result<uint64_t> Append(Record record);
  Result<uint64_t> Append(Record record, Durability durability);
  // Queues the record without waking the writer thread, for a record that a
  // waited append coming soon will cover (the writer writes in sequence order,
  // so waiting for a later record waits for this one). Written by the next
  // waited append of any producer, or else within group_sync_interval; a
  // crash before that loses it, as an async record.
  Result<uint64_t> AppendDeferred(Record record);
  // Appends records with consecutive sequence numbers; all are validated before
  // any is queued. Returns the first sequence number.
  Result<uint64_t> AppendBatch(std::vector<Record> records, Durability durability);
  Result<uint64_t> AppendBatch(std::vector<Record> records);

  // Erases the personal data (user_id, input_summary, output_summary,
  // approved_by, attributes) of the records `request` names, as
  // docs/ledger_format.md specifies: each record keeps its public fields and
  // its chain hash, and its personal section becomes the 32-byte digest the
  // chain already committed to; its user_id postings are removed. One
  // "erasure" record (who, why, how many, which seqs; never the erased
  // values) is appended in sync mode, in the same atomic write as the
  // rewritten records. Then the store is scrubbed: memtables are flushed,
  // the affected table files rewritten and obsolete logs and tables deleted,
  // so that once Erase returns no file of the ledger directory holds the old
  // values (quarantine folders of repairs excepted: see EraseReport). A crash
  // leaves either the old state or the erased one; a writer opening a ledger
  // whose scrub did not finish finishes it first.
  // The records covered are those appended before Erase was called; records
  // appended concurrently are not. Appends and reads go on meanwhile.
  // Errors: InvalidArgument (a bad request, or a listed seq with no record;
  // nothing is written), FailedPrecondition (a reader, or closed), the
  // store's error. Erasures are serialized.
  Result<EraseReport> Erase(const EraseRequest& request);

  // Blocks until every record appended so far is written and fsynced. After a
  // failed write: resumes the store as Append does, and reports async records
  // the failure discarded.
  Status Flush();

  // The last appended record's place. For a reader, as of the last Refresh.
  Result<Head> GetHead();

  // The record at `seq`: NotFound if none, Corruption if it does not decode.
  Result<StoredRecord> Get(uint64_t seq);

  // InvalidArgument, naming the filter, for a value that can match no record:
  // an effect not in kEffects, a risk_level other than low, medium, high or
  // critical, an empty or over-long (> kMaxIdBytes) filter, since after until,
  // or a cursor of another query.
  Result<QueryResult> Find(const Query& query);

  // A reversed range (from_seq > to_seq) is an error (report.error is
  // InvalidArgument); a range past the head checks nothing and passes. A store
  // that fails while reading (a damaged table file) sets report.error.
  VerifyReport Verify(const VerifyOptions& options);

  Result<LedgerStats> Stats();

  // --- The Merkle tree (RFC 9162) over the records; see bastion/merkle.h ---
  // Sizes count records: the tree of size n holds records 1..n. A reader
  // answers as of its last Refresh. A ledger of format 1 (written by an older
  // version) has no tree until a writer opens it: these then fail with
  // FailedPrecondition.
  //
  // The tree head of records 1..size; nullopt: the current head. InvalidArgument
  // past the head.
  Result<TreeHead> TreeHeadAt(std::optional<uint64_t> size = std::nullopt);
  // RFC 9162 2.1.3 inclusion proof of record `seq` in the tree of `tree_size`
  // records (nullopt: the head); checked by VerifyInclusion(seq - 1,
  // tree_size, MerkleLeafHash(record.hash), proof, root). InvalidArgument
  // unless 1 <= seq <= tree_size <= head.
  Result<std::vector<Hash>> InclusionProof(uint64_t seq,
                                           std::optional<uint64_t> tree_size = std::nullopt);
  // RFC 9162 2.1.4 consistency proof from the tree of old_size records to the
  // tree of new_size; empty when they are equal. InvalidArgument unless
  // 1 <= old_size <= new_size <= head.
  Result<std::vector<Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size);
  // Stores a checkpoint (fsynced), replacing one of the same size and key id.
  // Writer only (FailedPrecondition on a reader); InvalidArgument if cp.size
  // is past the head.
  Status PutCheckpoint(const StoredCheckpoint& cp);
  // The stored checkpoints, ascending by size, then key id. Empty for a
  // ledger of format 1.
  Result<std::vector<StoredCheckpoint>> Checkpoints();
  // Signs the current tree head with `key` (origin = the key's name), stores
  // the checkpoint and returns its signed note. Writer only. The records it
  // covers are fsynced with it.
  Result<std::string> Checkpoint(const SigningKey& key);
  // How the last scheduled checkpoint (LedgerOptions::checkpoints) ended: OK,
  // or why the newest records are not covered by one.
  Status CheckpointStatus() const;

  // Reader only: catch up with the writer's latest state.
  Status Refresh();

  bool read_only() const;
  const std::string& path() const;

  // Drains the queue, writes and fsyncs everything, stops the writer thread
  // and closes the store, releasing the directory. Idempotent. Later calls
  // fail with FailedPrecondition. IOError if the store cannot recover from a
  // failed write (the disk is still full: what was acknowledged is in the log
  // and the next Open recovers it), or if async records were discarded.
  Status Close();

  // Calls `fn` with each stored value (the bytes DecodeStoredRecord reads)
  // of records from_seq..to_seq (inclusive), in ascending order, from one
  // consistent view; `fn` returning false stops the scan. Missing records are
  // skipped: Verify, not this, judges the chain. InvalidArgument for a
  // reversed range; the store's error if a read fails.
  Status ScanStored(uint64_t from_seq, uint64_t to_seq,
                    const std::function<bool(uint64_t seq, std::string_view stored)>& fn);

  class Impl;

 private:
  explicit Ledger(std::unique_ptr<Impl> impl);
  // Open; with point_in_time_recovery (Repair only), a damaged write-ahead
  // log is cut at its first damaged record instead of failing the open.
  static Result<std::unique_ptr<Ledger>> OpenWriter(const std::string& path,
                                                    const LedgerOptions& options,
                                                    bool point_in_time_recovery);
  // OpenReader of the ledger at `path` alone, whatever shards it has.
  static Result<std::unique_ptr<Ledger>> OpenOneReader(const std::string& path,
                                                       const ReaderOptions& options);
  friend class ShardedReader;
  std::unique_ptr<Impl> impl_;
};

// A shard name: 1 to 64 bytes of [A-Za-z0-9._-], not starting with '.'.
// InvalidArgument naming the name otherwise.
Status ValidateShardName(std::string_view name);

// The directory of shard `name` of the ledger at `ledger_path`:
// <ledger_path>/shards/<name>; open a writer on it as on any ledger (its
// parent directory must exist: create <ledger_path>/shards first).
// InvalidArgument for a bad name or path.
Result<std::string> ShardPath(const std::string& ledger_path, std::string_view name);

// Decodes one stored value (QueryResult::encoded). Corruption names the offset.
Result<StoredRecord> DecodeStoredRecord(std::string_view encoded);

// Receives the fields of a stored record in field order, as views into the
// encoded bytes (valid during the call); unset fields are skipped. For reading
// many records without building a Record each (exports to columns).
class RecordFieldVisitor {
 public:
  virtual ~RecordFieldVisitor() = default;
  virtual void OnString(Field f, std::string_view v) = 0;
  virtual void OnUint(Field f, uint64_t v) = 0;  // token counts
  virtual void OnInt(Field f, int64_t v) = 0;    // cost (nano-USD), times, step_index
  virtual void OnReason(std::string_view policy_id, std::string_view message) = 0;
  virtual void OnAttribute(std::string_view key, std::string_view value) = 0;
};

// The place of a stored value in the chain, read by VisitStoredRecord.
struct StoredPlace {
  uint64_t seq = 0;
  Hash hash{};
  bool personal_data_erased = false;
};

// Decodes one stored value (QueryResult::encoded) into `visitor`, personal
// fields only while they are not erased, and its place into `*place` (set
// before the first field). Corruption names the offset and the section; the
// visitor may then have received some of the fields.
Status VisitStoredRecord(std::string_view encoded, StoredPlace* place,
                         RecordFieldVisitor* visitor);

}  // namespace bastion

#endif  // BASTION_LEDGER_H_
