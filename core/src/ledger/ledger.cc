#include "bastion/ledger.h"

#include <openssl/rand.h>

#include <chrono>
#include <cstring>
#include <shared_mutex>

#include <fmt/format.h>

#include "ledger/index_keys.h"
#include "ledger/query_engine.h"
#include "ledger/record_codec.h"
#include "ledger/rocks_store.h"
#include "ledger/verifier.h"
#include "ledger/writer.h"
#include "util/path_arg.h"

namespace bastion {

std::string HashToHex(const Hash& h) {
  static const char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    out[2 * i] = kHex[h[i] >> 4];
    out[2 * i + 1] = kHex[h[i] & 15];
  }
  return out;
}

std::string_view DurabilityName(Durability d) {
  switch (d) {
    case Durability::kSync: return "sync";
    case Durability::kGroup: return "group";
    case Durability::kAsync: return "async";
  }
  return "group";
}

std::optional<Durability> DurabilityFromName(std::string_view name) {
  if (name == "sync") return Durability::kSync;
  if (name == "group") return Durability::kGroup;
  if (name == "async") return Durability::kAsync;
  return std::nullopt;
}

std::string_view VerifyProblemName(VerifyProblem p) {
  switch (p) {
    case VerifyProblem::kNone: return "none";
    case VerifyProblem::kUndecodable: return "undecodable";
    case VerifyProblem::kHashMismatch: return "hash_mismatch";
    case VerifyProblem::kBrokenLink: return "broken_link";
    case VerifyProblem::kGap: return "gap";
    case VerifyProblem::kMisplaced: return "misplaced";
    case VerifyProblem::kTruncated: return "truncated";
    case VerifyProblem::kHeadMismatch: return "head_mismatch";
    case VerifyProblem::kExtraRecords: return "extra_records";
    case VerifyProblem::kIndexInconsistent: return "index_inconsistent";
  }
  return "unknown";
}

Result<StoredRecord> DecodeStoredRecord(std::string_view encoded) {
  StoredRecord out;
  Status s = codec::DecodeValue(encoded, &out);
  if (!s.ok()) return s;
  return out;
}

class Ledger::Impl {
 public:
  std::unique_ptr<RocksStore> store;
  std::unique_ptr<Writer> writer;  // null for readers, and once closed
  bool reader = false;
  LedgerOptions options;
  std::string path;
  // Shared by every operation, exclusive for Close and Refresh.
  mutable std::shared_mutex mu;
  bool closed = false;

  Status CheckOpen() const {
    if (closed) return Status::FailedPrecondition(fmt::format("ledger at '{}' is closed", path));
    return Status::OK();
  }

  Result<Head> ReadStoredHead() {
    std::string value;
    Status s = store->Get(store->meta(), kMetaHeadKey, &value);
    if (s.IsNotFound()) return Head{};
    if (!s.ok()) return s;
    Head head;
    if (!DecodeHead(value, &head)) {
      return Status::Corruption(fmt::format("ledger at '{}': the chain head is unreadable", path));
    }
    return head;
  }

  Status Encode(Record& r, PendingRecord* out) {
    BASTION_RETURN_IF_ERROR(ValidateRecord(r));
    if (r.timestamp_ns == 0) {
      r.timestamp_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    }
    uint8_t salt[codec::kSaltBytes];
    if (RAND_bytes(salt, sizeof(salt)) != 1) {
      return Status::Internal("the system random generator failed");
    }
    codec::EncodeValue(r, salt, &out->value, &out->personal_digest);
    if (out->value.size() > kMaxRecordBytes) {
      return Status::InvalidArgument(fmt::format("record encodes to {} bytes, over the {}-byte limit",
                                                 out->value.size(), kMaxRecordBytes));
    }
    out->index = index::EntriesFor(r);
    out->timestamp_ns = r.timestamp_ns;
    return Status::OK();
  }

