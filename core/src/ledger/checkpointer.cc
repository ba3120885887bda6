#include "ledger/checkpointer.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "bastion/evidence.h"

namespace bastion {

namespace {

// Signs `head` and stores the checkpoint; its signed note.
Result<std::string> SignAndStore(Ledger* ledger, const SigningKey& key, const TreeHead& head) {
  auto note = SignCheckpoint(key, head.size, head.root);
  if (!note.ok()) return note.status();
  BASTION_RETURN_IF_ERROR(ledger->PutCheckpoint({head.size, key.key_id(), *note}));
  return note;
}

}  // namespace

Result<std::string> Ledger::Checkpoint(const SigningKey& key) {
  auto head = TreeHeadAt(std::nullopt);
  if (!head.ok()) return head.status().WithContext("taking a checkpoint");
  return SignAndStore(this, key, *head);
}

Checkpointer::Checkpointer(Ledger* ledger, CheckpointSchedule schedule, uint64_t last_size)
    : ledger_(ledger),
      schedule_(std::move(schedule)),
      last_size_(last_size),
      last_at_(std::chrono::steady_clock::now()) {
  if (schedule_.every_records > 0 || schedule_.interval.count() > 0) {
    thread_ = std::thread([this] { Run(); });
  }
}

Checkpointer::~Checkpointer() { Stop(); }

void Checkpointer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status Checkpointer::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

uint64_t Checkpointer::Due(std::chrono::steady_clock::time_point now) {
  auto head = ledger_->GetHead();
  if (!head.ok()) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  if (head->seq <= last_size_) return 0;
  const bool by_count =
      schedule_.every_records > 0 && head->seq - last_size_ >= schedule_.every_records;
  const bool by_time = schedule_.interval.count() > 0 && now - last_at_ >= schedule_.interval;
  return by_count || by_time ? head->seq : 0;
}

void Checkpointer::Run() {
  // A count is checked often (reading the head is cheap); a period alone
  // wakes the thread when it ends.
  using std::chrono::milliseconds;
  milliseconds wake = schedule_.interval.count() > 0 ? schedule_.interval : milliseconds(50);
  if (schedule_.every_records > 0) wake = std::min(wake, milliseconds(50));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, wake, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    if (Due(std::chrono::steady_clock::now()) > 0) (void)TakeIfNew();
    lock.lock();
  }
}

Status Checkpointer::TakeIfNew() {
  std::lock_guard<std::mutex> take(take_mu_);
  auto head = ledger_->TreeHeadAt(std::nullopt);
  Status s = head.status();
  bool fresh = false;
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    fresh = head->size > last_size_;
    if (!fresh) last_at_ = std::chrono::steady_clock::now();
  }
  if (s.ok() && fresh) {
    auto note = SignAndStore(ledger_, *schedule_.key, *head);  // the size recorded below
    s = note.status();
    if (s.ok() && schedule_.sink) {
      s = schedule_.sink(*note).WithContext(
          fmt::format("handing the checkpoint of tree size {} to its sink", head->size));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (s.ok() && fresh) {
    last_size_ = head->size;
    last_at_ = std::chrono::steady_clock::now();
  }
  if (fresh || !s.ok()) error_ = s;
  return error_;
}

}  // namespace bastion
