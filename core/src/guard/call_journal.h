// The call journal: every call begun with an idempotency key, kept where it
// stands (awaiting approval, in flight, ended, ...) so that Begin with the key
// finds it again, in this process or in the next one over the same directory.
// docs/architecture.md#the-call-journal describes it for users.
//
// One RocksDB database (GuardOptions::calls_path), or a map in memory when no
// path is given. Its keys:
//
//   c/<key>                    the call (EncodeCall below)
//   m/<key>                    its memo (Guard::Remember), written on its own
//                              so that a memo never races a lifecycle write
//   o/<key>                    present while the call is not over: restored
//                              into the guard's flight at Open
//   e/<ended_ns BE64><key>     present once it is over: pruned after the
//                              retention period, oldest first
//
// Each lifecycle step of a call writes its entry (and index keys) in one
// atomic batch; one thread at a time works on a call, so a key's writes never
// interleave. Damage (a value that does not decode, a store that does not
// open or read) is Corruption naming the journal's path and the key: the
// guard fails closed rather than forgetting calls.
#ifndef BASTION_GUARD_CALL_JOURNAL_H_
#define BASTION_GUARD_CALL_JOURNAL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "bastion/status.h"
#include "guard/stage.h"

namespace bastion::guard {

// The call as kept: what a CallState must carry for the guard to resume it.
// Output text and per-call alerts are not kept (EndResult keeps what the
// caller saw). Corruption (naming `what`) for a value that does not decode.
std::string EncodeCall(const CallState& call);
Status DecodeCall(std::string_view data, std::string_view what, CallState* call);

class CallJournal {
 public:
  // `path` "" = in memory. Opens (creating when missing) and reads the calls
  // not over into open_calls(), then prunes calls over for longer than
  // `retention_ns`. Errors: Busy (another guard holds the journal), IOError,
  // Corruption naming the path and the key.
  static Result<std::unique_ptr<CallJournal>> Open(const std::string& path, int64_t retention_ns,
                                                   int64_t now_ns);
  ~CallJournal();
  CallJournal(const CallJournal&) = delete;
  CallJournal& operator=(const CallJournal&) = delete;

  // The calls found not over at Open (handed out once).
  std::vector<std::unique_ptr<CallState>> TakeOpenCalls();

  // The call kept under `key`, or nullptr when none is (or it is over and
  // its retention has passed at `now_ns`). Corruption / IOError naming the key.
  Result<std::unique_ptr<CallState>> Get(const std::string& key, int64_t now_ns);
  // The memo kept for `key`, if any.
  Result<std::optional<std::string>> GetMemo(const std::string& key);

  // Writes the call where it now stands (call.phase). `sync`: fsynced before
  // it returns; otherwise it survives a process crash, not a power loss.
  // `memo`, when given, is written in the same batch (PutMemo's). `fresh`:
  // the call's first write, which also removes a memo an earlier call under
  // the same key left (unless `memo` replaces it).
  Status Put(const CallState& call, bool sync,
             const std::optional<std::string>& memo = std::nullopt, bool fresh = false);
  Status PutMemo(const std::string& key, const std::string& memo, bool sync);
  // Removes the call kept under `key` and its memo: Begin with the key then
  // begins a new call.
  Status Forget(const std::string& key);

  // Removes the calls over before now - retention (their memos too). Runs
  // at most once per prune interval; cheap (one seek) when nothing is due.
  Status MaybePrune(int64_t now_ns);

  const std::string& path() const { return path_; }
  int64_t retention_ns() const { return retention_ns_; }
  Status Close();

  class Store;

 private:
  CallJournal() = default;
  Status Prune(int64_t now_ns);
  Status CheckOpen() const;
  std::string What(const std::string& key) const;

  std::string path_;
  int64_t retention_ns_ = 0;
  // Shared by reads and writes; exclusive for Close and for Prune, whose
  // read-check-delete must not interleave with a new call's write.
  mutable std::shared_mutex mu_;
  std::unique_ptr<Store> store_;  // GUARDED_BY(mu_)
  std::vector<std::unique_ptr<CallState>> open_;
  std::atomic<int64_t> next_prune_ns_{0};
};

// Over: denied, rejected, or ended with its output shown (or reviewed).
inline bool IsOver(CallPhase p) {
  return p == CallPhase::kEnded || p == CallPhase::kDenied || p == CallPhase::kRejected;
}

}  // namespace bastion::guard

#endif  // BASTION_GUARD_CALL_JOURNAL_H_
