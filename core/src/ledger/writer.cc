#include "ledger/writer.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <rocksdb/write_batch.h>

#include "ledger/hash_chain.h"
#include "ledger/record_codec.h"
#include "util/sha256.h"

namespace bastion {

std::string EncodeHead(const Head& head) {
  std::string out;
  codec::PutFixed64(&out, head.seq);
  out.append(reinterpret_cast<const char*>(head.hash.data()), head.hash.size());
  return out;
}

bool DecodeHead(std::string_view value, Head* head) {
  if (value.size() != 40) return false;
  head->seq = codec::GetFixed64(value.data());
  std::memcpy(head->hash.data(), value.data() + 8, 32);
  return true;
}

std::string EncodeIndexed(uint64_t seq) {
  std::string out;
  codec::PutFixed64(&out, seq);
  return out;
}

Result<std::optional<uint64_t>> ReadIndexMark(RocksStore* store,
                                              const rocksdb::Snapshot* snapshot) {
  std::string value;
  Status s = store->Get(store->meta(), kMetaIndexedKey, &value, snapshot);
  if (s.IsNotFound()) return std::optional<uint64_t>();
  if (!s.ok()) return s;
  if (value.size() != 8) {
    return Status::Corruption(fmt::format(
        "the index mark (meta key 'indexed') is {} bytes, not 8", value.size()));
  }
  return std::optional<uint64_t>(codec::GetFixed64(value.data()));
}

Result<uint64_t> IndexedUpTo(std::optional<uint64_t> mark, uint64_t head_seq) {
  const uint64_t seq = mark.value_or(head_seq);
  if (seq > head_seq) {
    return Status::Corruption(fmt::format(
        "the index mark (meta key 'indexed') names record {}, past the chain head {}", seq,
        head_seq));
  }
  return seq;
}

Result<uint64_t> ReadIndexed(RocksStore* store, const rocksdb::Snapshot* snapshot,
                             uint64_t head_seq) {
  auto mark = ReadIndexMark(store, snapshot);
  if (!mark.ok()) return mark.status();
  return IndexedUpTo(*mark, head_seq);
}

void AddPostingEntries(const index::IndexEntries& entries, uint64_t seq,
                       std::vector<PostingEntry>* out) {
  for (int i = 0; i < index::kPostingKinds; ++i) {
    if (entries.present & (1u << i)) {
      out->push_back({static_cast<uint8_t>(i + 1), entries.hashes[i], seq});
    }
  }
}

void PutPostingBlocks(RocksStore* store, std::vector<PostingEntry>* entries, uint64_t upto,
                      rocksdb::WriteBatch* wb) {
  // Entries arrive in seq order, or sorted by a previous call with later
  // entries appended; a stable sort keeps seq order within each value.
  std::stable_sort(entries->begin(), entries->end(), [](const auto& a, const auto& b) {
    return a.kind != b.kind ? a.kind < b.kind : a.hash < b.hash;
  });
  std::vector<uint64_t> seqs;
  std::string block;
  for (size_t i = 0; i < entries->size();) {
    const PostingEntry& first = (*entries)[i];
    seqs.clear();
    for (; i < entries->size() && (*entries)[i].kind == first.kind &&
           (*entries)[i].hash == first.hash;
         ++i) {
      seqs.push_back((*entries)[i].seq);
    }
    block.clear();
    index::EncodePostings(seqs.data(), seqs.size(), &block);
    wb->Put(store->index(),
            index::PostingKey(static_cast<index::Kind>(first.kind), first.hash, seqs[0]), block);
  }
  wb->Put(store->meta(), kMetaIndexedKey, EncodeIndexed(upto));
}

namespace {
std::atomic<bool> g_maintain_tree{true};
}  // namespace

void SetMerkleTreeForBenchmarks(bool maintain) { g_maintain_tree = maintain; }

Writer::Writer(RocksStore* store, const LedgerOptions& options, Head head, uint64_t indexed,
               merkle::CompactRange tree)
    : store_(store),
      options_(options),
      next_seq_(head.seq + 1),
      head_(head),
      written_seq_(head.seq),
      durable_seq_(head.seq),
      full_batch_(std::max<size_t>(
          1, std::min(options.max_batch_records, options.queue_capacity))),
      indexed_(indexed),
      tree_(std::move(tree)),
      maintain_tree_(g_maintain_tree.load()) {
  thread_ = std::thread([this] { Run(); });
}

Writer::~Writer() { Stop(); }

Head Writer::head() const {
  std::lock_guard<std::mutex> lock(mu_);
  return head_;
}

Status Writer::Break(Status s, std::vector<PendingRecord>* batch) {
  const uint64_t first = head_.seq + 1, last = next_seq_ - 1;
  bool unawaited = false;
  if (batch != nullptr) {
    for (const PendingRecord& r : *batch) unawaited |= !r.awaited;
    batch->clear();
  }
  for (const PendingRecord& r : queue_) unawaited |= !r.awaited;
  queue_.clear();
  const Status error = s.WithContext(fmt::format("ledger at '{}'", store_->path()));
  if (unawaited && lost_.ok() && first <= last) {
    lost_ = Status::IOError(fmt::format(
        "records {}..{}, appended without waiting for the write (async or deferred), were "
        "not written: {}",
        first, last, error.message()));
  }
  ends_.push_back({error, head_.seq, durable_seq_.load(std::memory_order_relaxed)});
  if (broken_.ok()) broken_ = error;
  // Records that come after the failure take the discarded numbers, so the
  // chain stays gap-free.
  next_seq_ = head_.seq + 1;
  flush_target_ = std::min(flush_target_, head_.seq);
  queue_due_ = {};
  epoch_.store(ends_.size(), std::memory_order_seq_cst);
  done_cv_.notify_all();
  not_full_cv_.notify_all();
  return error;
}

Status Writer::Recover() {
  std::lock_guard<std::mutex> w(write_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_.ok()) return Status::OK();
  }
  Status s = store_->Resume();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!s.ok()) {
      return s.WithContext(fmt::format(
          "ledger at '{}' cannot write until its store recovers from a failed write ({})",
          store_->path(), broken_.message()));
    }
    broken_ = Status::OK();
    // Resume wrote the memtables out; records the log held unsynced are
    // fsynced by the writer thread as usual.
    if (unsynced_) sync_deadline_ = std::chrono::steady_clock::now();
  }
  work_cv_.notify_one();
  return Status::OK();
}

