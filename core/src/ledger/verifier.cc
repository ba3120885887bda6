#include "ledger/verifier.h"

#include <algorithm>
#include <array>
#include <bit>
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
#include "ledger/merkle.h"
#include "ledger/record_codec.h"
#include "ledger/writer.h"
#include "util/sha256.h"

namespace bastion {
namespace {

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

// An order-independent digest of a set of Merkle tree nodes: the nodes the
// records imply against the nodes stored.
struct TreeSums {
  uint64_t sum = 0, count = 0;
  void Add(uint8_t level, uint64_t index, const uint8_t* hash) {
    uint64_t a, b;
    std::memcpy(&a, hash, 8);
    std::memcpy(&b, hash + 8, 8);
    sum += Mix(Mix((uint64_t{level} << 56) ^ index) ^ a) ^ Mix(b);
    ++count;
  }
  void Merge(const TreeSums& o) {
    sum += o.sum;
    count += o.count;
  }
  bool operator==(const TreeSums&) const = default;
};

// The Merkle tree a slice's records imply: its compact range (the slice
// starts at a multiple of a power of two no smaller than it, so its nodes are
// the whole tree's), the nodes it completes, and its roots at each trusted
// size within it.
struct SliceTree {
  merkle::CompactRange range;
  bool sum_nodes = false;
  TreeSums sums;
  std::vector<std::pair<uint64_t, std::vector<Hash>>> at;  // (size, range roots then)
};

// One slice [lo, hi] of the range, scanned by one thread with its own
// iterator: sequence, parse, link and hash checks, and (optionally) the index
// entries its records imply. Links across slices are checked when merging.
struct Slice {
  uint64_t lo = 0, hi = 0;
  Problem problem;
  IndexSums sums;
  uint64_t next = 0;  // first sequence number not seen (lo + records scanned)
  uint64_t bytes = 0;
  Hash first_prev{};  // prev_hash of record lo
  bool has_first = false;  // record lo was parsed (first_prev is set)
  Hash last_hash{};   // hash of record next - 1
  uint64_t extra_seq = 0;  // a record past hi (looked for in the last slice only)
  Status error;
  std::optional<SliceTree> tree;  // when the Merkle tree is computed
};

// Posting entries are checked for records up to `indexed` (the index mark);
// later records have only their time-index entry.
// `sizes`: the trusted tree sizes, ascending.
void ScanSlice(RocksStore* store, const rocksdb::Snapshot* snap, bool check_indexes,
               uint64_t indexed, bool peek_past_end, const std::vector<uint64_t>& sizes,
               const std::atomic<bool>& cancel, std::atomic<uint64_t>& progress, Slice* slice) {
  Sha256 sha;
  SliceTree* tree = slice->tree ? &*slice->tree : nullptr;
  auto next_size = std::lower_bound(sizes.begin(), sizes.end(), slice->lo);
  auto sum_node = [tree](uint8_t level, uint64_t index, const Hash& h) {
    if (tree->sum_nodes && level >= merkle::kLowestStoredLevel) {
      tree->sums.Add(level, index, h.data());
    }
  };
  auto it = store->NewIterator(store->records(), snap, /*scan=*/true);
  uint64_t expected = slice->lo;
  Hash prev{};
  Problem& problem = slice->problem;
  uint64_t unreported = 0;
  for (it->Seek(codec::RecordKey(slice->lo)); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key();
    if (key.size() != 8) {
      problem.Offer(VerifyProblem::kMisplaced, expected,
                    fmt::format("a record key of {} bytes (not 8) follows record {}", key.size(),
                                expected - 1));
      break;
    }
    const uint64_t seq = codec::GetFixed64BE(key.data());
    if (seq > slice->hi) {
      if (peek_past_end) slice->extra_seq = seq;
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
    if (seq == slice->lo) {
      std::memcpy(slice->first_prev.data(), view.prev_hash.data(), 32);
      slice->has_first = true;
    } else if (std::memcmp(view.prev_hash.data(), prev.data(), 32) != 0) {
      problem.Offer(VerifyProblem::kBrokenLink, seq,
                    fmt::format("record {}: previous hash {} is not record {}'s hash {}", seq,
                                HashToHex(*reinterpret_cast<const Hash*>(view.prev_hash.data())),
                                seq - 1, HashToHex(prev)));
      break;
    }
    const Hash computed = chain::ExpectedHash(&sha, view);
    if (std::memcmp(computed.data(), view.hash.data(), 32) != 0) {
      problem.Offer(VerifyProblem::kHashMismatch, seq,
                    fmt::format("record {}: content does not match its chain hash "
                                "(stored {}, computed {})",
                                seq, HashToHex(*reinterpret_cast<const Hash*>(view.hash.data())),
                                HashToHex(computed)));
      break;
    }
    // A matching hash proves these are the bytes the writer sealed; decoding
    // them is needed only to know which index entries they imply.
    if (check_indexes) {
      index::IndexedFields fields;
      s = codec::DecodeFields(view, &fields);
      if (!s.ok()) {
        problem.Offer(VerifyProblem::kUndecodable, seq,
                      fmt::format("record {}: undecodable: {}", seq, s.message()));
        break;
      }
      for (int i = 0; i < index::kPostingKinds && seq <= indexed; ++i) {
        if (!fields.values[i].empty()) {
          slice->sums.Add(i, index::ValueHash(fields.values[i]), seq);
        }
      }
      slice->sums.Add(index::kPostingKinds, static_cast<uint64_t>(fields.timestamp_ns), seq);
    }
    std::memcpy(prev.data(), view.hash.data(), 32);
    if (tree != nullptr) {
      tree->range.AppendLeaf(&sha, merkle::LeafHash(&sha, prev.data()), sum_node);
      for (; next_size != sizes.end() && *next_size == seq; ++next_size) {
        tree->at.emplace_back(seq, tree->range.roots());
      }
    }
    slice->bytes += value.size();
    ++expected;
    if (++unreported == 4096) {
      progress.fetch_add(unreported, std::memory_order_relaxed);
      unreported = 0;
      if (cancel.load(std::memory_order_relaxed)) break;
    }
  }
  progress.fetch_add(unreported, std::memory_order_relaxed);
  if (!problem.set()) slice->error = store->IteratorStatus(it.get(), "reading the ledger's records");
  slice->next = expected;
  slice->last_hash = prev;
}

// Sums what the index column family holds for seqs in [from, to], and reports
// entries that cannot be decoded, and posting entries past the index mark
// `indexed` (the mark and the postings up to it are written together).
// With `to_head`, an entry naming a record past `to` (the head) points at no
// record and is reported. Stops early (sums incomplete) when on_kind returns false.
Status SumIndex(RocksStore* store, const rocksdb::Snapshot* snap, uint64_t from, uint64_t to,
                uint64_t indexed, bool to_head, IndexSums* sums, Problem* problem,
                const std::function<bool(int)>& on_kind) {
  auto past_head = [&](int kind, uint64_t seq) {
    problem->Offer(VerifyProblem::kIndexInconsistent, seq,
                   fmt::format("the {} index names record {}, past the chain head {}",
                               index::KindName(static_cast<index::Kind>(kind)), seq, to));
  };
  auto past_mark = [&](int kind, uint64_t seq) {
    problem->Offer(VerifyProblem::kIndexInconsistent, seq,
                   fmt::format("the {} index names record {}, past the index mark {}",
                               index::KindName(static_cast<index::Kind>(kind)), seq, indexed));
  };
  auto it = store->NewIterator(store->index(), snap, /*scan=*/true);
  std::vector<uint64_t> seqs;
  int last_kind = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    const int kind = k.size() > 0 ? static_cast<uint8_t>(k[0]) : 0;
    if (kind != last_kind) {
      if (!on_kind(kind)) break;
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
      if (to_head && b > to) past_head(kind, b);
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
      if (seq >= from && seq <= std::min(to, indexed)) sums->Add(kind - 1, a, seq);
      if (to_head && seq > to) {
        past_head(kind, seq);
      } else if (seq > indexed && seq <= to) {
        past_mark(kind, seq);
      }
    }
  }
  return store->IteratorStatus(it.get(), "reading the ledger's indexes");
}

// Sums the stored tree nodes over records 1..to; reports malformed keys and
// values, and (with `to_head`) nodes past the head.
Status SumTree(RocksStore* store, const rocksdb::Snapshot* snap, uint64_t to, bool to_head,
               TreeSums* sums, Problem* problem) {
  auto it = store->NewIterator(store->tree(), snap, /*scan=*/true);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    uint64_t size;
    uint32_t key_id;
    if (merkle::ParseCheckpointKey(key, &size, &key_id)) continue;
    merkle::NodeId id;
    if (!merkle::ParseNodeKey(key, &id) || id.level < merkle::kLowestStoredLevel) {
      problem->Offer(VerifyProblem::kTreeInconsistent, to,
                     fmt::format("a key of {} bytes in the tree column family is not a Merkle "
                                 "tree node's",
                                 key.size()));
      continue;
    }
    const bool huge = id.level >= 63 || id.index >= (~uint64_t{0} >> id.level);
    const uint64_t first = huge ? ~uint64_t{0} : (id.index << id.level) + 1;
    const uint64_t last = huge ? ~uint64_t{0} : (id.index + 1) << id.level;
    if (last > to) {
      if (to_head) {
        problem->Offer(VerifyProblem::kTreeInconsistent, std::min(first, to + 1),
                       fmt::format("the Merkle tree node (level {}, index {}) covers records "
                                   "{}..{}, past the chain head {}",
                                   id.level, id.index, first, last, to));
      }
      continue;
    }
    if (it->value().size() != 32) {
      problem->Offer(VerifyProblem::kTreeInconsistent, last,
                     fmt::format("the Merkle tree node (level {}, index {}) is {} bytes, not 32",
                                 id.level, id.index, it->value().size()));
      continue;
    }
    sums->Add(id.level, id.index, reinterpret_cast<const uint8_t*>(it->value().data()));
  }
  return store->IteratorStatus(it.get(), "reading the ledger's Merkle tree");
}

// Called only once the tree sums disagree: rebuilds the tree from the
// records' (verified) chain hashes and reports the first stored node that
// differs, by the record that completes it.
Status LocateTreeProblem(RocksStore* store, const rocksdb::Snapshot* snap, uint64_t to,
                         Problem* problem) {
  Sha256 sha;
  merkle::CompactRange range;
  std::vector<merkle::NodeId> ids;
  std::vector<Hash> expected;
  bool found = false;
  auto check = [&]() -> Status {
    std::vector<std::string> keys, values;
    for (const auto& id : ids) keys.push_back(merkle::NodeKey(id));
    const std::vector<Status> st = store->MultiGet(store->tree(), keys, &values, snap);
    for (size_t i = 0; i < ids.size() && !found; ++i) {
      if (!st[i].ok() && !st[i].IsNotFound()) return st[i];
      const bool same = st[i].ok() && values[i].size() == 32 &&
                        std::memcmp(values[i].data(), expected[i].data(), 32) == 0;
      if (same) continue;
      found = true;
      const uint64_t first = (ids[i].index << ids[i].level) + 1;
      const uint64_t last = (ids[i].index + 1) << ids[i].level;
      problem->Offer(VerifyProblem::kTreeInconsistent, last,
                     fmt::format("the stored Merkle tree node (level {}, index {}) over records "
                                 "{}..{} {}; the records give {}",
                                 ids[i].level, ids[i].index, first, last,
                                 st[i].ok() ? "is " + HashToHex(*reinterpret_cast<const Hash*>(
                                                          values[i].data()))
                                            : std::string("is missing"),
                                 HashToHex(expected[i])));
    }
    ids.clear();
    expected.clear();
    return Status::OK();
  };
  auto it = store->NewIterator(store->records(), snap, /*scan=*/true);
  for (it->Seek(codec::RecordKey(1)); it->Valid() && !found; it->Next()) {
    if (it->key().size() != 8 || codec::GetFixed64BE(it->key().data()) > to) break;
    codec::ValueView view;
    if (!codec::ParseValue({it->value().data(), it->value().size()}, &view).ok()) break;
    range.AppendLeaf(&sha, merkle::LeafHash(&sha, reinterpret_cast<const uint8_t*>(view.hash.data())),
                     [&](uint8_t level, uint64_t index, const Hash& h) {
                       if (level < merkle::kLowestStoredLevel) return;
                       ids.push_back({level, index});
                       expected.push_back(h);
                     });
    if (ids.size() >= 4096) BASTION_RETURN_IF_ERROR(check());
  }
  BASTION_RETURN_IF_ERROR(store->IteratorStatus(it.get(), "reading the ledger's records"));
  if (!found) BASTION_RETURN_IF_ERROR(check());
  if (!found) {
    problem->Offer(VerifyProblem::kTreeInconsistent, to,
                   "the stored Merkle tree holds nodes the records do not give");
  }
  return Status::OK();
}

std::string ShortHex(const Hash& h) { return HashToHex(h).substr(0, 16) + "…"; }

// Called only once the sums disagree: finds the first sequence number whose
// entries in index `slot` differ from what its record says.
void LocateIndexProblem(RocksStore* store, const rocksdb::Snapshot* snap, uint64_t from,
                        uint64_t to, uint64_t index_mark, int slot, Problem* problem) {
  const auto kind = static_cast<index::Kind>(slot + 1);
  std::unordered_map<uint64_t, std::vector<uint64_t>> listed;  // seq -> value hashes
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
        listed[seq].push_back(kind == index::Kind::kTime ? (a ^ (1ULL << 63)) : a);
      }
    }
  }
  auto rit = store->NewIterator(store->records(), snap, true);
  const std::string start = codec::RecordKey(from);
  uint64_t first_bad = 0;
  for (rit->Seek(start); rit->Valid(); rit->Next()) {
    const uint64_t seq = codec::GetFixed64BE(rit->key().data());
    if (seq > to) break;
    codec::ValueView view;
    if (!codec::ParseValue({rit->value().data(), rit->value().size()}, &view).ok()) continue;
    index::IndexedFields fields;
    (void)codec::DecodeFields(view, &fields);
    std::optional<uint64_t> expected;
    if (kind == index::Kind::kTime) {
      expected = static_cast<uint64_t>(fields.timestamp_ns);
    } else if (!fields.values[slot].empty() && seq <= index_mark) {
      expected = index::ValueHash(fields.values[slot]);
    }
    auto found = listed.find(seq);
    const bool ok = expected ? (found != listed.end() && found->second.size() == 1 &&
                                found->second[0] == *expected)
                             : found == listed.end();
    if (found != listed.end()) listed.erase(found);
    if (!ok) {
      first_bad = seq;
      break;
    }
  }
  for (const auto& [seq, hashes] : listed) {  // entries pointing at no record
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
  if (options.from_seq && options.to_seq && *options.from_seq > *options.to_seq) {
    report.error = Status::InvalidArgument(fmt::format(
        "verify: from_seq {} is after to_seq {}; the range is inclusive, from_seq <= to_seq",
        *options.from_seq, *options.to_seq));
    report.message = report.error.ToString();
    return report;
  }
  // Trusted tree heads: their roots are recomputed from record 1 on.
  std::vector<uint64_t> sizes;
  for (const TreeHead& t : options.trusted) sizes.push_back(t.size);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  if (!sizes.empty()) {
    if (options.from_seq.value_or(1) != 1) {
      report.error = Status::InvalidArgument(fmt::format(
          "verify: trusted tree heads are checked from record 1; from_seq is {}",
          *options.from_seq));
    } else if (options.to_seq && *options.to_seq < sizes.back()) {
      report.error = Status::InvalidArgument(fmt::format(
          "verify: to_seq {} ends before the trusted tree head of size {}", *options.to_seq,
          sizes.back()));
    }
    if (!report.error.ok()) {
      report.message = report.error.ToString();
      return report;
    }
  }
  auto snapshot = store->Snapshot();
  const rocksdb::Snapshot* snap = snapshot.get();
  Problem problem;

  // The head, as stored.
  Head head;
  bool head_readable = true;
  bool head_missing = false;
  {
    std::string value;
    Status s = store->Get(store->meta(), kMetaHeadKey, &value, snap);
    if (s.IsNotFound()) {
      head = Head{};
      head_missing = true;  // an empty ledger has none; with records, it is damage
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
    if (!it->Valid()) {
      Status s = store->IteratorStatus(it.get(), "reading the ledger's last record");
      if (!s.ok()) {
        report.error = s;
        report.message = s.ToString();
        return report;
      }
    }
  }
  if (head_missing && last_stored > 0) head_readable = false;
  const uint64_t end = head_readable ? head.seq : last_stored;
  const uint64_t from = std::max<uint64_t>(1, options.from_seq.value_or(1));
  const uint64_t to = std::min(options.to_seq.value_or(end), end);
  report.from_seq = from;
  report.to_seq = to;
  const bool to_head = to == end;
  Problem head_problem;
  if (!head_readable) {
    head_problem.Offer(VerifyProblem::kHeadMismatch, end,
                  fmt::format("the chain head (meta key 'head') is {}; "
                              "the last stored record is {}",
                              head_missing ? "missing" : "unreadable", last_stored));
  }
  // Postings cover records up to the index mark.
  uint64_t indexed = end;
  Problem mark_problem;  // offered after every chain check: they may explain it
  if (options.check_indexes) {
    auto mark = ReadIndexMark(store, snap);
    if (!mark.ok() && mark.status().IsCorruption()) {
      mark_problem.Offer(VerifyProblem::kIndexInconsistent, end, mark.status().message());
    } else if (!mark.ok()) {
      report.error = mark.status();
    } else if (auto upto = IndexedUpTo(*mark, end); !upto.ok()) {
      mark_problem.Offer(VerifyProblem::kIndexInconsistent, **mark, upto.status().message());
    } else {
      indexed = *upto;
    }
  }

  // The hash the first record in range must link to.
  Hash prev{};
  if (from > 1 && from <= to) {
    std::string value;
    Status s = store->Get(store->records(), codec::RecordKey(from - 1), &value, snap);
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

  // The Merkle tree is computed from the records for trusted heads, and to
  // compare the stored tree with (index checks, from record 1, format 2).
  bool check_tree = false;
  if (options.check_indexes && from == 1 && store->tree() != nullptr) {
    std::string format;
    Status fs = store->Get(store->meta(), kMetaFormatKey, &format, snap);
    check_tree = fs.ok() && format == kFormatName;
  }
  const bool compute_tree = check_tree || !sizes.empty();

  const uint64_t total = to >= from ? to - from + 1 : 0;
  const uint64_t progress_total = options.check_indexes ? 2 * total : total;
  unsigned threads = options.threads ? options.threads : std::thread::hardware_concurrency();
  threads = std::max(1u, std::min(threads, 64u));

  // Slices of at least 64k records, about four per thread for balance.
  std::vector<Slice> slices;
  if (total > 0 && !problem.set()) {
    const uint64_t want = std::max<uint64_t>(1, std::min<uint64_t>(threads * 4, total / 65536 + 1));
    uint64_t step = (total + want - 1) / want;
    // Slices of a power of two records, starting at record 1, hold whole
    // subtrees of the Merkle tree.
    if (compute_tree) step = std::bit_ceil(step);
    for (uint64_t lo = from;; lo += step) {
      Slice sl;
      sl.lo = lo;
      sl.hi = std::min(to, lo + step - 1);
      if (compute_tree) {
        sl.tree.emplace();
        sl.tree->range = merkle::CompactRange(lo - 1);
        sl.tree->sum_nodes = check_tree;
      }
      slices.push_back(std::move(sl));
      if (sl.hi == to) break;
    }
  }
  std::atomic<size_t> next_slice{0};
  std::atomic<bool> cancel{false};
  std::atomic<uint64_t> progress{0};
  const unsigned workers = std::min<size_t>(threads, slices.size());
  unsigned running = workers;  // guarded by done_mu
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < workers; ++t) {
    pool.emplace_back([&] {
      for (size_t i; (i = next_slice.fetch_add(1)) < slices.size();) {
        if (cancel.load()) break;
        ScanSlice(store, snap, options.check_indexes, indexed,
                  /*peek_past_end=*/i + 1 == slices.size() && to_head, sizes, cancel, progress,
                  &slices[i]);
      }
      std::lock_guard<std::mutex> lock(done_mu);
      if (--running == 0) done_cv.notify_one();
    });
  }
  bool cancelled = false;
  for (std::unique_lock<std::mutex> lock(done_mu);
       !done_cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return running == 0; });) {
    lock.unlock();
    if (options.progress && !cancelled &&
        !options.progress(std::min(progress.load(), total), progress_total)) {
      cancelled = true;
      cancel = true;
    }
    lock.lock();
  }
  for (auto& t : pool) t.join();

  // The whole tree, from the slices' ranges in order, and the trusted
  // heads compared in ascending size: the first that disagrees is reported
  // with the last that agrees.
  Sha256 sha;
  merkle::CompactRange whole;
  TreeSums implied_tree;
  auto sum_node = [&](uint8_t level, uint64_t index, const Hash& h) {
    if (check_tree && level >= merkle::kLowestStoredLevel) implied_tree.Add(level, index, h.data());
  };
  std::optional<TreeHead> agreed;  // the largest trusted head that agrees so far
  bool disagreed = false;
  std::vector<TreeHead> trusted = options.trusted;  // by size, for lookups
  std::stable_sort(trusted.begin(), trusted.end(),
                   [](const TreeHead& a, const TreeHead& b) { return a.size < b.size; });
  auto compare_trusted = [&](uint64_t size, const Hash& root) {
    auto first = std::lower_bound(
        trusted.begin(), trusted.end(), size,
        [](const TreeHead& t, uint64_t s) { return t.size < s; });
    for (auto it = first; it != trusted.end() && it->size == size; ++it) {
      const TreeHead& t = *it;
      if (disagreed) continue;
      if (t.root == root) {
        agreed = t;
        continue;
      }
      disagreed = true;
      const std::string where =
          agreed ? fmt::format("the history still matches the checkpoint of size {}, so a record "
                               "in {}..{} was changed",
                               agreed->size, agreed->size + 1, size)
                 : fmt::format("no smaller trusted checkpoint agrees, so a record in 1..{} was "
                               "changed",
                               size);
      problem.Offer(VerifyProblem::kCheckpointMismatch, size,
                    fmt::format("records 1..{} do not match the checkpoint of tree size {} (root "
                                "{}; the records give {}); {}",
                                size, size, ShortHex(t.root), ShortHex(root), where));
    }
  };
  if (!sizes.empty() && sizes.front() == 0) compare_trusted(0, merkle::EmptyRoot());

  // Merge in sequence order; the first problem wins.
  uint64_t checked = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < slices.size() && !problem.set() && !cancelled; ++i) {
    Slice& sl = slices[i];
    if (!sl.error.ok()) {
      report.error = sl.error;
      break;
    }
    if (sl.has_first && std::memcmp(sl.first_prev.data(), prev.data(), 32) != 0) {
      problem.Offer(VerifyProblem::kBrokenLink, sl.lo,
                    fmt::format("record {}: previous hash {} is not record {}'s hash {}", sl.lo,
                                HashToHex(sl.first_prev), sl.lo - 1, HashToHex(prev)));
      break;
    }
    if (sl.tree) {
      // Roots at the trusted sizes in this slice: the whole tree's roots
      // before it, then the slice's own.
      for (const auto& [size, roots] : sl.tree->at) {
        std::vector<Hash> all = whole.roots();
        all.insert(all.end(), roots.begin(), roots.end());
        compare_trusted(size, merkle::Fold(&sha, all.data(), all.size()));
      }
      implied_tree.Merge(sl.tree->sums);
      if (!sl.problem.set() && sl.next > sl.hi) {
        uint64_t at = sl.tree->range.begin();
        for (const Hash& h : sl.tree->range.roots()) {
          const int level = std::bit_width(sl.tree->range.end() - at) - 1;
          whole.AppendNode(&sha, level, h, sum_node);
          at += uint64_t{1} << level;
        }
      }
    }
    checked += sl.next - sl.lo;
    bytes += sl.bytes;
    if (sl.problem.set()) {
      problem.Offer(sl.problem);
      break;
    }
    if (sl.next <= sl.hi) {
      const bool at_end = to_head && i + 1 == slices.size();
      problem.Offer(at_end ? VerifyProblem::kTruncated : VerifyProblem::kGap, sl.next,
                    at_end ? fmt::format("records {}..{} are missing: the chain head names "
                                         "record {} but the records end at {}",
                                         sl.next, to, to, sl.next - 1)
                           : fmt::format("record {} is missing", sl.next));
      break;
    }
    prev = sl.last_hash;
    if (sl.extra_seq != 0) {
      problem.Offer(VerifyProblem::kExtraRecords, sl.extra_seq,
                    fmt::format("record {} exists past the chain head {}", sl.extra_seq, end));
    }
  }
  problem.Offer(head_problem);
  if (report.error.ok() && !cancelled && !sizes.empty() && sizes.back() > end) {
    const uint64_t size = sizes.back();  // the records it proves existed: up to here
    problem.Offer(VerifyProblem::kRolledBack, end + 1,
                  fmt::format("the checkpoint of tree size {} is past the chain head (record {}): "
                              "records {}..{} were removed",
                              size, end, end + 1, size));
  }
  if (!problem.set() && !cancelled && report.error.ok()) {
    if (to_head && total > 0 && std::memcmp(prev.data(), head.hash.data(), 32) != 0) {
      problem.Offer(VerifyProblem::kHeadMismatch, to,
                    fmt::format("the chain head's hash {} is not record {}'s hash {}",
                                HashToHex(head.hash), to, HashToHex(prev)));
    } else if (total == 0 && to_head) {
      // Nothing in range, but records past the head are still tampering.
      auto it = store->NewIterator(store->records(), snap);
      it->Seek(codec::RecordKey(end + 1));
      if (it->Valid() && it->key().size() == 8) {
        const uint64_t seq = codec::GetFixed64BE(it->key().data());
        problem.Offer(VerifyProblem::kExtraRecords, seq,
                      fmt::format("record {} exists past the chain head {}", seq, end));
      }
    }
  }
  problem.Offer(mark_problem);
  IndexSums implied;
  for (const Slice& sl : slices) implied.Merge(sl.sums);

  if (!problem.set() && !cancelled && report.error.ok() && options.check_indexes && total > 0) {
    IndexSums actual;
    Status s = SumIndex(store, snap, from, to, indexed, to_head, &actual, &problem,
                        [&](int kind) {
      if (options.progress && !options.progress(total + total * (kind - 1) / kIndexSlots,
                                                progress_total)) {
        cancelled = true;
      }
      return !cancelled;
    });
    if (!s.ok()) report.error = s;
    if (!problem.set() && s.ok() && !cancelled) {
      for (int slot = 0; slot < kIndexSlots; ++slot) {
        if (actual.sum[slot] != implied.sum[slot] || actual.count[slot] != implied.count[slot]) {
          LocateIndexProblem(store, snap, from, to, indexed, slot, &problem);  // lowest seq wins
        }
      }
    }
  }

  if (!problem.set() && !cancelled && report.error.ok() && check_tree) {
    TreeSums stored;
    Status s = SumTree(store, snap, to, to_head, &stored, &problem);
    if (!s.ok()) report.error = s;
    if (s.ok() && !problem.set() && !(stored == implied_tree)) {
      s = LocateTreeProblem(store, snap, to, &problem);
      if (!s.ok()) report.error = s;
    }
  }

  report.records_checked = checked;
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