  Result<uint64_t> Submit(std::vector<PendingRecord>* pending, Durability d,
                          bool deferred = false) {
    const bool awaited = !deferred && d != Durability::kAsync;
    for (auto& p : *pending) {
      p.sync = d == Durability::kSync;
      p.awaited = awaited;
    }
    using Handoff = Writer::Handoff;
    const size_t n = pending->size();
    auto ticket = writer->Submit(pending, deferred                  ? Handoff::kDeferred
                                          : d == Durability::kAsync ? Handoff::kWriter
                                                                    : Handoff::kCaller);
    if (!ticket.ok()) return ticket.status();
    if (!awaited) return ticket->first;
    BASTION_RETURN_IF_ERROR(
        writer->Wait(ticket->first + n - 1, ticket->epoch, d == Durability::kSync));
    return ticket->first;
  }
};

namespace {

// Writes the postings of records a crash left out of the posting lists (they
// are gathered in memory for a while), and the index mark where it is absent,
// so that every batch written from now on can rely on it. Returns the mark.
Result<uint64_t> RecoverPostings(RocksStore* st, uint64_t head_seq) {
  auto mark = ReadIndexMark(st, nullptr);
  if (!mark.ok()) return mark.status();
  auto indexed = IndexedUpTo(*mark, head_seq);
  if (!indexed.ok()) return indexed.status();
  if (mark->has_value() && *indexed == head_seq) return head_seq;
  std::vector<PostingEntry> entries;
  auto it = st->NewIterator(st->records(), nullptr, /*scan=*/true);
  for (it->Seek(codec::RecordKey(*indexed + 1)); it->Valid(); it->Next()) {
    const uint64_t seq = it->key().size() == 8 ? codec::GetFixed64BE(it->key().data()) : 0;
    codec::ValueView view;
    index::IndexedFields fields;
    Status d = codec::ParseValue({it->value().data(), it->value().size()}, &view);
    if (d.ok()) d = codec::DecodeFields(view, &fields);
    if (!d.ok()) {
      return d.WithContext(fmt::format("rebuilding the postings of record {}", seq));
    }
    AddPostingEntries(index::EntriesFor(fields), seq, &entries);
  }
  BASTION_RETURN_IF_ERROR(st->IteratorStatus(it.get(), "rebuilding the ledger's postings"));
  rocksdb::WriteBatch wb;
  PutPostingBlocks(st, &entries, head_seq, &wb);
  BASTION_RETURN_IF_ERROR(st->Write(&wb, /*sync=*/true));
  entries.clear();
  return head_seq;
}

}  // namespace

Ledger::Ledger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Ledger::~Ledger() { (void)Close(); }

