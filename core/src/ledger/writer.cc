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

Writer::Writer(RocksStore* store, const LedgerOptions& options, Head head)
    : store_(store),
      options_(options),
      next_seq_(head.seq + 1),
      head_(head),
      written_seq_(head.seq),
      durable_seq_(head.seq) {
  thread_ = std::thread([this] { Run(); });
}

Writer::~Writer() { Stop(); }

Head Writer::head() const {
  std::lock_guard<std::mutex> lock(mu_);
  return head_;
}

Status Writer::Fail(Status s) {
  if (failed_.ok()) {
    failed_ = s.WithContext("the ledger's writer failed; reopen the ledger");
  }
  done_cv_.notify_all();
  not_full_cv_.notify_all();
  return failed_;
}

Result<uint64_t> Writer::Submit(std::vector<PendingRecord>* records) {
  const size_t n = records->size();
  std::unique_lock<std::mutex> lock(mu_);
  not_full_cv_.wait(lock, [&] {
    return stopping_ || !failed_.ok() || queue_.empty() ||
           queue_.size() + n <= options_.queue_capacity;
  });
  if (!failed_.ok()) return failed_;
  if (stopping_) return Status::FailedPrecondition("the ledger is closed");
  const bool was_empty = queue_.empty();
  const uint64_t first = next_seq_;
  next_seq_ += n;
  for (auto& r : *records) queue_.push_back(std::move(r));
  lock.unlock();
  if (was_empty) work_cv_.notify_one();
  return first;
}

Status Writer::Wait(uint64_t seq, bool durable) {
  std::atomic<uint64_t>& target = durable ? durable_seq_ : written_seq_;
  if (target.load(std::memory_order_acquire) >= seq) return Status::OK();
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] {
    return target.load(std::memory_order_acquire) >= seq || !failed_.ok() || stopped_;
  });
  if (target.load(std::memory_order_acquire) >= seq) return Status::OK();
  if (!failed_.ok()) return failed_;
  return Status::FailedPrecondition("the ledger was closed before the record was written");
}

Status Writer::Flush() {
  uint64_t last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failed_.ok()) return failed_;
    last = next_seq_ - 1;
    flush_target_ = std::max(flush_target_, last);
  }
  work_cv_.notify_one();
  return Wait(last, /*durable=*/true);
}

Status Writer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return failed_;
    stopping_ = true;
  }
  work_cv_.notify_one();
  not_full_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  done_cv_.notify_all();
  return failed_;
}

void Writer::Run() {
  using Clock = std::chrono::steady_clock;
  std::vector<PendingRecord> batch;
  // Invariant: !unsynced implies durable_seq_ == head_.seq.
  bool unsynced = false;
  Clock::time_point sync_deadline;

  std::unique_lock<std::mutex> lock(mu_);
  while (failed_.ok()) {
    const bool flush_wanted = flush_target_ > durable_seq_.load(std::memory_order_relaxed);
    const bool sync_due = unsynced && (flush_wanted || Clock::now() >= sync_deadline);
    if (queue_.empty() && !stopping_ && !sync_due) {
      if (unsynced) {
        work_cv_.wait_until(lock, sync_deadline);
      } else {
        work_cv_.wait(lock);
      }
      continue;  // re-evaluate everything after waking
    }

    if (!queue_.empty()) {
      const size_t n = std::min(queue_.size(), options_.max_batch_records);
      const uint64_t first = next_seq_ - queue_.size();  // seq of queue_.front()
      batch.clear();
      bool sync = false;
      for (size_t i = 0; i < n; ++i) {
        sync |= queue_.front().sync;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      lock.unlock();
      not_full_cv_.notify_all();
      Status s = WriteBatchOf(&batch, first, sync);
      lock.lock();
      if (!s.ok()) {
        Fail(s);
        break;
      }
      written_seq_.store(head_.seq, std::memory_order_release);
      if (sync) {
        durable_seq_.store(head_.seq, std::memory_order_release);
        unsynced = false;
      } else if (!unsynced) {
        unsynced = true;
        sync_deadline = Clock::now() + options_.group_sync_interval;
      }
      done_cv_.notify_all();
    }

    if (unsynced && (stopping_ || flush_target_ > durable_seq_.load(std::memory_order_relaxed) ||
                     Clock::now() >= sync_deadline)) {
      const uint64_t upto = head_.seq;
      lock.unlock();
      Status s = store_->SyncWal();
      lock.lock();
      if (!s.ok()) {
        Fail(s);
        break;
      }
      unsynced = false;
      durable_seq_.store(upto, std::memory_order_release);
      done_cv_.notify_all();
    }
    if (stopping_ && queue_.empty() && !unsynced) break;
  }
  done_cv_.notify_all();
}

Status Writer::WriteBatchOf(std::vector<PendingRecord>* batch, uint64_t first_seq, bool sync) {
  thread_local Sha256 sha;
  rocksdb::WriteBatch wb;
  Hash prev = head_.hash;  // only this thread changes head_
  uint64_t seq = first_seq;
  postings_.clear();
  for (PendingRecord& r : *batch) {
    prev = chain::Seal(&sha, &r.value, seq, prev, r.personal_digest);
    wb.Put(store_->records(), codec::RecordKey(seq), r.value);
    for (int i = 0; i < index::kPostingKinds; ++i) {
      if (r.index.present & (1u << i)) {
        postings_.push_back({static_cast<uint8_t>(i + 1), r.index.hashes[i], seq});
      }
    }
    const std::string tkey = index::TimeKey(r.timestamp_ns, seq);
    wb.Put(store_->index(), tkey, rocksdb::Slice());
    ++seq;
  }
  std::stable_sort(postings_.begin(), postings_.end(), [](const auto& a, const auto& b) {
    return a.kind != b.kind ? a.kind < b.kind : a.hash < b.hash;
  });
  std::vector<uint64_t> seqs;
  for (size_t i = 0; i < postings_.size();) {
    size_t j = i;
    seqs.clear();
    while (j < postings_.size() && postings_[j].kind == postings_[i].kind &&
           postings_[j].hash == postings_[i].hash) {
      seqs.push_back(postings_[j].seq);
      ++j;
    }
    scratch_.clear();
    index::EncodePostings(seqs.data(), seqs.size(), &scratch_);
    wb.Put(store_->index(),
           index::PostingKey(static_cast<index::Kind>(postings_[i].kind), postings_[i].hash,
                             seqs[0]),
           scratch_);
    i = j;
  }
  const Head new_head{seq - 1, prev};
  wb.Put(store_->meta(), kMetaHeadKey, EncodeHead(new_head));
  BASTION_RETURN_IF_ERROR(store_->Write(&wb, sync));
  std::lock_guard<std::mutex> lock(mu_);
  head_ = new_head;
  return Status::OK();
}

}  // namespace bastion