Status Writer::TakeLoss() {
  Status loss = std::move(lost_);
  lost_ = Status::OK();
  return loss;
}

bool Writer::DueBy(std::chrono::steady_clock::time_point due) {
  if (queue_due_ == std::chrono::steady_clock::time_point() || due < queue_due_) {
    queue_due_ = due;
  }
  if (!writer_asleep_ || (queue_due_ >= writer_wakes_ && queue_.size() < full_batch_)) {
    return false;
  }
  writer_asleep_ = false;  // one wake-up is enough until it sleeps again
  return true;
}

bool Writer::WakeWriter() {
  if (!writer_asleep_) return false;
  writer_asleep_ = false;
  return true;
}

Result<Writer::Ticket> Writer::Submit(std::vector<PendingRecord>* records, Handoff handoff) {
  const size_t n = records->size();
  std::unique_lock<std::mutex> lock(mu_);
  if (!broken_.ok() && !stopping_) {
    lock.unlock();
    BASTION_RETURN_IF_ERROR(Recover());
    lock.lock();
  }
  if (!lost_.ok()) return TakeLoss();
  auto has_room = [&] {
    return stopping_ || !broken_.ok() || queue_.empty() ||
           queue_.size() + n <= options_.queue_capacity;
  };
  if (!has_room()) {
    // Backpressure: the writer thread drains the queue now, due or not.
    if (WakeWriter()) work_cv_.notify_one();
    not_full_cv_.wait(lock, has_room);
  }
  if (stopping_) return Status::FailedPrecondition("the ledger is closed");
  if (!broken_.ok()) return broken_;  // broke while this producer waited for room
  const Ticket ticket{next_seq_, epoch_.load(std::memory_order_relaxed)};
  next_seq_ += n;
  for (auto& r : *records) queue_.push_back(std::move(r));
  bool notify = false;
  switch (handoff) {
    case Handoff::kWriter:
      notify = DueBy(std::chrono::steady_clock::now() + options_.async_batch_delay);
      break;
    case Handoff::kCaller:
      break;  // the caller writes the whole queue
    case Handoff::kDeferred:
      notify = DueBy(std::chrono::steady_clock::now() + options_.group_sync_interval);
      break;
  }
  lock.unlock();
  if (notify) work_cv_.notify_one();
  return ticket;
}

