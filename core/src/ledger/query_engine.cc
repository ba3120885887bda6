#include "ledger/query_engine.h"

#include <algorithm>
#include <charconv>
#include <optional>

#include <fmt/format.h>

#include "ledger/index_keys.h"
#include "ledger/record_codec.h"
#include "ledger/writer.h"

namespace bastion {
namespace {

// The levels policies decide with (strictest last).
constexpr std::string_view kRiskLevels[] = {"low", "medium", "high", "critical"};

template <size_t N>
Status CheckOneOf(std::string_view filter, const std::optional<std::string>& value,
                  const std::string_view (&valid)[N]) {
  if (!value || value->empty()) return Status::OK();
  if (std::find(std::begin(valid), std::end(valid), *value) != std::end(valid)) {
    return Status::OK();
  }
  std::string names;
  for (std::string_view v : valid) names += fmt::format("{}{}", names.empty() ? "" : ", ", v);
  return Status::InvalidArgument(fmt::format("query filter '{}' is '{}'; expected one of {}",
                                             filter, value->substr(0, 64), names));
}

}  // namespace

// Values that can match no record are mistakes, reported as such rather than
// answered with an empty page.
Status ValidateQuery(const Query& q) {
  BASTION_RETURN_IF_ERROR(CheckOneOf("effect", q.effect, kEffects));
  BASTION_RETURN_IF_ERROR(CheckOneOf("risk_level", q.risk_level, kRiskLevels));
  const std::pair<const char*, const std::optional<std::string>*> ids[] = {
      {"user_id", &q.user_id}, {"agent_id", &q.agent_id}, {"tenant_id", &q.tenant_id},
      {"action", &q.action},   {"tool", &q.tool},         {"run_id", &q.run_id},
      {"trace_id", &q.trace_id},
  };
  for (const auto& [name, value] : ids) {
    if (*value && (*value)->size() > kMaxIdBytes) {
      return Status::InvalidArgument(
          fmt::format("query filter '{}' is {} bytes; a stored value has at most {}", name,
                      (*value)->size(), kMaxIdBytes));
    }
  }
  if (q.since_ns && q.until_ns && *q.since_ns > *q.until_ns) {
    return Status::InvalidArgument(fmt::format(
        "query filter 'since' ({} ns) is after 'until' ({} ns); the range is inclusive, "
        "since <= until",
        *q.since_ns, *q.until_ns));
  }
  return Status::OK();
}

namespace {

struct EqualityFilter {
  index::Kind kind;
  std::string_view value;
};

// The seqs of one posting list, in either direction, strictly after a cursor.
class PostingStream {
 public:
  PostingStream(RocksStore* store, const rocksdb::Snapshot* snap, index::Kind kind,
                std::string_view value, bool desc, std::optional<uint64_t> after)
      : it_(store->NewIterator(store->index(), snap)),
        prefix_(index::PostingPrefix(kind, index::ValueHash(value))),
        desc_(desc),
        after_(after) {
    std::string target = prefix_;
    if (desc) {
      codec::PutFixed64BE(&target, after ? *after - 1 : ~0ULL);
      it_->SeekForPrev(target);
    } else {
      codec::PutFixed64BE(&target, after ? *after + 1 : 0);
      it_->SeekForPrev(target);
      if (!InPrefix()) it_->Seek(target);
    }
    LoadBlock();
  }

  // The next seq in stream order, or false at the end (or on error()).
  bool Next(uint64_t* seq) {
    while (true) {
      while (pos_ < block_.size()) {
        const uint64_t s = desc_ ? block_[block_.size() - 1 - pos_] : block_[pos_];
        ++pos_;
        if (after_ && (desc_ ? s >= *after_ : s <= *after_)) continue;
        *seq = s;
        return true;
      }
      if (!it_->Valid() || !InPrefix()) return false;
      if (desc_) {
        it_->Prev();
      } else {
        it_->Next();
      }
      LoadBlock();
    }
  }

  // Advances to the first seq at or past `target` in stream order.
  bool SeekTo(uint64_t target, uint64_t* seq) {
    uint64_t s;
    while (Next(&s)) {
      if (desc_ ? s <= target : s >= target) {
        *seq = s;
        return true;
      }
    }
    return false;
  }

  const Status& error() const { return error_; }

