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
#include "ledger/rocks_store.h"

namespace bastion {

// A record encoded by its producer, waiting for its place in the chain.
struct PendingRecord {
  std::string value;  // codec::EncodeValue output; seq and hashes still zero
  Hash personal_digest;
  index::IndexEntries index;
  int64_t timestamp_ns = 0;
  bool sync = false;
};

inline constexpr std::string_view kMetaHeadKey = "head";
inline constexpr std::string_view kMetaFormatKey = "format";
// The posting lists cover records 1..seq (u64le); records past it are found
// by reading them. Absent: they cover every record up to the head.
inline constexpr std::string_view kMetaIndexedKey = "indexed";
inline constexpr std::string_view kFormatName = "bastion-ledger/1";
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
// value) to `wb`, and the indexed mark `upto`; clears `entries`.
void PutPostingBlocks(RocksStore* store, std::vector<PostingEntry>* entries, uint64_t upto,
                      rocksdb::WriteBatch* wb);

class Writer {
 public:
  // `indexed`: the last record whose postings are stored.
  Writer(RocksStore* store, const LedgerOptions& options, Head head, uint64_t indexed);
  ~Writer();

  // Who writes a submitted record.
  enum class Handoff {
    kWriter,    // the writer thread, woken now (records nobody waits for)
    kCaller,    // the submitting thread, in the Wait that follows at once; the
                // writer thread is not woken (it would only race the caller)
    kDeferred,  // a later kCaller batch, or the writer thread once the record
                // has waited group_sync_interval
  };
  // Queues `records` with consecutive sequence numbers and returns the first.
  // Blocks while the queue is full. Fails if the writer has failed or stopped.
  Result<uint64_t> Submit(std::vector<PendingRecord>* records, Handoff handoff);
  // Waits until `seq` is written (durable == false) or fsynced (durable == true).
  Status Wait(uint64_t seq, bool durable);
  // Waits until everything queued so far is written and fsynced.
  Status Flush();
  // Drains the queue, fsyncs, and joins the thread. Idempotent.
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
  Status Fail(Status s);  // requires mu_

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
  Status failed_;                        // guarded by mu_
  Head head_;                            // guarded by mu_: last written record

  std::atomic<uint64_t> written_seq_;
  std::atomic<uint64_t> durable_seq_;
  // Written but not yet fsynced records exist; fsync them by sync_deadline_.
  bool unsynced_ = false;                              // guarded by mu_
  std::chrono::steady_clock::time_point sync_deadline_;  // guarded by mu_
  // When records queued without a wake-up started waiting; zero when none.
  std::chrono::steady_clock::time_point deferred_since_;  // guarded by mu_
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

  std::thread thread_;
};

}  // namespace bastion

#endif  // BASTION_LEDGER_WRITER_H_