Status Writer::Wait(uint64_t seq, uint64_t epoch, bool durable) {
  std::atomic<uint64_t>& target = durable ? durable_seq_ : written_seq_;
  // Sequence numbers are reused after a discard: a target reached counts only
  // if the epoch is the record's before and after reading it.
  auto reached = [&] {
    if (epoch_.load(std::memory_order_seq_cst) != epoch) return false;
    const bool r = target.load(std::memory_order_seq_cst) >= seq;
    return r && epoch_.load(std::memory_order_seq_cst) == epoch;
  };
  while (!reached()) {
    if (epoch_.load(std::memory_order_seq_cst) != epoch) {
      std::lock_guard<std::mutex> lock(mu_);
      const EpochEnd& end = ends_[epoch];
      return seq <= (durable ? end.durable : end.written) ? Status::OK() : end.error;
    }
    if (written_seq_.load(std::memory_order_acquire) < seq) {
      // Write the queue ourselves unless a write is already under way. (A
      // batch holding a sync record is written synced, so this serves
      // durable waits too.) A failure ends the epoch: the loop reports it.
      std::unique_lock<std::mutex> w(write_mu_, std::try_to_lock);
      if (w.owns_lock()) {
        while (epoch_.load(std::memory_order_seq_cst) == epoch &&
               written_seq_.load(std::memory_order_acquire) < seq) {
          bool wrote = false;
          if (!WriteQueued(&wrote).ok() || !wrote) break;
        }
        w.unlock();
        continue;
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (reached() || epoch_.load(std::memory_order_relaxed) != epoch) continue;
    if (stopped_) {
      return Status::FailedPrecondition("the ledger was closed before the record was written");
    }
    // Bounded, so a waiter re-checks whether it can write the queue itself.
    done_cv_.wait_for(lock, std::chrono::milliseconds(1));
  }
  return Status::OK();
}

Status Writer::WriteQueued(bool* wrote) {
  *wrote = false;
  uint64_t first = 0;
  bool sync = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!broken_.ok()) return broken_;
    if (queue_.empty()) return Status::OK();
    const size_t n = std::min(queue_.size(), options_.max_batch_records);
    first = next_seq_ - queue_.size();  // seq of queue_.front()
    batch_.clear();
    for (size_t i = 0; i < n; ++i) {
      sync |= queue_.front().sync;
      batch_.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    // What stays queued keeps its deadline.
    if (queue_.empty()) queue_due_ = {};
  }
  not_full_cv_.notify_all();
  Status s = WriteBatchOf(&batch_, first, sync);
  bool wake_writer = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!s.ok()) return Break(s, &batch_);
    written_seq_.store(head_.seq, std::memory_order_release);
    if (sync) {
      // A synced write makes every earlier write durable too.
      durable_seq_.store(head_.seq, std::memory_order_release);
      unsynced_ = false;
    } else if (!unsynced_) {
      unsynced_ = true;
      sync_deadline_ = std::chrono::steady_clock::now() + options_.group_sync_interval;
      // The writer thread owns the fsync deadline.
      wake_writer |= writer_asleep_ && sync_deadline_ < writer_wakes_;
    }
    if (indexed_ == head_.seq) {
      index_due_ = {};
    } else if (index_due_ == std::chrono::steady_clock::time_point()) {
      index_due_ = std::chrono::steady_clock::now() + options_.index_interval;
      // The writer thread owns the index deadline too.
      wake_writer |= writer_asleep_ && index_due_ < writer_wakes_;
    }
    if (wake_writer) writer_asleep_ = false;
  }
  done_cv_.notify_all();
  if (wake_writer) work_cv_.notify_one();
  *wrote = true;
  return Status::OK();
}

