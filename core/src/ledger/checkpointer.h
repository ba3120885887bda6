// Checkpoints a ledger takes by itself (LedgerOptions::checkpoints): every N
// records, every T, and on close, each signed, stored in the ledger and handed
// to the sink. One thread per ledger, only while a count or a period is set.
#ifndef BASTION_LEDGER_CHECKPOINTER_H_
#define BASTION_LEDGER_CHECKPOINTER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "bastion/ledger.h"
#include "bastion/status.h"

namespace bastion {

class Checkpointer {
 public:
  // `last_size`: the tree size of the newest checkpoint the ledger holds by
  // the schedule's key (0: none); sizes up to it are not signed again.
  Checkpointer(Ledger* ledger, CheckpointSchedule schedule, uint64_t last_size);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Stops the thread; the checkpoint it may be taking finishes first.
  // Idempotent. Must not be called with the ledger's lock held.
  void Stop();
  // Takes a checkpoint of the current tree head unless one of that size was
  // taken (then returns the last attempt's status). A failed sink is retried
  // by the next attempt.
  Status TakeIfNew();
  // How the last attempt ended (signing, storing or the sink): OK, or why
  // the newest records are not covered by a checkpoint.
  Status error() const;

 private:
  void Run();
  // The tree head's size if a checkpoint is due by the schedule, else 0.
  uint64_t Due(std::chrono::steady_clock::time_point now);

  Ledger* const ledger_;
  const CheckpointSchedule schedule_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                         // guarded by mu_
  uint64_t last_size_;                            // guarded by mu_
  std::chrono::steady_clock::time_point last_at_;  // guarded by mu_
  Status error_;                                  // guarded by mu_
  // Serializes checkpoints (the thread's and TakeIfNew's).
  std::mutex take_mu_;
  std::thread thread_;
};

}  // namespace bastion

#endif  // BASTION_LEDGER_CHECKPOINTER_H_
