#include "ledger/verifier.h"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "ledger/hash_chain.h"
#include "ledger/index_keys.h"
#include "ledger/record_codec.h"
#include "ledger/writer.h"
#include "util/sha256.h"

namespace bastion {
namespace {

constexpr size_t kChunkRecords = 2048;
constexpr int kIndexSlots = index::kPostingKinds + 1;  // postings + time

// An order-independent digest of a set of (kind, value hash, seq) entries:
// the records predict it, the index must produce the same one.
inline uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
inline uint64_t EntryDigest(uint64_t value_hash, uint64_t seq) {
  return Mix(value_hash ^ Mix(seq));
}

struct IndexSums {
  std::array<uint64_t, kIndexSlots> sum{};
  std::array<uint64_t, kIndexSlots> count{};
  void Add(int slot, uint64_t value_hash, uint64_t seq) {
    sum[slot] += EntryDigest(value_hash, seq);
    ++count[slot];
  }
  void Merge(const IndexSums& o) {
    for (int i = 0; i < kIndexSlots; ++i) {
      sum[i] += o.sum[i];
      count[i] += o.count[i];
    }
  }
};

struct Problem {
  VerifyProblem kind = VerifyProblem::kNone;
  uint64_t seq = 0;
  std::string message;
  bool set() const { return kind != VerifyProblem::kNone; }
  // Keeps the problem with the lowest sequence number.
  void Offer(VerifyProblem k, uint64_t s, std::string m) {
    if (!set() || s < seq) {
      kind = k;
      seq = s;
      message = std::move(m);
    }
  }
  void Offer(const Problem& p) {
    if (p.set()) Offer(p.kind, p.seq, p.message);
  }
};

// Collects what the indexes should hold for a record while it is decoded.
class IndexFieldVisitor final : public codec::FieldVisitor {
 public:
  std::array<std::optional<uint64_t>, index::kPostingKinds> hashes;
  int64_t timestamp_ns = 0;
  void OnString(Field f, std::string_view v) override {
    for (int i = 0; i < index::kPostingKinds; ++i) {
      if (index::FieldOf(index::PostingKind(i)) == f) hashes[i] = index::ValueHash(v);
    }
  }
  void OnUint(Field, uint64_t) override {}
  void OnInt(Field f, int64_t v) override {
    if (f == Field::kTimestampNs) timestamp_ns = v;
  }
  void OnReason(std::string_view, std::string_view) override {}
  void OnAttribute(std::string_view, std::string_view) override {}
};

struct Chunk {
  uint64_t first_seq;
  std::vector<std::string> values;
};

// Checks the contents of one record: hash, then strict decoding. The caller
// has already checked the header, the sequence and the link.
void CheckRecord(Sha256* sha, uint64_t seq, std::string_view value, Problem* problem,
                 IndexSums* sums) {
  codec::ValueView view;
  if (!codec::ParseValue(value, &view).ok()) return;  // reported by the main thread
  const Hash expected = chain::ExpectedHash(sha, view);
  if (std::memcmp(expected.data(), view.hash.data(), 32) != 0) {
    problem->Offer(VerifyProblem::kHashMismatch, seq,
                   fmt::format("record {}: content does not match its chain hash "
                               "(stored {}, computed {})",
                               seq, HashToHex(*reinterpret_cast<const Hash*>(view.hash.data())),
                               HashToHex(expected)));
    return;
  }
  IndexFieldVisitor fields;
  Status s = codec::DecodeSection(view.body, false, &fields);
  if (s.ok() && !view.erased()) {
    s = codec::DecodeSection(view.personal.substr(codec::kSaltBytes), true, &fields);
  }
  if (!s.ok()) {
    problem->Offer(VerifyProblem::kUndecodable, seq,
                   fmt::format("record {}: undecodable: {}", seq, s.message()));
    return;
  }
  if (sums == nullptr) return;
  for (int i = 0; i < index::kPostingKinds; ++i) {
    // Erased records lose their personal index entries (user).
    if (fields.hashes[i]) sums->Add(i, *fields.hashes[i], seq);
  }
  sums->Add(index::kPostingKinds, static_cast<uint64_t>(fields.timestamp_ns), seq);
}

class HashWorkers {
 public:
  HashWorkers(unsigned n, bool index_sums) : index_sums_(index_sums) {
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~HashWorkers() { Finish(); }

  void Push(Chunk chunk) {
    std::unique_lock<std::mutex> lock(mu_);
    room_cv_.wait(lock, [&] { return queue_.size() < 2 * threads_.size() + 2; });
    queue_.push_back(std::move(chunk));
    work_cv_.notify_one();
  }

  void Finish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  Problem problem;  // read after Finish
  IndexSums sums;

 private:
  void Run() {
    Sha256 sha;
    Problem local;
    IndexSums local_sums;
    while (true) {
      Chunk chunk;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [&] { return done_ || !queue_.empty(); });
        if (queue_.empty()) break;
        chunk = std::move(queue_.front());
        queue_.pop_front();
        room_cv_.notify_one();
      }
      for (size_t i = 0; i < chunk.values.size(); ++i) {
        CheckRecord(&sha, chunk.first_seq + i, chunk.values[i], &local,
                    index_sums_ ? &local_sums : nullptr);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    problem.Offer(local);
    sums.Merge(local_sums);
  }

  const bool index_sums_;
  std::mutex mu_;
  std::condition_variable work_cv_, room_cv_;
  std::deque<Chunk> queue_;
  bool done_ = false;
  std::vector<std::thread> threads_;
};

std::string SeqKey(uint64_t seq) {
  std::string k;
  codec::PutFixed64BE(&k, seq);
  return k;
}

// Sums what the index column family holds for seqs in [from, to], and reports
// entries that cannot be decoded.
Status SumIndex(RocksStore* store, const rocksdb::Snapshot* snap, uint64_t from, uint64_t to,
                IndexSums* sums, Problem* problem,
                const std::function<void(int)>& on_kind) {
  auto it = store->NewIterator(store->index(), snap, /*scan=*/true);
  std::vector<uint64_t> seqs;
  int last_kind = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    const int kind = k.size() > 0 ? static_cast<uint8_t>(k[0]) : 0;
    if (kind != last_kind) {
      on_kind(kind);
      last_kind = kind;
    }
    if (k.size() != index::kPostingKeyBytes || kind < 1 || kind > kIndexSlots) {
      problem->Offer(VerifyProblem::kIndexInconsistent, from,
                     fmt::format("index entry of {} bytes with kind {} is malformed", k.size(),
                                 kind));
      continue;
    }
    const uint64_t a = codec::GetFixed64BE(k.data() + 1);
    const uint64_t b = codec::GetFixed64BE(k.data() + 9);
    if (kind == static_cast<int>(index::Kind::kTime)) {
      if (b >= from && b <= to) sums->Add(kind - 1, a ^ (1ULL << 63), b);
      continue;
    }
    seqs.clear();
    Status s = index::DecodePostings(b, std::string_view(it->value().data(), it->value().size()),
                                     &seqs);
    if (!s.ok()) {
      problem->Offer(VerifyProblem::kIndexInconsistent, std::max(b, from),
                     fmt::format("{} index: {}", index::KindName(static_cast<index::Kind>(kind)),
                                 s.message()));
      continue;
    }
    for (uint64_t seq : seqs) {
      if (seq >= from && seq <= to) sums->Add(kind - 1, a, seq);
    }
  }
  return store->IteratorStatus(it.get(), "reading the ledger's indexes");
}

// Called only once the sums disagree: finds the first sequence number whose
// entries in index `slot` differ from what its record says.
void LocateIndexProblem(RocksStore* store, const rocksdb::Snapshot* snap, uint64_t from,
                        uint64_t to, int slot, Problem* problem) {
  const auto kind = static_cast<index::Kind>(slot + 1);
  std::unordered_map<uint64_t, std::vector<uint64_t>> indexed;  // seq -> value hashes
  auto it = store->NewIterator(store->index(), snap, true);
  const char prefix = static_cast<char>(kind);
  std::vector<uint64_t> seqs;
  for (it->Seek(rocksdb::Slice(&prefix, 1)); it->Valid() && it->key()[0] == prefix; it->Next()) {
    const rocksdb::Slice k = it->key();
    if (k.size() != index::kPostingKeyBytes) continue;
    const uint64_t a = codec::GetFixed64BE(k.data() + 1);
    const uint64_t b = codec::GetFixed64BE(k.data() + 9);
    seqs.clear();
    if (kind == index::Kind::kTime) {
      seqs.push_back(b);
    } else if (!index::DecodePostings(b, {it->value().data(), it->value().size()}, &seqs).ok()) {
      continue;
    }
    for (uint64_t seq : seqs) {
      if (seq >= from && seq <= to) {
        indexed[seq].push_back(kind == index::Kind::kTime ? (a ^ (1ULL << 63)) : a);
      }
    }
  }
  auto rit = store->NewIterator(store->records(), snap, true);
  const std::string start = SeqKey(from);
  uint64_t first_bad = 0;
  for (rit->Seek(start); rit->Valid(); rit->Next()) {
    const uint64_t seq = codec::GetFixed64BE(rit->key().data());
    if (seq > to) break;
    codec::ValueView view;
    if (!codec::ParseValue({rit->value().data(), rit->value().size()}, &view).ok()) continue;
    IndexFieldVisitor fields;
    (void)codec::DecodeSection(view.body, false, &fields);
    if (!view.erased()) {
      (void)codec::DecodeSection(view.personal.substr(codec::kSaltBytes), true, &fields);
    }
    std::optional<uint64_t> expected =
        kind == index::Kind::kTime ? std::optional<uint64_t>(fields.timestamp_ns)
                                   : fields.hashes[slot];
    auto found = indexed.find(seq);
    const bool ok = expected ? (found != indexed.end() && found->second.size() == 1 &&
                                found->second[0] == *expected)
                             : found == indexed.end();
    if (found != indexed.end()) indexed.erase(found);
    if (!ok) {
      first_bad = seq;
      break;
    }
  }
  for (const auto& [seq, hashes] : indexed) {  // entries pointing at no record
    if (first_bad == 0 || seq < first_bad) first_bad = seq;
  }
  if (first_bad == 0) first_bad = from;
  problem->Offer(VerifyProblem::kIndexInconsistent, first_bad,
                 fmt::format("record {}: the {} index disagrees with the record", first_bad,
                             index::KindName(kind)));
}

}  // namespace

VerifyReport VerifyLedger(RocksStore* store, const VerifyOptions& options) {
  VerifyReport report;
  auto snapshot = store->Snapshot();
  const rocksdb::Snapshot* snap = snapshot.get();
  Problem problem;

  // The head, as stored.
  Head head;
  bool head_readable = true;
  {
    std::string value;
    Status s = store->Get(store->meta(), kMetaHeadKey, &value, snap);
    if (s.IsNotFound()) {
      head = Head{};
    } else if (!s.ok()) {
      report.error = s;
      report.message = s.ToString();
      return report;
    } else if (!DecodeHead(value, &head)) {
      head_readable = false;
    }
  }

  // The last stored record bounds the range when the head is unreadable.
  uint64_t last_stored = 0;
  {
    auto it = store->NewIterator(store->records(), snap);
    it->SeekToLast();
    if (it->Valid() && it->key().size() == 8) last_stored = codec::GetFixed64BE(it->key().data());
  }
  const uint64_t end = head_readable ? head.seq : last_stored;
  const uint64_t from = std::max<uint64_t>(1, options.from_seq.value_or(1));
  const uint64_t to = std::min(options.to_seq.value_or(end), end);
  report.from_seq = from;
  report.to_seq = to;
  const bool to_head = to == end;
  Problem head_problem;
  if (!head_readable) {
    head_problem.Offer(VerifyProblem::kHeadMismatch, end,
                  fmt::format("the chain head (meta key 'head') is unreadable; "
                              "the last stored record is {}", last_stored));
  }

  // The hash the first record in range must link to.
  Hash prev{};
  if (from > 1 && from <= to) {
    std::string value;
    Status s = store->Get(store->records(), SeqKey(from - 1), &value, snap);
    codec::ValueView view;
    if (s.ok() && codec::ParseValue(value, &view).ok()) {
      std::memcpy(prev.data(), view.hash.data(), 32);
    } else if (s.ok() || s.IsNotFound()) {
      problem.Offer(VerifyProblem::kGap, from - 1,
                    fmt::format("record {} (before the range) is missing or undecodable", from - 1));
    } else {
      report.error = s;
    }
  }

  const uint64_t total = to >= from ? to - from + 1 : 0;
  const uint64_t progress_total = options.check_indexes ? 2 * total : total;
  unsigned threads = options.threads ? options.threads : std::thread::hardware_concurrency();
  threads = std::max(1u, std::min(threads, 16u));
  HashWorkers workers(threads, options.check_indexes);

  uint64_t expected = from;
  uint64_t bytes = 0;
  bool cancelled = false;
  Chunk chunk{from, {}};
  chunk.values.reserve(kChunkRecords);
  auto it = store->NewIterator(store->records(), snap, /*scan=*/true);
  for (it->Seek(SeqKey(from)); it->Valid() && !problem.set(); it->Next()) {
    const rocksdb::Slice key = it->key();
    if (key.size() != 8) {
      problem.Offer(VerifyProblem::kMisplaced, expected,
                    fmt::format("a record key of {} bytes (not 8) follows record {}", key.size(),
                                expected - 1));
      break;
    }
    const uint64_t seq = codec::GetFixed64BE(key.data());
    if (seq > to) {
      if (to_head && seq > end) {
        problem.Offer(VerifyProblem::kExtraRecords, seq,
                      fmt::format("record {} exists past the chain head {}", seq, end));
      }
      break;
    }
    if (seq != expected) {
      problem.Offer(VerifyProblem::kGap, expected,
                    fmt::format("record {} is missing (the next stored record is {})", expected,
                                seq));
      break;
    }
    const std::string_view value(it->value().data(), it->value().size());
    codec::ValueView view;
    Status s = codec::ParseValue(value, &view);
    if (!s.ok()) {
      problem.Offer(VerifyProblem::kUndecodable, seq,
                    fmt::format("record {}: undecodable: {}", seq, s.message()));
      break;
    }
    if (view.seq != seq) {
      problem.Offer(VerifyProblem::kMisplaced, seq,
                    fmt::format("record stored as {} says it is record {} (reordered or inserted)",
                                seq, view.seq));
      break;
    }
    if (std::memcmp(view.prev_hash.data(), prev.data(), 32) != 0) {
      problem.Offer(VerifyProblem::kBrokenLink, seq,
                    fmt::format("record {}: previous hash {} is not record {}'s hash {}", seq,
                                HashToHex(*reinterpret_cast<const Hash*>(view.prev_hash.data())),
                                seq - 1, HashToHex(prev)));
      break;
    }
    std::memcpy(prev.data(), view.hash.data(), 32);
    bytes += value.size();
    chunk.values.emplace_back(value);
    ++expected;
    if (chunk.values.size() == kChunkRecords) {
      workers.Push(std::move(chunk));
      chunk = Chunk{expected, {}};
      chunk.values.reserve(kChunkRecords);
      if (options.progress && !options.progress(expected - from, progress_total)) {
        cancelled = true;
        break;
      }
    }
  }
  if (!problem.set() && !cancelled) {
    Status s = store->IteratorStatus(it.get(), "reading the ledger's records");
    if (!s.ok()) report.error = s;
  }
  it.reset();
  if (!chunk.values.empty()) workers.Push(std::move(chunk));
  workers.Finish();
  problem.Offer(workers.problem);
  problem.Offer(head_problem);

  if (!problem.set() && !cancelled && report.error.ok()) {
    if (expected <= to) {
      problem.Offer(to_head ? VerifyProblem::kTruncated : VerifyProblem::kGap, expected,
                    to_head ? fmt::format("records {}..{} are missing: the chain head names "
                                          "record {} but the records end at {}",
                                          expected, to, to, expected - 1)
                            : fmt::format("record {} is missing", expected));
    } else if (to_head && to > 0 && std::memcmp(prev.data(), head.hash.data(), 32) != 0) {
      problem.Offer(VerifyProblem::kHeadMismatch, to,
                    fmt::format("the chain head's hash {} is not record {}'s hash {}",
                                HashToHex(head.hash), to, HashToHex(prev)));
    }
  }

  if (!problem.set() && !cancelled && report.error.ok() && options.check_indexes && total > 0) {
    IndexSums actual;
    Status s = SumIndex(store, snap, from, to, &actual, &problem, [&](int kind) {
      if (options.progress && !options.progress(total + total * (kind - 1) / kIndexSlots,
                                                progress_total)) {
        cancelled = true;
      }
    });
    if (!s.ok()) report.error = s;
    if (!problem.set() && s.ok()) {
      for (int slot = 0; slot < kIndexSlots; ++slot) {
        if (actual.sum[slot] != workers.sums.sum[slot] ||
            actual.count[slot] != workers.sums.count[slot]) {
          LocateIndexProblem(store, snap, from, to, slot, &problem);
          break;
        }
      }
    }
  }

  report.records_checked = expected - from;
  report.bytes_checked = bytes;
  report.cancelled = cancelled;
  if (problem.set()) {
    report.problem = problem.kind;
    report.bad_seq = problem.seq;
    report.message = problem.message;
  } else if (!report.error.ok()) {
    report.message = report.error.ToString();
  } else if (cancelled) {
    report.message = "verification cancelled";
  } else {
    report.ok = true;
    report.message = total == 0 ? "no records in range"
                                : fmt::format("records {}..{} verified", from, to);
    if (options.progress) options.progress(progress_total, progress_total);
  }
  return report;
}

}  // namespace bastion