Status Writer::Flush() {
  uint64_t last, epoch;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!broken_.ok()) {
      lock.unlock();
      BASTION_RETURN_IF_ERROR(Recover());
      lock.lock();
    }
    if (!lost_.ok()) return TakeLoss();
    last = next_seq_ - 1;
    epoch = epoch_.load(std::memory_order_relaxed);
    flush_target_ = std::max(flush_target_, last);
  }
  work_cv_.notify_one();
  BASTION_RETURN_IF_ERROR(Wait(last, epoch, /*durable=*/true));
  // The writer thread writes postings when due, or when a flush still waits
  // for its fsync: records that were durable already may wait unindexed.
  std::lock_guard<std::mutex> w(write_mu_);
  if (indexed_ >= last) return Status::OK();
  Status s = WritePostings();
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    return broken_.ok() ? Break(s, nullptr) : s;  // else it was broken already
  }
  return Status::OK();
}

Status Writer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return stop_status_;
  }
  // A store broken by a full disk may have room again: what is still unsynced
  // is then written out.
  Status recovered = Recover();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_one();
  not_full_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  done_cv_.notify_all();
  stop_status_ = TakeLoss();
  if (stop_status_.ok()) stop_status_ = recovered.ok() ? broken_ : recovered;
  return stop_status_;
}

void Writer::Run() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // A broken store writes nothing until a producer recovers it.
    const bool broken = !broken_.ok();
    if (stopping_ && (broken || (queue_.empty() && !unsynced_ &&
                                 index_due_ == Clock::time_point()))) {
      break;
    }
    const bool flush_wanted = flush_target_ > durable_seq_.load(std::memory_order_relaxed);
    const bool sync_due =
        !broken && unsynced_ && (stopping_ || flush_wanted || Clock::now() >= sync_deadline_);
    const bool index_due = !broken && index_due_ != Clock::time_point() &&
                           (stopping_ || flush_wanted || Clock::now() >= index_due_);
    // Queued records wait for their deadline (async_batch_delay, or
    // group_sync_interval for deferred ones) to be written in one batch with
    // those that follow them; records without one are their producers' to
    // write, in the Wait that follows their Submit.
    const bool queue_due =
        !broken && !queue_.empty() &&
        (stopping_ || flush_wanted || queue_.size() >= full_batch_ ||
         (queue_due_ != Clock::time_point() && Clock::now() >= queue_due_));
    if (!queue_due && !sync_due && !index_due) {
      Clock::time_point deadline = Clock::time_point::max();
      if (!broken) {
        if (unsynced_) deadline = sync_deadline_;
        if (index_due_ != Clock::time_point()) deadline = std::min(deadline, index_due_);
        if (!queue_.empty() && queue_due_ != Clock::time_point()) {
          deadline = std::min(deadline, queue_due_);
        }
      }
      writer_asleep_ = true;
      writer_wakes_ = deadline;
      if (deadline == Clock::time_point::max()) {
        work_cv_.wait(lock);
      } else {
        work_cv_.wait_until(lock, deadline);
      }
      writer_asleep_ = false;
      continue;  // re-evaluate everything after waking
    }

    if (queue_due) {
      lock.unlock();
      {
        std::lock_guard<std::mutex> w(write_mu_);
        bool wrote = false;
        (void)WriteQueued(&wrote);  // a failure breaks the store: see the top
      }
      lock.lock();
      continue;
    }

    if (index_due) {
      lock.unlock();
      {
        std::lock_guard<std::mutex> w(write_mu_);
        Status s = WritePostings();
        if (!s.ok()) {
          std::lock_guard<std::mutex> relock(mu_);
          Break(s, nullptr);
        }
      }
      // Producers that found the write lock taken may write their records now.
      done_cv_.notify_all();
      lock.lock();
      continue;
    }

    if (sync_due) {
      const uint64_t upto = head_.seq;
      lock.unlock();
      Status s = store_->SyncWal();
      if (!s.ok()) {
        // Discarding the queue needs the write lock: a producer may be
        // writing a batch of it.
        std::lock_guard<std::mutex> w(write_mu_);
        std::lock_guard<std::mutex> relock(mu_);
        Break(s, nullptr);
      }
      lock.lock();
      if (!s.ok()) continue;
      if (durable_seq_.load(std::memory_order_relaxed) < upto) {
        durable_seq_.store(upto, std::memory_order_release);
      }
      // Batches written while the log was being synced keep it unsynced.
      unsynced_ = head_.seq > durable_seq_.load(std::memory_order_relaxed);
      if (unsynced_) sync_deadline_ = Clock::now() + options_.group_sync_interval;
      done_cv_.notify_all();
    }
  }
  done_cv_.notify_all();
}