 private:
  bool InPrefix() const {
    return it_->Valid() && it_->key().size() == index::kPostingKeyBytes &&
           it_->key().starts_with(prefix_);
  }
  void LoadBlock() {
    block_.clear();
    pos_ = 0;
    if (!InPrefix()) return;
    const uint64_t first = codec::GetFixed64BE(it_->key().data() + 9);
    Status s = index::DecodePostings(first, {it_->value().data(), it_->value().size()}, &block_);
    if (!s.ok()) {
      error_ = s;
      block_.clear();
    }
  }

  std::unique_ptr<rocksdb::Iterator> it_;
  const std::string prefix_;
  const bool desc_;
  const std::optional<uint64_t> after_;
  std::vector<uint64_t> block_;
  size_t pos_ = 0;
  Status error_;
};

struct Cursor {
  char kind = 0;  // 0: none, 's': by seq, 't': by (time, seq)
  uint64_t seq = 0;
  int64_t ts = 0;
};

Result<Cursor> ParseCursor(std::string_view text) {
  Cursor c;
  if (text.empty()) return c;
  auto bad = [&] {
    return Status::InvalidArgument(fmt::format("cursor '{}' is not one this ledger produced",
                                               text.substr(0, 64)));
  };
  auto num = [](std::string_view s, auto* out) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  };
  if (text.size() > 2 && text.substr(0, 2) == "s:") {
    c.kind = 's';
    if (!num(text.substr(2), &c.seq)) return bad();
    return c;
  }
  if (text.size() > 2 && text.substr(0, 2) == "t:") {
    c.kind = 't';
    const std::string_view rest = text.substr(2);
    const size_t colon = rest.find(':');
    if (colon == std::string_view::npos || !num(rest.substr(0, colon), &c.ts) ||
        !num(rest.substr(colon + 1), &c.seq)) {
      return bad();
    }
    return c;
  }
  return bad();
}

class Runner {
 public:
  Runner(RocksStore* store, const Query& q) : store_(store), q_(q), snap_(store->Snapshot()) {
    const std::pair<index::Kind, const std::optional<std::string>*> eq[] = {
        {index::Kind::kTrace, &q.trace_id}, {index::Kind::kRun, &q.run_id},
        {index::Kind::kUser, &q.user_id},   {index::Kind::kAgent, &q.agent_id},
        {index::Kind::kTool, &q.tool},      {index::Kind::kTenant, &q.tenant_id},
        {index::Kind::kAction, &q.action},  {index::Kind::kEffect, &q.effect},
        {index::Kind::kRisk, &q.risk_level},
    };
    for (const auto& [kind, value] : eq) {
      if (!value->has_value()) continue;
      if ((*value)->empty()) {
        // Empty means "not set" in a record; as a filter it would match nothing.
        bad_filter_ = index::KindName(kind);
      }
      filters_.push_back({kind, **value});
    }
    limit_ = q.limit == 0 ? SIZE_MAX : q.limit;
  }

  Result<QueryResult> Run() {
    BASTION_RETURN_IF_ERROR(ValidateQuery(q_));
    if (!bad_filter_.empty()) {
      return Status::InvalidArgument(fmt::format(
          "query filter '{}' is empty; leave it unset to match every record", bad_filter_));
    }
    auto cursor = ParseCursor(q_.cursor);
    if (!cursor.ok()) return cursor.status();
    const bool time_only = filters_.empty() && (q_.since_ns || q_.until_ns);
    if (cursor->kind != 0 && cursor->kind != (time_only ? 't' : 's')) {
      return Status::InvalidArgument("cursor belongs to a query with different filters");
    }
    Status s;
    if (!filters_.empty()) {
      s = RunPostings(cursor->kind ? std::optional<uint64_t>(cursor->seq) : std::nullopt);
    } else if (time_only) {
      s = RunTime(*cursor);
    } else {
      s = RunRecords(cursor->kind ? std::optional<uint64_t>(cursor->seq) : std::nullopt);
    }
    if (!s.ok()) return s;
    if (result_.encoded.size() >= limit_ && limit_ != SIZE_MAX) {
      result_.next_cursor = last_cursor_;
    }
    return std::move(result_);
  }

 private:
  bool Done() const { return result_.encoded.size() >= limit_; }
  size_t BatchSize() const {
    const size_t want = limit_ - result_.encoded.size();
    return std::clamp<size_t>(want + want / 4, 16, 1024);
  }

