// The writer thread: takes encoded records from producers, chains them in
// sequence order, and writes records, index entries and the new head in one
// RocksDB write batch, so a crash can never leave the chain half-written.
#ifndef BASTION_LEDGER_WRITER_H_
#define BASTION_LEDGER_WRITER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/write_batch.h>

#include "bastion/ledger.h"
#include "ledger/index_keys.h"
#include "ledger/merkle.h"
#include "ledger/rocks_store.h"

namespace bastion {

// A put (value set) or delete written in the same RocksDB batch as a record.
struct ExtraWrite {
  rocksdb::ColumnFamilyHandle* cf = nullptr;
  std::string key;
  std::optional<std::string> value;  // nullopt: delete the key
};

// A record encoded by its producer, waiting for its place in the chain.
struct PendingRecord {
  std::string value;  // codec::EncodeValue output; seq and hashes still zero
  Hash personal_digest;
  index::IndexEntries index;
  int64_t timestamp_ns = 0;
  bool sync = false;
  bool awaited = false;  // its producer waits for it (not an async append)
  // Written atomically with the record (an erasure's rewritten records and
  // posting blocks); usually empty.
  std::vector<ExtraWrite> extra;
};

inline constexpr std::string_view kMetaHeadKey = "head";
inline constexpr std::string_view kMetaFormatKey = "format";
// The posting lists cover records 1..seq (u64le); records past it are found
// by reading them. Absent: they cover every record up to the head.
inline constexpr std::string_view kMetaIndexedKey = "indexed";
// Present only while a writer builds the Merkle tree of a ledger of format 1:
// the tree covers records 1..size (u64le). See docs/ledger_format.md.
inline constexpr std::string_view kMetaTreeKey = "tree";
inline constexpr std::string_view kFormatName = "bastion-ledger/2";
// Format 1: no Merkle tree. Read as is; a writer upgrades it to format 2.
inline constexpr std::string_view kFormat1Name = "bastion-ledger/1";
std::string EncodeHead(const Head& head);
bool DecodeHead(std::string_view value, Head* head);
std::string EncodeIndexed(uint64_t seq);
// The stored index mark as of `snapshot` (nullopt when absent); Corruption if
// it is not 8 bytes.
Result<std::optional<uint64_t>> ReadIndexMark(RocksStore* store,
                                              const rocksdb::Snapshot* snapshot);
// The last record the posting lists cover: `mark`, or `head_seq` when it is
// absent. Corruption if the mark is past the head.
Result<uint64_t> IndexedUpTo(std::optional<uint64_t> mark, uint64_t head_seq);
// IndexedUpTo of the stored mark.
Result<uint64_t> ReadIndexed(RocksStore* store, const rocksdb::Snapshot* snapshot,
                             uint64_t head_seq);

// One record's entry in one posting list.
struct PostingEntry {
  uint8_t kind;
  uint64_t hash;
  uint64_t seq;
};
void AddPostingEntries(const index::IndexEntries& entries, uint64_t seq,
                       std::vector<PostingEntry>* out);
// Adds one posting block per distinct value of `entries` (in seq order per
// value) to `wb`, and the indexed mark `upto`. Sorts `entries` by value; the
// caller clears them once the batch is written.
void PutPostingBlocks(RocksStore* store, std::vector<PostingEntry>* entries, uint64_t upto,
                      rocksdb::WriteBatch* wb);

// Benchmarks only: writers created while this is false keep no Merkle tree
// (their ledgers are unusable for proofs and fail verification). It measures
// what the tree costs an append.
void SetMerkleTreeForBenchmarks(bool maintain);

class Writer {
 public:
  // `indexed`: the last record whose postings are stored. `tree`: the compact
  // range of the Merkle tree over records 1..head.seq.
  Writer(RocksStore* store, const LedgerOptions& options, Head head, uint64_t indexed,
         merkle::CompactRange tree);
  ~Writer();

  // Who writes a submitted record.
  // Producers wake the writer thread only when it sleeps past the moment
  // queued work is due (or the queue fills a batch), never per record.
  enum class Handoff {
    kWriter,    // the writer thread, within async_batch_delay (sooner once
                // max_batch_records wait): records nobody waits for
    kCaller,    // the submitting thread, in the Wait that follows at once; the
                // writer thread is not woken (it would only race the caller)
    kDeferred,  // a later kCaller batch, or the writer thread once the record
                // has waited group_sync_interval
  };
  // Where submitted records went: the first's sequence number, and the
  // writer's epoch then. A failed write discards every record not yet written
  // and starts a new epoch, whose records reuse the discarded numbers.
  struct Ticket {
    uint64_t first = 0;
    uint64_t epoch = 0;
  };
  // Queues `records` with consecutive sequence numbers. Blocks while the queue
  // is full. After a failed write it first recovers the store (RocksStore::
  // Resume) and fails with the store's error while that fails, and it fails
  // once with the loss of records that nobody waited for (async appends)
  // that the failed write discarded. FailedPrecondition once stopped.
  Result<Ticket> Submit(std::vector<PendingRecord>* records, Handoff handoff);
  // Waits until record `seq` of `epoch` is written (durable == false) or
  // fsynced (durable == true). The store's error if a failed write discarded
  // it (or, durable, failed before its fsync).
  Status Wait(uint64_t seq, uint64_t epoch, bool durable);
  // Waits until everything queued so far is written and fsynced, and its
  // postings are stored (the index mark covers it); recovers and reports a
  // discard as Submit does.
  Status Flush();
  // Drains the queue, fsyncs, and joins the thread. Idempotent. The store's
  // error if it cannot recover from a failed write, or if records nobody
  // waited for were discarded and not yet reported.
  Status Stop();