Status Writer::WriteBatchOf(std::vector<PendingRecord>* batch, uint64_t first_seq, bool sync) {
  thread_local Sha256 sha;
  rocksdb::WriteBatch wb;
  Hash prev = head_.hash;  // only the holder of write_mu_ changes head_
  uint64_t seq = first_seq;
  // Restored if the write fails: the tree then ends where the records do.
  merkle::CompactRange tree_before = maintain_tree_ ? tree_ : merkle::CompactRange();
  auto put_node = [&](uint8_t level, uint64_t index, const Hash& h) {
    if (level < merkle::kLowestStoredLevel) return;
    wb.Put(store_->tree(), merkle::NodeKey({level, index}),
           rocksdb::Slice(reinterpret_cast<const char*>(h.data()), h.size()));
  };
  for (PendingRecord& r : *batch) {
    prev = chain::Seal(&sha, &r.value, seq, prev, r.personal_digest);
    if (maintain_tree_) tree_.AppendLeaf(&sha, merkle::LeafHash(&sha, prev.data()), put_node);
    wb.Put(store_->records(), codec::RecordKey(seq), r.value);
    wb.Put(store_->index(), index::TimeKey(r.timestamp_ns, seq), rocksdb::Slice());
    for (const ExtraWrite& w : r.extra) {
      if (w.value) {
        wb.Put(w.cf, w.key, *w.value);
      } else {
        wb.Delete(w.cf, w.key);
      }
    }
    AddPostingEntries(r.index, seq, &postings_);
    ++seq;
  }
  const Head new_head{seq - 1, prev};
  const bool index_now = new_head.seq - indexed_ >= options_.index_batch_records;
  if (index_now) PutPostingBlocks(store_, &postings_, new_head.seq, &wb);
  wb.Put(store_->meta(), kMetaHeadKey, EncodeHead(new_head));
  if (Status s = store_->Write(&wb, sync); !s.ok()) {
    // The batch is discarded: so are its postings and its tree nodes.
    std::erase_if(postings_, [&](const PostingEntry& e) { return e.seq >= first_seq; });
    if (maintain_tree_) tree_ = std::move(tree_before);
    return s;
  }
  if (index_now) {
    indexed_ = new_head.seq;
    postings_.clear();
  }
  std::lock_guard<std::mutex> lock(mu_);
  head_ = new_head;
  return Status::OK();
}

Status Writer::WritePostings() {
  uint64_t upto;
  {
    std::lock_guard<std::mutex> lock(mu_);
    upto = head_.seq;
    if (!broken_.ok()) return broken_;
  }
  const bool wrote = indexed_ < upto;
  if (wrote) {
    rocksdb::WriteBatch wb;
    PutPostingBlocks(store_, &postings_, upto, &wb);
    BASTION_RETURN_IF_ERROR(store_->Write(&wb, /*sync=*/false));
    indexed_ = upto;
    postings_.clear();
  }
  std::lock_guard<std::mutex> lock(mu_);
  index_due_ = {};
  if (wrote && !unsynced_) {  // the postings reach the disk with the next fsync
    unsynced_ = true;
    sync_deadline_ = std::chrono::steady_clock::now() + options_.group_sync_interval;
  }
  return Status::OK();
}

}  // namespace bastion