  bool Matches(std::string_view value, int64_t* ts) {
    codec::ValueView view;
    if (!codec::ParseValue(value, &view).ok()) return false;
    index::IndexedFields m;
    if (!codec::DecodeFields(view, &m).ok()) return false;
    for (const auto& f : filters_) {
      if (m.Of(f.kind) != f.value) return false;
    }
    if (q_.since_ns && m.timestamp_ns < *q_.since_ns) return false;
    if (q_.until_ns && m.timestamp_ns > *q_.until_ns) return false;
    *ts = m.timestamp_ns;
    return true;
  }

  // Fetches the candidate seqs' records and keeps the matching ones, in order.
  Status Fetch(const std::vector<uint64_t>& seqs, const std::vector<int64_t>* times) {
    std::vector<std::string> keys;
    keys.reserve(seqs.size());
    for (uint64_t s : seqs) keys.push_back(codec::RecordKey(s));
    std::vector<std::string> values;
    std::vector<Status> st = store_->MultiGet(store_->records(), keys, &values, snap_.get());
    for (size_t i = 0; i < seqs.size() && !Done(); ++i) {
      if (st[i].IsNotFound()) continue;  // index points past a record: verify reports it
      if (!st[i].ok()) return st[i];
      int64_t ts;
      if (!Matches(values[i], &ts)) continue;
      result_.encoded.push_back(std::move(values[i]));
      last_cursor_ = times ? fmt::format("t:{}:{}", (*times)[i], seqs[i])
                           : fmt::format("s:{}", seqs[i]);
    }
    return Status::OK();
  }

  // The last record the posting lists cover in this view of the ledger; the
  // records after it are read directly (ScanUnindexed).
  Result<uint64_t> IndexedUpTo() {
    std::string value;
    Status s = store_->Get(store_->meta(), kMetaHeadKey, &value, snap_.get());
    Head head;
    if (s.IsNotFound()) return uint64_t{0};
    if (!s.ok()) return s;
    if (!DecodeHead(value, &head)) return Status::Corruption("the chain head is unreadable");
    return ReadIndexed(store_, snap_.get(), head.seq);
  }

  // Records past `indexed` (and past `after` in query order), checked one by one.
  Status ScanUnindexed(uint64_t indexed, std::optional<uint64_t> after) {
    const bool desc = q_.newest_first;
    auto it = store_->NewIterator(store_->records(), snap_.get());
    if (!desc) {
      it->Seek(codec::RecordKey(std::max(indexed, after.value_or(0)) + 1));
    } else if (after) {
      it->SeekForPrev(codec::RecordKey(*after - 1));
    } else {
      it->SeekToLast();
    }
    for (; it->Valid() && !Done(); desc ? it->Prev() : it->Next()) {
      if (it->key().size() != 8) continue;
      const uint64_t seq = codec::GetFixed64BE(it->key().data());
      if (seq <= indexed) break;
      int64_t ts;
      if (!Matches({it->value().data(), it->value().size()}, &ts)) continue;
      result_.encoded.emplace_back(it->value().data(), it->value().size());
      last_cursor_ = fmt::format("s:{}", seq);
    }
    return store_->IteratorStatus(it.get(), "reading the ledger's records");
  }

  Status RunPostings(std::optional<uint64_t> after) {
    auto indexed = IndexedUpTo();
    if (!indexed.ok()) return indexed.status();
    if (q_.newest_first) {
      BASTION_RETURN_IF_ERROR(ScanUnindexed(*indexed, after));
      if (Done()) return Status::OK();
      return WalkPostings(after && *after <= *indexed ? *after : *indexed + 1);
    }
    BASTION_RETURN_IF_ERROR(WalkPostings(after));
    if (Done()) return Status::OK();
    return ScanUnindexed(*indexed, after);
  }