Result<std::unique_ptr<Ledger>> Ledger::Open(const std::string& path, const LedgerOptions& options) {
  BASTION_RETURN_IF_ERROR(CheckPathArgument(path, "ledger path"));
  if (options.queue_capacity == 0 || options.max_batch_records == 0) {
    return Status::InvalidArgument("queue_capacity and max_batch_records must be positive");
  }
  auto store = RocksStore::OpenPrimary(path, options);
  if (!store.ok()) return store.status();
  auto impl = std::make_unique<Impl>();
  impl->store = std::move(*store);
  impl->options = options;
  impl->path = path;
  RocksStore* st = impl->store.get();

  auto last_record = [&]() -> std::optional<uint64_t> {
    auto it = st->NewIterator(st->records());
    it->SeekToLast();
    if (!it->Valid() || it->key().size() != 8) return std::nullopt;
    return codec::GetFixed64BE(it->key().data());
  };

  std::string format;
  Status s = st->Get(st->meta(), kMetaFormatKey, &format);
  if (s.IsNotFound()) {
    if (last_record()) {
      return Status::Corruption(fmt::format(
          "ledger at '{}' has records but no format marker (meta key 'format')", path));
    }
    rocksdb::WriteBatch wb;
    wb.Put(st->meta(), kMetaFormatKey, kFormatName);
    BASTION_RETURN_IF_ERROR(st->Write(&wb, /*sync=*/true));
  } else if (!s.ok()) {
    return s;
  } else if (format != kFormatName) {
    return Status::InvalidArgument(fmt::format(
        "ledger at '{}' has format '{}'; this version of Bastion reads '{}'", path,
        format.substr(0, 64), kFormatName));
  }

  auto head = impl->ReadStoredHead();
  if (!head.ok()) return head.status();
  const std::optional<uint64_t> last = last_record();
  if (last.value_or(0) != head->seq) {
    return Status::Corruption(fmt::format(
        "ledger at '{}': the chain head names record {} but the last stored record is {}; "
        "run verify on a reader to see what is wrong",
        path, head->seq, last.value_or(0)));
  }
  if (head->seq > 0) {
    auto rec = st->Get(st->records(), codec::RecordKey(head->seq), &format);
    codec::ValueView view;
    if (!rec.ok() || !codec::ParseValue(format, &view).ok() ||
        std::memcmp(view.hash.data(), head->hash.data(), 32) != 0) {
      return Status::Corruption(fmt::format(
          "ledger at '{}': the chain head does not match record {}; run verify on a reader",
          path, head->seq));
    }
  }
  auto indexed = RecoverPostings(st, head->seq);
  if (!indexed.ok()) return indexed.status().WithContext(fmt::format("ledger at '{}'", path));
  impl->writer = std::make_unique<Writer>(st, options, *head, *indexed);
  return std::unique_ptr<Ledger>(new Ledger(std::move(impl)));
}

Result<std::unique_ptr<Ledger>> Ledger::OpenReader(const std::string& path,
                                                   const ReaderOptions& options) {
  BASTION_RETURN_IF_ERROR(CheckPathArgument(path, "ledger path"));
  BASTION_RETURN_IF_ERROR(
      CheckPathArgument(options.secondary_path, "secondary_path", /*allow_empty=*/true));
  auto store = RocksStore::OpenSecondary(path, options);
  if (!store.ok()) return store.status();
  auto impl = std::make_unique<Impl>();
  impl->store = std::move(*store);
  impl->path = path;
  impl->reader = true;
  std::string format;
  Status s = impl->store->Get(impl->store->meta(), kMetaFormatKey, &format);
  if (s.ok() && format != kFormatName) {
    return Status::InvalidArgument(fmt::format(
        "ledger at '{}' has format '{}'; this version of Bastion reads '{}'", path,
        format.substr(0, 64), kFormatName));
  }
  if (!s.ok() && !s.IsNotFound()) return s;
  return std::unique_ptr<Ledger>(new Ledger(std::move(impl)));
}

Result<uint64_t> Ledger::Append(Record record) {
  return Append(std::move(record), impl_->options.default_durability);
}

Result<uint64_t> Ledger::Append(Record record, Durability durability) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->reader) return Status::FailedPrecondition("the ledger is open read-only");
  std::vector<PendingRecord> pending(1);
  BASTION_RETURN_IF_ERROR(impl_->Encode(record, &pending[0]));
  return impl_->Submit(&pending, durability);
}

Result<uint64_t> Ledger::AppendDeferred(Record record) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->reader) return Status::FailedPrecondition("the ledger is open read-only");
  std::vector<PendingRecord> pending(1);
  BASTION_RETURN_IF_ERROR(impl_->Encode(record, &pending[0]));
  return impl_->Submit(&pending, Durability::kAsync, /*deferred=*/true);
}

Result<uint64_t> Ledger::AppendBatch(std::vector<Record> records) {
  return AppendBatch(std::move(records), impl_->options.default_durability);
}

Result<uint64_t> Ledger::AppendBatch(std::vector<Record> records, Durability durability) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->reader) return Status::FailedPrecondition("the ledger is open read-only");
  if (records.empty()) return Status::InvalidArgument("no records to append");
  std::vector<PendingRecord> pending(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    Status s = impl_->Encode(records[i], &pending[i]);
    if (!s.ok()) return s.WithContext(fmt::format("record {} of the batch", i));
  }
  return impl_->Submit(&pending, durability);
}

