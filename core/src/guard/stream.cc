#include "guard/stream.h"

#include <algorithm>

#include <fmt/format.h>

#include "policy/call_view.h"

namespace bastion::guard {

namespace {

bool IsSpace(unsigned char b) {
  return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f';
}
// A byte a PII match can hold: ASCII and not whitespace.
bool InWord(unsigned char b) { return b < 0x80 && !IsSpace(b); }
// A byte after which a single space may separate the groups of one match:
// card, phone, SSN and IBAN groups end in a digit or upper-case letter, a
// phone's area code in ')', a private key's "BEGIN RSA PRIVATE" words in
// upper-case letters.
bool EndsGroup(unsigned char b) {
  return (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z') || b == ')';
}
bool IsContinuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// The length a UTF-8 lead byte announces (1 for ASCII and invalid bytes).
size_t SequenceLength(unsigned char b) {
  if (b >= 0xF0 && b < 0xF8) return 4;
  if (b >= 0xE0) return b < 0xF0 ? 3 : 1;
  if (b >= 0xC0) return 2;
  return 1;
}

// `cut`, moved back so as not to split a UTF-8 sequence of `s`: to the lead
// byte of the sequence it falls in, or of an incomplete sequence at the end.
// Invalid UTF-8 (more than 3 continuation bytes) is cut anywhere.
size_t Utf8Floor(std::string_view s, size_t cut) {
  if (cut < s.size()) {
    for (int i = 0; i < 3 && cut > 0 && IsContinuation(s[cut]); ++i) --cut;
    return cut;
  }
  size_t lead = s.size();
  for (int i = 0; i < 4 && lead > 0; ++i) {
    --lead;
    if (!IsContinuation(s[lead])) {
      return lead + SequenceLength(s[lead]) > s.size() ? lead : cut;
    }
  }
  return cut;
}

}  // namespace

size_t StreamCut(std::string_view s, size_t hold_bytes) {
  size_t p = s.size();
  for (;;) {
    while (p > 0 && InWord(s[p - 1])) --p;
    // p starts the trailing word (or is s.size() after a trailing separator).
    if (p < 2) break;
    const unsigned char sep = s[p - 1];
    if ((sep != ' ' && sep != '\t') || !EndsGroup(s[p - 2])) break;
    --p;  // a group separator: the run goes on with the word before it
  }
  if (s.size() - p > hold_bytes) p = s.size() - hold_bytes;
  return Utf8Floor(s, p);
}

Stream::Stream(const CallInfo& call, const GuardOptions& options)
    : window_bytes_(options.chunk_window_bytes),
      context_bytes_(options.chunk_context_bytes),
      hold_bytes_(std::min(options.stream_hold_bytes, options.chunk_window_bytes)),
      view_(call) {
  view_.hook = Hook::kOnChunk;
  view_.chunk.clear();
}

// Drops the oldest context so that it is at most chunk_context_bytes and the
// window (context + pending) fits in chunk_window_bytes, as far as the
// pending text allows: the pending text is evaluated whole, so a chunk larger
// than the window makes a larger window.
// The window starts at a word boundary where it can, so that the piece of a
// word cut off does not read as a match of its own ("abc4111..." as a card).
void Stream::TrimContext() {
  std::string& w = view_.chunk;
  const size_t pending_size = w.size() - pending_;
  const size_t keep =
      std::min(context_bytes_, window_bytes_ > pending_size ? window_bytes_ - pending_size : 0);
  if (pending_ <= keep) return;
  size_t drop = pending_ - keep;
  while (drop < pending_ && InWord(w[drop - 1]) && InWord(w[drop])) ++drop;
  while (drop < pending_ && IsContinuation(w[drop])) ++drop;
  w.erase(0, drop);
  pending_ -= drop;
}

ChunkResult Stream::Stopped() const {
  ChunkResult out;
  out.stop = true;
  out.decision = Decision::DefaultAllow();
  for (const Reason& r : report_.stop_reasons) {
    out.decision.Combine(Effect::kDeny, r.policy_id, r.message);
  }
  if (report_.stop_reasons.empty()) {
    out.decision.Combine(Effect::kDeny, "stream",
                         fmt::format("the stream stopped at chunk {}", report_.stop_chunk));
  }
  return out;
}

Decision Stream::Evaluate(const PolicyEngine* engine, bool final) {
  Decision d = Decision::DefaultAllow();
  if (final) {
    policy::FinalChunk last;  // chunk.final
    d = engine->Evaluate(view_);
  } else {
    d = engine->Evaluate(view_);
  }
  if (d.effect == Effect::kDeny) {
    report_.stopped = true;
    report_.stop_chunk = final ? report_.chunks + 1 : report_.chunks;
    report_.stop_at_finish = final;
    report_.stop_byte = report_.released_bytes;
    report_.stop_reasons = d.reasons;
    report_.unreleased_bytes = view_.chunk.size() - pending_;
    // Nothing pending is released: drop it (and the context) now.
    std::string().swap(view_.chunk);
    pending_ = 0;
  }
  return d;
}

ChunkResult Stream::Release(Decision d, bool final) {
  std::string& w = view_.chunk;
  const std::string_view pending = std::string_view(w).substr(pending_);
  // The chunk redactions reaching the pending text, in its offsets.
  std::vector<Redaction> spans;
  for (Redaction& r : d.redactions) {
    if (r.target != "chunk" || r.end <= pending_ || r.start >= w.size()) continue;
    r.start = r.start > pending_ ? r.start - pending_ : 0;
    r.end = std::min(r.end, w.size()) - pending_;
    spans.push_back(r);
  }
  size_t cut = pending.size();
  if (!final) {
    cut = StreamCut(pending, hold_bytes_);
    // A match reaching the held text may still grow: hold it whole, unless
    // that would keep more than a window pending. So does one that only
    // whitespace with a line break separates from the held text: a private
    // key (the one multi-line match) arrives line by line, then
    // "-----END ...".
    size_t open_from = cut;
    bool line_break = false;
    while (open_from > 0 && IsSpace(pending[open_from - 1])) {
      --open_from;
      line_break = line_break || pending[open_from] == '\n' || pending[open_from] == '\r';
    }
    if (!line_break) open_from = cut;
    for (bool moved = true; moved;) {
      moved = false;
      for (const Redaction& r : spans) {
        if ((r.end >= cut || r.end >= open_from) && r.start < cut) {
          cut = r.start;
          moved = true;
        }
      }
    }
    if (pending.size() - cut > window_bytes_) cut = pending.size() - hold_bytes_;
    cut = Utf8Floor(pending, cut);
  }
  std::vector<Redaction> released;
  for (Redaction& r : spans) {
    if (r.start >= cut) continue;
    r.end = std::min(r.end, cut);
    released.push_back(std::move(r));
  }
  ChunkResult out;
  out.text = ApplyRedactions(pending.substr(0, cut), released, "chunk");
  if (!spans.empty()) ++report_.redacted;
  report_.released_bytes += cut;
  pending_ += cut;
  out.held_bytes = w.size() - pending_;
  report_.unreleased_bytes = out.held_bytes;
  out.decision = std::move(d);
  return out;
}

Result<ChunkResult> Stream::Chunk(const PolicyEngine* engine, std::string_view text) {
  std::lock_guard lock(mu_);
  if (report_.stopped) return Stopped();
  if (report_.finished) {
    return Status::FailedPrecondition("the stream has finished (FinishStream); no chunk may follow");
  }
  ++report_.chunks;
  if (engine == nullptr) {
    report_.released_bytes += text.size();
    ChunkResult out;
    out.text = std::string(text);
    out.decision = Decision::DefaultAllow();
    return out;
  }
  view_.chunk.append(text);
  TrimContext();
  Decision d = Evaluate(engine, /*final=*/false);
  if (report_.stopped) {
    ChunkResult out;
    out.stop = true;
    out.decision = std::move(d);
    return out;
  }
  return Release(std::move(d), /*final=*/false);
}

Result<ChunkResult> Stream::Finish(const PolicyEngine* engine) {
  std::lock_guard lock(mu_);
  if (report_.stopped) return Stopped();
  if (report_.finished) {
    return Status::FailedPrecondition("the stream has finished already (FinishStream)");
  }
  report_.finished = true;
  if (engine == nullptr || report_.chunks == 0) {
    ChunkResult out;
    out.decision = Decision::DefaultAllow();
    return out;
  }
  TrimContext();
  Decision d = Evaluate(engine, /*final=*/true);
  if (report_.stopped) {
    ChunkResult out;
    out.stop = true;
    out.decision = std::move(d);
    return out;
  }
  ChunkResult out = Release(std::move(d), /*final=*/true);
  std::string().swap(view_.chunk);  // nothing more comes
  pending_ = 0;
  return out;
}

StreamReport Stream::Report() const {
  std::lock_guard lock(mu_);
  return report_;
}

}  // namespace bastion::guard