  Head head() const;

 private:
  void Run();
  // Takes the next batch from the queue and writes it; *wrote says whether
  // there was one. Requires write_mu_, not mu_.
  Status WriteQueued(bool* wrote);
  Status WriteBatchOf(std::vector<PendingRecord>* batch, uint64_t first_seq, bool sync);
  // Writes the postings gathered since the last such write. Requires
  // write_mu_, not mu_.
  Status WritePostings();
  // A write or fsync failed with `s`: discards the queue and `batch` (the
  // records after the head), starts a new epoch and refuses writes until
  // Recover. Requires write_mu_ and mu_.
  Status Break(Status s, std::vector<PendingRecord>* batch);
  // Resumes the store after Break; OK if nothing is broken. Takes write_mu_.
  Status Recover();
  // The unreported discard of records nobody waited for, cleared. Requires mu_.
  Status TakeLoss();
  // Records nobody writes themselves become due at `due`: wakes the writer
  // thread if it sleeps past then. Requires mu_; returns whether to notify
  // work_cv_ (after unlocking).
  bool DueBy(std::chrono::steady_clock::time_point due);
  // Wakes the writer thread if it sleeps. Requires mu_; as DueBy.
  bool WakeWriter();

  RocksStore* const store_;
  const LedgerOptions options_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;      // writer waits for records or stop
  std::condition_variable not_full_cv_;  // producers wait for room
  std::condition_variable done_cv_;      // producers wait for their record
  std::deque<PendingRecord> queue_;      // guarded by mu_
  uint64_t next_seq_;                    // guarded by mu_: seq of the next Submit
  bool stopping_ = false;                // guarded by mu_
  bool stopped_ = false;                 // guarded by mu_
  uint64_t flush_target_ = 0;            // guarded by mu_: Flush wants this seq fsynced
  Head head_;                            // guarded by mu_: last written record
  // Non-OK from a failed write until the store recovers; guarded by mu_.
  Status broken_;
  // A discard of records nobody waits for, reported by the next Submit,
  // Flush or Stop; guarded by mu_.
  Status lost_;
  // How each ended epoch ended: its error and the last record it wrote and
  // fsynced. Guarded by mu_; ends_[e] is epoch e's.
  struct EpochEnd {
    Status error;
    uint64_t written = 0;
    uint64_t durable = 0;
  };
  std::vector<EpochEnd> ends_;
  // The current epoch (== ends_.size()); written under mu_, read by waiters
  // around their check of written_seq_ / durable_seq_.
  std::atomic<uint64_t> epoch_{0};
  Status stop_status_;  // guarded by mu_: what Stop returned

  std::atomic<uint64_t> written_seq_;
  std::atomic<uint64_t> durable_seq_;
  // Written but not yet fsynced records exist; fsync them by sync_deadline_.
  bool unsynced_ = false;                              // guarded by mu_
  std::chrono::steady_clock::time_point sync_deadline_;  // guarded by mu_
  // When the oldest queued record that its producer does not write itself is
  // due to be written; zero when none is queued.
  std::chrono::steady_clock::time_point queue_due_;  // guarded by mu_
  // The writer thread sleeps on work_cv_ until writer_wakes_ (max: no
  // deadline). Producers notify it only when work is due before then.
  bool writer_asleep_ = false;                        // guarded by mu_
  std::chrono::steady_clock::time_point writer_wakes_;  // guarded by mu_
  // A queue this long is a full batch: written at once.
  const size_t full_batch_;
  // When gathered postings are due to be written; zero when none wait.
  std::chrono::steady_clock::time_point index_due_;  // guarded by mu_

  // Whoever writes a batch holds write_mu_: the writer thread, or a producer
  // waiting for its own record that finds no write in progress and writes the
  // queue itself (saving two thread hand-offs). Lock order: write_mu_, mu_.
  std::mutex write_mu_;
  // Guarded by write_mu_.
  std::vector<PendingRecord> batch_;
  std::vector<PostingEntry> postings_;  // of records indexed_+1..head_.seq
  uint64_t indexed_;
  // The Merkle tree's right edge over records 1..head_.seq; its completed
  // nodes go into the batch that writes their last record.
  merkle::CompactRange tree_;
  const bool maintain_tree_;

  std::thread thread_;
};

}  // namespace bastion

#endif  // BASTION_LEDGER_WRITER_H_
