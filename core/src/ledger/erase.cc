#include "ledger/erase.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "ledger/index_keys.h"
#include "ledger/record_codec.h"
#include "util/utf8.h"

namespace bastion {
namespace {

namespace fs = std::filesystem;

std::atomic<void (*)(std::string_view)> stage_hook{nullptr};

void Stage(std::string_view name) {
  if (auto* hook = stage_hook.load(std::memory_order_acquire)) hook(name);
}

Status CheckText(std::string_view name, const std::string& value) {
  if (value.empty()) {
    return Status::InvalidArgument(fmt::format("erasure: '{}' is required and empty", name));
  }
  if (value.size() > kMaxIdBytes) {
    return Status::InvalidArgument(fmt::format("erasure: '{}' is {} bytes, over its limit of {}",
                                               name, value.size(), kMaxIdBytes));
  }
  if (!IsValidUtf8(value)) {
    return Status::InvalidArgument(fmt::format("erasure: '{}' is not valid UTF-8", name));
  }
  return Status::OK();
}

Status Validate(const EraseRequest& r) {
  if (!r.user_id && r.seqs.empty()) {
    return Status::InvalidArgument("erasure names no records: give a user_id, seqs, or both");
  }
  if (r.user_id) BASTION_RETURN_IF_ERROR(CheckText("user_id", *r.user_id));
  BASTION_RETURN_IF_ERROR(CheckText("reason", r.reason));
  BASTION_RETURN_IF_ERROR(CheckText("by", r.by));
  return Status::OK();
}

// "3-5, 9" for {3, 4, 5, 9}; `seqs` ascending.
std::vector<std::string> Ranges(const std::vector<uint64_t>& seqs) {
  std::vector<std::string> out;
  for (size_t i = 0; i < seqs.size();) {
    size_t j = i;
    while (j + 1 < seqs.size() && seqs[j + 1] == seqs[j] + 1) ++j;
    out.push_back(j == i ? std::to_string(seqs[i]) : fmt::format("{}-{}", seqs[i], seqs[j]));
    i = j + 1;
  }
  return out;
}

// Joins `ranges` with ", " into pieces of at most `limit` bytes each.
std::vector<std::string> JoinInPieces(const std::vector<std::string>& ranges, size_t limit) {
  std::vector<std::string> pieces(1);
  for (const std::string& r : ranges) {
    if (!pieces.back().empty() && pieces.back().size() + 2 + r.size() > limit) {
      pieces.emplace_back();
    }
    if (!pieces.back().empty()) pieces.back() += ", ";
    pieces.back() += r;
  }
  return pieces;
}

std::string Plural(uint64_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// Reads the user_id of a record's personal section.
class UserOf final : public codec::FieldVisitor {
 public:
  std::string user_id;
  void OnString(Field f, std::string_view v) override {
    if (f == Field::kUserId) user_id.assign(v);
  }
  void OnUint(Field, uint64_t) override {}
  void OnInt(Field, int64_t) override {}
  void OnReason(std::string_view, std::string_view) override {}
  void OnAttribute(std::string_view, std::string_view) override {}
};

// A record to erase: its stored value and its user id (may be empty).
struct Target {
  std::string value;
  std::string user_id;
};

// The stored value with its personal section replaced by its digest.
std::string ErasedValue(const std::string& value, const codec::ValueView& view) {
  const Hash digest = codec::PersonalDigest(view.personal);
  const size_t plen_at = codec::kHeaderBytes + view.body.size();
  std::string out = value.substr(0, plen_at);
  out[codec::kOffFlags] = static_cast<char>(view.flags | codec::kFlagPersonalErased);
  const uint32_t len = static_cast<uint32_t>(digest.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(len >> (8 * i)));
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

// Calls `block(key, first_seq, seqs)` for each user_id posting block of
// `value_hash` that lists records up to `upto` (blocks never straddle an
// index mark, so a block starting at or before it ends there too).
template <typename Fn>
Status ForEachUserBlock(RocksStore* store, uint64_t value_hash, uint64_t upto, Fn block) {
  const std::string prefix = index::PostingPrefix(index::Kind::kUser, value_hash);
  auto it = store->NewIterator(store->index());
  std::vector<uint64_t> seqs;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key();
    if (key.size() != index::kPostingKeyBytes || !key.starts_with(prefix)) break;
    const uint64_t first = codec::GetFixed64BE(key.data() + 9);
    if (first > upto) break;
    seqs.clear();
    BASTION_RETURN_IF_ERROR(
        index::DecodePostings(first, {it->value().data(), it->value().size()}, &seqs));
    block(std::string(key.data(), key.size()), seqs);
  }
  return store->IteratorStatus(it.get(), "reading the user_id index");
}

std::string EncodeScrubRange(uint64_t first, uint64_t last) {
  std::string out;
  codec::PutFixed64(&out, first);
  codec::PutFixed64(&out, last);
  return out;
}

// Removes the old values of records first..last, and the user_id postings
// the erasure deleted or rewrote, from every file: memtables are written
// out (the logs that held them become obsolete), table files holding those
// keys are rewritten down to the last level without the overwritten values,
// and obsolete files are deleted. Then the scrub mark goes.
Status Scrub(RocksStore* store, uint64_t first, uint64_t last) {
  BASTION_RETURN_IF_ERROR(store->FlushMemtables());
  Stage("flushed");
  BASTION_RETURN_IF_ERROR(
      store->CompactRange(store->records(), codec::RecordKey(first), codec::RecordKey(last)));
  Stage("compacted");
  std::string user_lo(1, static_cast<char>(index::Kind::kUser));
  std::string user_hi = user_lo + std::string(index::kPostingKeyBytes - 1, '\xff');
  BASTION_RETURN_IF_ERROR(store->CompactRange(store->index(), user_lo, user_hi));
  BASTION_RETURN_IF_ERROR(store->DeleteObsoleteFiles());
  Stage("scrubbed");
  rocksdb::WriteBatch wb;
  wb.Delete(store->meta(), kMetaScrubKey);
  return store->Write(&wb, /*sync=*/true);
}

// Repair folders under <ledger>/quarantine/, relative to the ledger.
std::vector<std::string> QuarantineFolders(const std::string& path) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(path) / "quarantine", ec)) {
    if (entry.is_directory(ec)) {
      out.push_back((fs::path("quarantine") / entry.path().filename()).string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string UtcNow() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

// The erasure record lists the erased records in its attributes, within the
// 1 MiB a record may take.
constexpr size_t kMaxSeqListBytes = 768 << 10;

// The erasure record: who, why, how many and which records, never a value.
Result<Record> ErasureRecord(const EraseRequest& request, const EraseReport& report) {
  const std::vector<std::string> ranges = Ranges(report.seqs);
  size_t list_bytes = 0;
  for (const std::string& range : ranges) list_bytes += range.size() + 2;
  if (list_bytes > kMaxSeqListBytes) {
    return Status::InvalidArgument(fmt::format(
        "erasure: the {} records to erase are too scattered to list in one erasure record "
        "({} bytes of sequence ranges, at most {}); nothing was erased: erase them in parts, "
        "listing their seqs",
        report.erased, list_bytes, kMaxSeqListBytes));
  }
  Record r;
  r.action = "erasure";
  r.agent_id = request.by;
  // Deliberate and authorized, but it removes content from the evidence:
  // high. (critical is for loss: a repair.)
  r.risk_level = "high";
  std::string message =
      report.erased == 0
          ? fmt::format("{} erased no personal data on {} (no record to erase)", request.by,
                        UtcNow())
          : fmt::format("{} erased the personal data of {} on {}", request.by,
                        Plural(report.erased, "record", "records"), UtcNow());
  std::string tail = fmt::format("; reason: {}", request.reason);
  if (report.already_erased > 0) {
    tail += fmt::format("; {} already erased before",
                        Plural(report.already_erased, "listed record was", "listed records were"));
  }
  if (!ranges.empty()) {
    // The message has room for the ranges unless they are very scattered;
    // the seqs attributes always hold all of them.
    const size_t room = kMaxReasonMessageBytes - message.size() - tail.size() - 64;
    const std::vector<std::string> pieces = JoinInPieces(ranges, room);
    message += fmt::format(" (seqs {}{})", pieces[0],
                           pieces.size() > 1 ? ", ... (all in the seqs attributes)" : "");
  }
  r.reasons.push_back({"bastion.erasure", message + tail});
  r.attributes = {{"erased_records", std::to_string(report.erased)}, {"reason", request.reason}};
  if (report.already_erased > 0) {
    r.attributes.emplace_back("already_erased", std::to_string(report.already_erased));
  }
  const std::vector<std::string> pieces = JoinInPieces(ranges, kMaxAttributeValueBytes);
  for (size_t i = 0; i < pieces.size(); ++i) {
    r.attributes.emplace_back(i == 0 ? "seqs" : fmt::format("seqs_{:03}", i + 1), pieces[i]);
  }
  return r;
}

}  // namespace

void SetEraseStageHookForTesting(void (*hook)(std::string_view stage)) {
  stage_hook.store(hook, std::memory_order_release);
}

Result<EraseReport> EraseRecords(RocksStore* store, Writer* writer, const EraseRequest& request,
                                 const AppendWithWrites& append) {
  BASTION_RETURN_IF_ERROR(Validate(request));
  // Everything appended so far is written and its postings stored: the
  // records up to the index mark are the ones this erasure covers. Records
  // after it are appended concurrently; their postings may still be in the
  // writer's memory, where a rewrite here could not reach them.
  BASTION_RETURN_IF_ERROR(writer->Flush());
  auto mark = ReadIndexMark(store, nullptr);
  if (!mark.ok()) return mark.status();
  const uint64_t upto = mark->value_or(0);

  std::vector<uint64_t> listed = request.seqs;
  std::sort(listed.begin(), listed.end());
  listed.erase(std::unique(listed.begin(), listed.end()), listed.end());
  for (uint64_t seq : listed) {
    if (seq == 0 || seq > upto) {
      return Status::InvalidArgument(fmt::format(
          "erasure: there is no record {} (the last record when the erasure started is {})", seq,
          upto));
    }
  }
  std::vector<uint64_t> candidates = listed;
  if (request.user_id) {
    BASTION_RETURN_IF_ERROR(ForEachUserBlock(
        store, index::ValueHash(*request.user_id), upto,
        [&](const std::string&, const std::vector<uint64_t>& seqs) {
          candidates.insert(candidates.end(), seqs.begin(), seqs.end());
        }));
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  }

  EraseReport report;
  std::map<uint64_t, Target> targets;
  std::vector<std::string> keys;
  keys.reserve(candidates.size());
  for (uint64_t seq : candidates) keys.push_back(codec::RecordKey(seq));
  std::vector<std::string> values;
  const std::vector<Status> got = store->MultiGet(store->records(), keys, &values);
  for (size_t i = 0; i < candidates.size(); ++i) {
    const uint64_t seq = candidates[i];
    const bool is_listed = std::binary_search(listed.begin(), listed.end(), seq);
    if (got[i].IsNotFound()) {
      if (is_listed) {
        return Status::InvalidArgument(fmt::format("erasure: there is no record {}", seq));
      }
      continue;  // a posting without its record: verify reports it
    }
    if (!got[i].ok()) return got[i];
    codec::ValueView view;
    Status s = codec::ParseValue(values[i], &view);
    UserOf user;
    if (s.ok() && !view.erased()) {
      s = codec::DecodeSection(view.personal.substr(codec::kSaltBytes), /*personal=*/true, &user);
    }
    if (!s.ok()) {
      return s.WithContext(fmt::format("erasure: record {} does not decode", seq));
    }
    if (view.erased()) {
      if (is_listed) ++report.already_erased;
      continue;
    }
    if (!is_listed && user.user_id != *request.user_id) continue;  // a hash collision
    targets[seq] = Target{std::move(values[i]), std::move(user.user_id)};
  }

  std::vector<ExtraWrite> writes;
  std::map<uint64_t, std::set<uint64_t>> by_user_hash;  // value hash -> seqs losing a posting
  for (auto& [seq, t] : targets) {
    // The erasure record keeps `by` and `reason` in the open: they must not
    // name whom it erases.
    using Text = std::pair<const char*, const std::string*>;
    for (const auto& [name, text] : {Text{"reason", &request.reason}, Text{"by", &request.by}}) {
      if (!t.user_id.empty() && text->find(t.user_id) != std::string::npos) {
        return Status::InvalidArgument(fmt::format(
            "erasure: '{}' contains the user id of record {}, which the erasure record would "
            "keep; describe the request without it",
            name, seq));
      }
    }
    codec::ValueView view;
    BASTION_RETURN_IF_ERROR(codec::ParseValue(t.value, &view));
    writes.push_back({store->records(), codec::RecordKey(seq), ErasedValue(t.value, view)});
    if (!t.user_id.empty()) by_user_hash[index::ValueHash(t.user_id)].insert(seq);
    report.seqs.push_back(seq);
  }
  report.erased = report.seqs.size();

  for (const auto& entry : by_user_hash) {
    const auto hash = entry.first;  // named, not bound: lambdas capture them
    const auto& gone = entry.second;
    BASTION_RETURN_IF_ERROR(ForEachUserBlock(
        store, hash, upto, [&](const std::string& key, const std::vector<uint64_t>& seqs) {
          std::vector<uint64_t> kept;
          for (uint64_t s : seqs) {
            if (!gone.count(s)) kept.push_back(s);
          }
          if (kept.size() == seqs.size()) return;
          if (kept.empty() || kept[0] != seqs[0]) writes.push_back({store->index(), key, {}});
          if (kept.empty()) return;
          std::string block;
          index::EncodePostings(kept.data(), kept.size(), &block);
          writes.push_back(
              {store->index(), index::PostingKey(index::Kind::kUser, hash, kept[0]), block});
        }));
  }

  if (!report.seqs.empty()) {
    uint64_t first = report.seqs.front(), last = report.seqs.back();
    // An earlier scrub that failed has not finished: this one covers it too.
    std::string pending;
    if (store->Get(store->meta(), kMetaScrubKey, &pending).ok()) {
      const bool readable = pending.size() == 16;  // else: every record
      first = readable ? std::min(first, codec::GetFixed64(pending.data())) : 1;
      last = readable ? std::max(last, codec::GetFixed64(pending.data() + 8)) : UINT64_MAX;
    }
    writes.push_back({store->meta(), std::string(kMetaScrubKey), EncodeScrubRange(first, last)});
  }

  report.quarantine_folders = QuarantineFolders(store->path());
  Stage("prepared");
  auto record = ErasureRecord(request, report);
  if (!record.ok()) return record.status();
  auto seq = append(std::move(*record), std::move(writes));
  if (!seq.ok()) return seq.status().WithContext("erasure: appending the erasure record");
  report.erasure_seq = *seq;
  Stage("written");
  // The scrub mark: this erasure's, or (when it erased nothing) one left by an
  // earlier scrub that failed.
  std::string range;
  Status pending = store->Get(store->meta(), kMetaScrubKey, &range);
  if (pending.IsNotFound()) return report;
  BASTION_RETURN_IF_ERROR(pending);
  if (range.size() != 16) range = EncodeScrubRange(1, UINT64_MAX);

  // A snapshot taken before the write would keep the old values alive
  // through the flush and the compactions; reads hold theirs briefly.
  const uint64_t written = store->LatestSequenceNumber();
  for (uint64_t oldest; (oldest = store->OldestSnapshotSequence()) != 0 && oldest < written;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  Status s = Scrub(store, codec::GetFixed64(range.data()), codec::GetFixed64(range.data() + 8));
  if (!s.ok()) {
    return s.WithContext(fmt::format(
        "erasure record {} is written and the records are erased, but removing the old values "
        "from the files failed (the next erasure or writer open retries)",
        report.erasure_seq));
  }
  return report;
}

Status ResumeScrub(RocksStore* store) {
  std::string range;
  Status s = store->Get(store->meta(), kMetaScrubKey, &range);
  if (s.IsNotFound()) return Status::OK();
  if (!s.ok()) return s;
  uint64_t first = 1, last = UINT64_MAX;  // an unreadable mark: every record
  if (range.size() == 16) {
    first = codec::GetFixed64(range.data());
    last = codec::GetFixed64(range.data() + 8);
  }
  s = Scrub(store, first, last);
  if (!s.ok()) return s.WithContext("finishing the scrub of an interrupted erasure");
  return Status::OK();
}

}  // namespace bastion