  // Intersects the posting lists of the filters: records up to the index mark.
  Status WalkPostings(std::optional<uint64_t> after) {
    const bool desc = q_.newest_first;
    std::vector<std::unique_ptr<PostingStream>> streams;
    for (const auto& f : filters_) {
      streams.push_back(std::make_unique<PostingStream>(store_, snap_.get(), f.kind, f.value,
                                                        desc, after));
    }
    std::vector<uint64_t> cur(streams.size());
    bool live = true;
    for (size_t i = 0; i < streams.size() && live; ++i) live = streams[i]->Next(&cur[i]);
    std::vector<uint64_t> batch;
    while (live && !Done()) {
      const uint64_t target =
          desc ? *std::min_element(cur.begin(), cur.end()) : *std::max_element(cur.begin(), cur.end());
      bool all_equal = true;
      for (size_t i = 0; i < streams.size() && live; ++i) {
        if (cur[i] != target) {
          live = streams[i]->SeekTo(target, &cur[i]);
          if (cur[i] != target) all_equal = false;
        }
      }
      if (!live) break;
      if (!all_equal) continue;
      batch.push_back(target);
      for (size_t i = 0; i < streams.size() && live; ++i) live = streams[i]->Next(&cur[i]);
      if (batch.size() >= BatchSize()) {
        BASTION_RETURN_IF_ERROR(Fetch(batch, nullptr));
        batch.clear();
      }
    }
    for (const auto& s : streams) BASTION_RETURN_IF_ERROR(s->error());
    if (!batch.empty() && !Done()) BASTION_RETURN_IF_ERROR(Fetch(batch, nullptr));
    return Status::OK();
  }

  Status RunTime(const Cursor& cursor) {
    const bool desc = q_.newest_first;
    auto it = store_->NewIterator(store_->index(), snap_.get(), true);
    const int64_t lo = q_.since_ns.value_or(INT64_MIN);
    const int64_t hi = q_.until_ns.value_or(INT64_MAX);
    if (desc) {
      it->SeekForPrev(cursor.kind ? index::TimeKey(cursor.ts, cursor.seq - 1)
                                  : index::TimeKey(hi, ~0ULL));
    } else {
      it->Seek(cursor.kind ? index::TimeKey(cursor.ts, cursor.seq + 1) : index::TimeKey(lo, 0));
    }
    std::vector<uint64_t> seqs;
    std::vector<int64_t> times;
    const char kind = static_cast<char>(index::Kind::kTime);
    for (; it->Valid() && !Done(); desc ? it->Prev() : it->Next()) {
      const rocksdb::Slice k = it->key();
      if (k.size() != index::kTimeKeyBytes || k[0] != kind) break;
      const int64_t ts = static_cast<int64_t>(codec::GetFixed64BE(k.data() + 1) ^ (1ULL << 63));
      if (desc ? ts < lo : ts > hi) break;
      seqs.push_back(codec::GetFixed64BE(k.data() + 9));
      times.push_back(ts);
      if (seqs.size() >= BatchSize()) {
        BASTION_RETURN_IF_ERROR(Fetch(seqs, &times));
        seqs.clear();
        times.clear();
      }
    }
    BASTION_RETURN_IF_ERROR(store_->IteratorStatus(it.get(), "reading the time index"));
    if (!seqs.empty() && !Done()) BASTION_RETURN_IF_ERROR(Fetch(seqs, &times));
    return Status::OK();
  }

  Status RunRecords(std::optional<uint64_t> after) {
    const bool desc = q_.newest_first;
    auto it = store_->NewIterator(store_->records(), snap_.get(), true);
    if (desc) {
      if (after) {
        it->SeekForPrev(codec::RecordKey(*after - 1));
      } else {
        it->SeekToLast();
      }
    } else {
      it->Seek(codec::RecordKey(after ? *after + 1 : 0));
    }
    for (; it->Valid() && !Done(); desc ? it->Prev() : it->Next()) {
      if (it->key().size() != 8) continue;
      const uint64_t seq = codec::GetFixed64BE(it->key().data());
      if (after && (desc ? seq >= *after : seq <= *after)) continue;
      result_.encoded.emplace_back(it->value().data(), it->value().size());
      last_cursor_ = fmt::format("s:{}", seq);
    }
    return store_->IteratorStatus(it.get(), "reading the ledger's records");
  }

  RocksStore* store_;
  const Query& q_;
  std::shared_ptr<const rocksdb::Snapshot> snap_;
  std::vector<EqualityFilter> filters_;
  std::string_view bad_filter_;
  size_t limit_;
  QueryResult result_;
  std::string last_cursor_;
};

}  // namespace

Result<QueryResult> RunQuery(RocksStore* store, const Query& query) {
  return Runner(store, query).Run();
}

}  // namespace bastion
