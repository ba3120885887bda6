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
#include <string>
#include <thread>
#include <vector>

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
inline constexpr std::string_view kFormatName = "bastion-ledger/1";
std::string EncodeHead(const Head& head);
bool DecodeHead(std::string_view value, Head* head);

class Writer {
 public:
  Writer(RocksStore* store, const LedgerOptions& options, Head head);
  ~Writer();

  // Queues `records` with consecutive sequence numbers and returns the first.
  // Blocks while the queue is full. Fails if the writer has failed or stopped.
  // Without `wake` the writer thread is not woken for them (a waited record
  // will follow; the writer also wakes every group_sync_interval).
  Result<uint64_t> Submit(std::vector<PendingRecord>* records, bool wake = true);
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

  // Whoever writes a batch holds write_mu_: the writer thread, or a producer
  // waiting for its own record that finds no write in progress and writes the
  // queue itself (saving two thread hand-offs). Lock order: write_mu_, mu_.
  std::mutex write_mu_;
  // Guarded by write_mu_.
  std::vector<PendingRecord> batch_;
  struct PostingEntry {
    uint8_t kind;
    uint64_t hash;
    uint64_t seq;
  };
  std::vector<PostingEntry> postings_;
  std::string scratch_;

  std::thread thread_;
};

}  // namespace bastion

#endif  // BASTION_LEDGER_WRITER_H_