Status Ledger::Flush() {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (!impl_->writer) return Status::OK();
  return impl_->writer->Flush();
}

Result<Head> Ledger::GetHead() {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->writer) return impl_->writer->head();
  return impl_->ReadStoredHead();
}

Result<StoredRecord> Ledger::Get(uint64_t seq) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  std::string value;
  Status s = impl_->store->Get(impl_->store->records(), codec::RecordKey(seq), &value);
  if (s.IsNotFound()) return Status::NotFound(fmt::format("no record {}", seq));
  if (!s.ok()) return s;
  auto rec = DecodeStoredRecord(value);
  if (!rec.ok()) return rec.status().WithContext(fmt::format("record {}", seq));
  return rec;
}

Result<QueryResult> Ledger::Find(const Query& query) {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  return RunQuery(impl_->store.get(), query);
}

VerifyReport Ledger::Verify(const VerifyOptions& options) {
  std::shared_lock lock(impl_->mu);
  Status s = impl_->CheckOpen();
  if (!s.ok()) {
    VerifyReport r;
    r.error = s;
    r.message = s.ToString();
    return r;
  }
  return VerifyLedger(impl_->store.get(), options);
}

Result<LedgerStats> Ledger::Stats() {
  std::shared_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  RocksStore* st = impl_->store.get();
  LedgerStats stats;
  auto snap = st->Snapshot();
  {
    std::string value;
    Status s = st->Get(st->meta(), kMetaFormatKey, &value, snap.get());
    if (s.ok()) stats.format = value;
    s = st->Get(st->meta(), kMetaHeadKey, &value, snap.get());
    if (s.ok() && !DecodeHead(value, &stats.head)) {
      return Status::Corruption("the chain head is unreadable");
    }
  }
  auto it = st->NewIterator(st->records(), snap.get(), true);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    codec::ValueView view;
    index::IndexedFields v;
    const uint64_t seq = it->key().size() == 8 ? codec::GetFixed64BE(it->key().data()) : 0;
    Status s = codec::ParseValue({it->value().data(), it->value().size()}, &view);
    // Stats read public fields only: no need to decode the personal section.
    if (s.ok()) s = codec::DecodeSection(view.body, /*personal=*/false, &v);
    if (!s.ok()) return s.WithContext(fmt::format("record {}", seq));
    ++stats.records;
    const int64_t ts = v.timestamp_ns;
    if (stats.records == 1 || ts < stats.first_timestamp_ns) stats.first_timestamp_ns = ts;
    stats.last_timestamp_ns = std::max(stats.last_timestamp_ns, ts);
    const auto name = [](std::string_view x) {
      return x.empty() ? std::string("(none)") : std::string(x);
    };
    ++stats.by_action[std::string(v.Of(index::Kind::kAction))];
    ++stats.by_effect[name(v.Of(index::Kind::kEffect))];
    ++stats.by_agent[name(v.Of(index::Kind::kAgent))];
  }
  BASTION_RETURN_IF_ERROR(st->IteratorStatus(it.get(), "reading the ledger's records"));
  stats.disk_bytes = st->DiskBytes();
  return stats;
}

Status Ledger::Refresh() {
  std::unique_lock lock(impl_->mu);
  BASTION_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->writer) return Status::OK();  // the writer always sees its own state
  return impl_->store->CatchUpWithPrimary();
}

bool Ledger::read_only() const { return impl_->reader; }

const std::string& Ledger::path() const { return impl_->path; }

Status Ledger::Close() {
  std::unique_lock lock(impl_->mu);
  if (impl_->closed) return Status::OK();
  impl_->closed = true;
  Status result;
  if (impl_->writer) result = impl_->writer->Stop();
  impl_->writer.reset();
  Status s = impl_->store->Close();
  return result.ok() ? s : result;
}

}  // namespace bastion
