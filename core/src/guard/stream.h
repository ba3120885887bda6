// The streamed output of one guarded call: what on_chunk policies see, what
// is held back, what is released, and where the stream stopped.
// docs/policies.md#streamed-output describes the rules for policy authors.
//
// A stream keeps the raw text it received in two parts: the context (text
// already released, the last chunk_context_bytes of it) and the pending text
// (received, not released yet). Each chunk is appended to the pending text,
// the on_chunk policies evaluate the window (context + pending), and the
// pending text is released up to a cut (StreamCut) chosen so that a pattern
// still growing at the end of the text is not released in part.
#ifndef BASTION_GUARD_STREAM_H_
#define BASTION_GUARD_STREAM_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/guard.h"

namespace bastion::guard {

// Where a pattern may still be growing at the end of `pending`: the start of
// the trailing run held back by the hold rule (pending.size() when nothing
// need be held). The rule, for text ending in ... w1 s w2 (words wN, single
// separators s):
//   - a word is a maximal run of ASCII bytes that are not whitespace (no PII
//     match holds whitespace or a byte >= 0x80: bastion/pii.h);
//   - the last word is held (it may still grow: "alice@exa");
//   - a single ' ' or '\t' after a word ending in an ASCII digit, an
//     upper-case letter or ')' is a group separator ("4111 1111",
//     "+1 415 555", "(415) 555", "DE89 3704", "GB29 NWBK 6016",
//     "-----BEGIN RSA PRIVATE KEY-----"): the held run extends across it to
//     that word, and so on. A trailing separator ("4111 ") is held with the
//     word before it. These are the only spaces inside a match (pii.h);
//     other whitespace ends the run;
//   - at most `hold_bytes` are held this way: older text is released even in
//     the middle of a word;
//   - the cut never falls inside a UTF-8 sequence (an incomplete sequence at
//     the end is held).
size_t StreamCut(std::string_view pending, size_t hold_bytes);

// What the outcome record says about a stream.
struct StreamReport {
  uint64_t chunks = 0;          // chunks received (up to and with a stopping one)
  uint64_t released_bytes = 0;  // raw bytes released
  uint64_t unreleased_bytes = 0;  // raw bytes received and never released
  uint64_t redacted = 0;        // evaluations whose redactions reached released text
  bool finished = false;        // FinishStream was called
  bool stopped = false;         // a policy denied
  // When stopped: the chunk (1-based; chunks + 1 when the end-of-stream
  // evaluation denied) and the raw bytes released before the stop.
  uint64_t stop_chunk = 0;
  uint64_t stop_byte = 0;
  bool stop_at_finish = false;
  std::vector<Reason> stop_reasons;  // the denying votes (policy id, message)
};

// One call's stream. Thread-safe (its own mutex); chunks of one call are
// expected in order from one producer, and calls to one stream serialize.
class Stream {
 public:
  // `call` is copied once: every evaluation reads the copy.
  Stream(const CallInfo& call, const GuardOptions& options);

  // Evaluates the window with `text` appended and releases what the hold rule
  // allows. A stopped stream returns stop and evaluates nothing.
  // FailedPrecondition after Finish.
  Result<ChunkResult> Chunk(const PolicyEngine* engine, std::string_view text);
  // The last evaluation (chunk.final = true), then everything pending is
  // released. A stopped stream returns stop and evaluates nothing.
  // FailedPrecondition when called twice.
  Result<ChunkResult> Finish(const PolicyEngine* engine);

  StreamReport Report() const;

 private:
  // Evaluates the window; on deny stops the stream. Returns the decision.
  Decision Evaluate(const PolicyEngine* engine, bool final);
  // Releases pending[0, cut) with the chunk redactions of `d` (window
  // offsets) applied; keeps the rest pending.
  ChunkResult Release(Decision d, bool final);
  void TrimContext();
  ChunkResult Stopped() const;

  const size_t window_bytes_;
  const size_t context_bytes_;
  const size_t hold_bytes_;

  mutable std::mutex mu_;
  // The view the policies read; view_.chunk is the window: the context (its
  // first pending_ bytes) then the pending text. GUARDED_BY(mu_) from here on.
  CallInfo view_;
  size_t pending_ = 0;  // where the pending text starts in view_.chunk
  StreamReport report_;
};

}  // namespace bastion::guard

#endif  // BASTION_GUARD_STREAM_H_
