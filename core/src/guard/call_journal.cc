// CallJournal: the calls begun with an idempotency key, in RocksDB or in
// memory, and the encoding of one call.
//
// A call's value: a format byte, its phase and when it was over (fixed
// offsets: pruning reads only these), then every field as little-endian
// fixed-width integers and u32-length strings, the call's fields in
// kCallFields order (a changed table is a changed format).
#include "guard/call_journal.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "bastion/call.h"
#include "ledger/rocks_store.h"
#include "util/byte_codec.h"

namespace bastion::guard {

namespace {

constexpr uint8_t kFormat = 1;
constexpr std::string_view kCall = "c/";
constexpr std::string_view kMemo = "m/";
constexpr std::string_view kOpen = "o/";
constexpr std::string_view kOver = "e/";

class Encoder : public ByteWriter {
 public:
  void OptStr(const std::optional<std::string>& s) {
    Bool(s.has_value());
    if (s) Str(*s);
  }
  void OptI64(const std::optional<int64_t>& v) {
    Bool(v.has_value());
    if (v) I64(*v);
  }
  void Val(const Value& v) {
    Byte(static_cast<uint8_t>(v.type()));
    switch (v.type()) {
      case Value::Type::kNull: break;
      case Value::Type::kBool: Bool(v.as_bool()); break;
      case Value::Type::kInt: I64(v.as_int()); break;
      case Value::Type::kDouble: {
        double d = v.as_double();
        uint64_t bits;
        std::memcpy(&bits, &d, sizeof bits);
        U64(bits);
        break;
      }
      case Value::Type::kString: Str(v.as_string()); break;
      case Value::Type::kArray:
        U64(v.as_array().size());
        for (const Value& e : v.as_array()) Val(e);
        break;
      case Value::Type::kObject:
        U64(v.as_object().size());
        for (const auto& [k, e] : v.as_object()) {
          Str(k);
          Val(e);
        }
        break;
    }
  }
  void Pairs(const std::vector<std::pair<std::string, std::string>>& pairs) {
    U64(pairs.size());
    for (const auto& [k, v] : pairs) {
      Str(k);
      Str(v);
    }
  }
  void Dec(const Decision& d) {
    Byte(static_cast<uint8_t>(d.effect));
    U64(d.reasons.size());
    for (const Reason& r : d.reasons) {
      Str(r.policy_id);
      Str(r.message);
    }
    U64(d.redactions.size());
    for (const Redaction& r : d.redactions) {
      Str(r.target);
      U64(r.start);
      U64(r.end);
      Str(r.label);
      Str(r.policy_id);
    }
    OptStr(d.model_downgrade);
    Pairs(d.annotations);
    Str(d.risk_level);
    U64(d.errors.size());
    for (const PolicyError& e : d.errors) {
      Str(e.policy_id);
      Str(e.kind);
      Str(e.message);
    }
    Str(d.policy_version);
    U64(d.explain.size());
    for (const PolicyOutcome& o : d.explain) {
      Str(o.policy_id);
      Bool(o.effect.has_value());
      if (o.effect) Byte(static_cast<uint8_t>(*o.effect));
      Str(o.message);
      Bool(o.applied);
      Bool(o.failed);
    }
    Bool(d.decided);
  }
};

class Decoder : public ByteReader {
 public:
  using ByteReader::ByteReader;
  bool OptStr(std::optional<std::string>* s) {
    bool has;
    if (!Bool(&has)) return false;
    if (!has) {
      s->reset();
      return true;
    }
    return Str(&s->emplace());
  }
  bool OptI64(std::optional<int64_t>* v) {
    bool has;
    if (!Bool(&has)) return false;
    if (!has) {
      v->reset();
      return true;
    }
    return I64(&v->emplace());
  }
  bool Val(Value* v, int depth = 0) {
    uint8_t type;
    if (depth > 200 || !Byte(&type)) return false;
    switch (static_cast<Value::Type>(type)) {
      case Value::Type::kNull: *v = Value(); return true;
      case Value::Type::kBool: {
        bool b;
        if (!Bool(&b)) return false;
        *v = Value(b);
        return true;
      }
      case Value::Type::kInt: {
        int64_t i;
        if (!I64(&i)) return false;
        *v = Value(i);
        return true;
      }
      case Value::Type::kDouble: {
        uint64_t bits;
        if (!U64(&bits)) return false;
        double d;
        std::memcpy(&d, &bits, sizeof d);
        *v = Value(d);
        return true;
      }
      case Value::Type::kString: {
        std::string s;
        if (!Str(&s)) return false;
        *v = Value(std::move(s));
        return true;
      }
      case Value::Type::kArray: {
        uint64_t n;
        if (!Count(&n)) return false;
        Value::Array a(n);
        for (Value& e : a) {
          if (!Val(&e, depth + 1)) return false;
        }
        *v = Value(std::move(a));
        return true;
      }
      case Value::Type::kObject: {
        uint64_t n;
        if (!Count(&n, 5)) return false;
        Value::Object o(n);
        for (auto& [k, e] : o) {
          if (!Str(&k) || !Val(&e, depth + 1)) return false;
        }
        *v = Value(std::move(o));
        return true;
      }
    }
    return false;
  }
  bool Pairs(std::vector<std::pair<std::string, std::string>>* pairs) {
    uint64_t n;
    if (!Count(&n, 8)) return false;
    pairs->resize(n);
    for (auto& [k, v] : *pairs) {
      if (!Str(&k) || !Str(&v)) return false;
    }
    return true;
  }
  bool Effect_(Effect* e) {
    uint8_t b;
    if (!Byte(&b) || b > static_cast<uint8_t>(Effect::kDeny)) return false;
    *e = static_cast<Effect>(b);
    return true;
  }
  bool Dec(Decision* d) {
    uint64_t n;
    if (!Effect_(&d->effect) || !Count(&n, 8)) return false;
    d->reasons.resize(n);
    for (Reason& r : d->reasons) {
      if (!Str(&r.policy_id) || !Str(&r.message)) return false;
    }
    if (!Count(&n, 32)) return false;
    d->redactions.resize(n);
    for (Redaction& r : d->redactions) {
      uint64_t start, end;
      if (!Str(&r.target) || !U64(&start) || !U64(&end) || !Str(&r.label) ||
          !Str(&r.policy_id)) {
        return false;
      }
      r.start = static_cast<size_t>(start);
      r.end = static_cast<size_t>(end);
    }
    if (!OptStr(&d->model_downgrade) || !Pairs(&d->annotations) || !Str(&d->risk_level) ||
        !Count(&n, 12)) {
      return false;
    }
    d->errors.resize(n);
    for (PolicyError& e : d->errors) {
      if (!Str(&e.policy_id) || !Str(&e.kind) || !Str(&e.message)) return false;
    }
    if (!Str(&d->policy_version) || !Count(&n, 11)) return false;
    d->explain.resize(n);
    for (PolicyOutcome& o : d->explain) {
      bool has;
      if (!Str(&o.policy_id) || !Bool(&has)) return false;
      if (has && !Effect_(&o.effect.emplace())) return false;
      if (!Str(&o.message) || !Bool(&o.applied) || !Bool(&o.failed)) return false;
    }
    return Bool(&d->decided);
  }
};

std::string BigEndian(int64_t v) {
  std::string out(8, '\0');
  const auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((u >> (8 * (7 - i))) & 0xFF);
  return out;
}

std::string Key(std::string_view prefix, std::string_view key) {
  std::string out(prefix);
  out.append(key);
  return out;
}

// The phase and over-time of an encoded call, from their fixed offsets.
bool Header(std::string_view data, CallPhase* phase, int64_t* ended_ns) {
  Decoder d(data);
  uint8_t format, p;
  if (!d.Byte(&format) || format != kFormat || !d.Byte(&p) ||
      p > static_cast<uint8_t>(CallPhase::kRejected)) {
    return false;
  }
  *phase = static_cast<CallPhase>(p);
  return d.I64(ended_ns);
}

}  // namespace

std::string EncodeCall(const CallState& c) {
  Encoder e;
  e.Byte(kFormat);
  e.Byte(static_cast<uint8_t>(c.phase));
  e.I64(c.ended_ns);
  e.U64(c.call_id);
  e.Bool(c.model_call);
  // The call's fields, by the schema table.
  const CallInfo& info = c.request.call;
  e.U64(kCallFieldCount);
  for (const CallField& f : kCallFields) {
    switch (f.type) {
      case CallFieldType::kHook: e.Byte(static_cast<uint8_t>(info.hook)); break;
      case CallFieldType::kString:
        // The output is what End returned (EndResult), not what the call produced.
        e.Str(f.text == &CallInfo::output || f.text == &CallInfo::chunk ? std::string_view()
                                                                          : info.*f.text);
        break;
      case CallFieldType::kCount: e.I64(info.*f.count); break;
      case CallFieldType::kArgs: e.Val(info.args); break;
      case CallFieldType::kTokens:
        for (const TokenField& t : kTokenFields) e.U64(info.tokens.*t.member);
        break;
      case CallFieldType::kAttributes: e.Pairs(info.attributes); break;
    }
  }
  e.OptI64(c.request.input_tokens);
  e.OptI64(c.request.max_output_tokens);
  e.Str(c.request.parent_span_id);
  e.Str(c.request.request_id);
  e.Str(c.request.idempotency_key);
  e.Str(c.span_id);
  e.I64(c.started_ns);
  e.Dec(c.decision);
  e.OptStr(c.redacted_input);
  e.OptStr(c.requested_model);
  e.I64(c.estimate_nanousd);
  // The budget hold: a restarted guard settles or releases these.
  e.U64(c.hold.reservations.size());
  for (const Reservation& r : c.hold.reservations) {
    e.U64(r.id);
    e.Str(r.budget_id);
    e.Str(r.key);
    e.I64(r.estimate_nanousd);
    e.I64(r.reserved_at_ns);
    e.I64(r.window.start_ns);
    e.I64(r.window.end_ns);
    e.I64(r.committed_nanousd);
    e.I64(r.limit_nanousd);
  }
  e.OptStr(c.hold.downgrade_model);
  e.Str(c.hold.downgrade_budget);
  e.I64(c.hold.estimate_nanousd);
  e.U64(c.record_seq);
  e.U64(c.admitted);
  e.Str(c.policy_version);
  e.U64(c.verdict_seq);
  e.Str(c.approved_by);
  e.Str(c.approval_reason);
  // The end, as the caller saw it.
  e.I64(c.latency_ns);
  const EndResult& end = c.ended;
  e.Dec(end.decision);
  e.Str(end.output);
  e.Bool(end.withheld);
  e.Bool(end.awaiting_approval);
  e.Str(end.held_output);
  e.OptI64(end.cost_nanousd);
  e.Bool(end.unpriced);
  e.I64(end.overshoot_nanousd);
  e.U64(end.record_seq);
  e.Bool(c.output_held);
  e.Str(c.held_output);
  e.Str(c.after_policy_version);
  e.Str(c.reviewed_output);
  return std::move(e.out);
}

Status DecodeCall(std::string_view data, std::string_view what, CallState* c) {
  Decoder d(data);
  auto damaged = [&](std::string_view part) {
    return Status::Corruption(
        fmt::format("{} is damaged: {} at byte {}", what, part, d.pos()));
  };
  uint8_t format = 0, phase = 0;
  if (!d.Byte(&format)) return damaged("empty value");
  if (format != kFormat) {
    return Status::Corruption(fmt::format("{} has format {} (this build reads {})", what, format,
                                          kFormat));
  }
  if (!d.Byte(&phase) || phase > static_cast<uint8_t>(CallPhase::kRejected)) {
    return damaged("bad phase");
  }
  c->phase = static_cast<CallPhase>(phase);
  uint64_t n = 0;
  if (!d.I64(&c->ended_ns) || !d.U64(&c->call_id) || !d.Bool(&c->model_call)) {
    return damaged("truncated header");
  }
  if (!d.U64(&n) || n != static_cast<uint64_t>(kCallFieldCount)) {
    return damaged("call fields of another schema");
  }
  CallInfo& info = c->request.call;
  for (const CallField& f : kCallFields) {
    bool ok = true;
    switch (f.type) {
      case CallFieldType::kHook: {
        uint8_t h = 0;
        ok = d.Byte(&h) && h < kHookCount;
        info.hook = static_cast<Hook>(h);
        break;
      }
      case CallFieldType::kString: ok = d.Str(&(info.*f.text)); break;
      case CallFieldType::kCount: ok = d.I64(&(info.*f.count)); break;
      case CallFieldType::kArgs: ok = d.Val(&info.args); break;
      case CallFieldType::kTokens:
        for (const TokenField& t : kTokenFields) ok = ok && d.U64(&(info.tokens.*t.member));
        break;
      case CallFieldType::kAttributes: ok = d.Pairs(&info.attributes); break;
    }
    if (!ok) return damaged(fmt::format("call field '{}'", f.name));
  }
  CallRequest& req = c->request;
  if (!d.OptI64(&req.input_tokens) || !d.OptI64(&req.max_output_tokens) ||
      !d.Str(&req.parent_span_id) || !d.Str(&req.request_id) || !d.Str(&req.idempotency_key) ||
      !d.Str(&c->span_id) || !d.I64(&c->started_ns)) {
    return damaged("truncated request");
  }
  if (!d.Dec(&c->decision)) return damaged("decision");
  if (!d.OptStr(&c->redacted_input) || !d.OptStr(&c->requested_model) ||
      !d.I64(&c->estimate_nanousd) || !d.Count(&n, 60)) {
    return damaged("truncated call");
  }
  c->hold.reservations.resize(n);
  for (Reservation& r : c->hold.reservations) {
    if (!d.U64(&r.id) || !d.Str(&r.budget_id) || !d.Str(&r.key) || !d.I64(&r.estimate_nanousd) ||
        !d.I64(&r.reserved_at_ns) || !d.I64(&r.window.start_ns) || !d.I64(&r.window.end_ns) ||
        !d.I64(&r.committed_nanousd) || !d.I64(&r.limit_nanousd)) {
      return damaged("budget hold");
    }
  }
  uint64_t admitted = 0;
  if (!d.OptStr(&c->hold.downgrade_model) || !d.Str(&c->hold.downgrade_budget) ||
      !d.I64(&c->hold.estimate_nanousd) || !d.U64(&c->record_seq) || !d.U64(&admitted) ||
      !d.Str(&c->policy_version) || !d.U64(&c->verdict_seq) || !d.Str(&c->approved_by) ||
      !d.Str(&c->approval_reason) || !d.I64(&c->latency_ns)) {
    return damaged("truncated lifecycle");
  }
  c->admitted = static_cast<size_t>(admitted);
  EndResult& end = c->ended;
  if (!d.Dec(&end.decision) || !d.Str(&end.output) || !d.Bool(&end.withheld) ||
      !d.Bool(&end.awaiting_approval) || !d.Str(&end.held_output) ||
      !d.OptI64(&end.cost_nanousd) || !d.Bool(&end.unpriced) || !d.I64(&end.overshoot_nanousd) ||
      !d.U64(&end.record_seq) || !d.Bool(&c->output_held) || !d.Str(&c->held_output) ||
      !d.Str(&c->after_policy_version) || !d.Str(&c->reviewed_output)) {
    return damaged("truncated end");
  }
  if (!d.done()) return damaged("trailing bytes");
  return Status::OK();
}

// --- the stores ---

class CallJournal::Store {
 public:
  virtual ~Store() = default;
  // NotFound when absent.
  virtual Status Get(const std::string& key, std::string* value) = 0;
  // Each op: a key and its new value, or nullopt to delete it. Atomic.
  using Ops = std::vector<std::pair<std::string, std::optional<std::string>>>;
  virtual Status Write(const Ops& ops, bool sync) = 0;
  // The keys from `from` up to (not including) `until`, in order.
  virtual Status Keys(const std::string& from, const std::string& until,
                      std::vector<std::string>* keys) = 0;
  virtual Status Close() { return Status::OK(); }
};

namespace {

class MemoryStore final : public CallJournal::Store {
 public:
  Status Get(const std::string& key, std::string* value) override {
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return Status::NotFound(key);
    *value = it->second;
    return Status::OK();
  }
  Status Write(const Ops& ops, bool) override {
    std::lock_guard lock(mu_);
    for (const auto& [k, v] : ops) {
      if (v) {
        map_[k] = *v;
      } else {
        map_.erase(k);
      }
    }
    return Status::OK();
  }
  Status Keys(const std::string& from, const std::string& until,
              std::vector<std::string>* keys) override {
    std::lock_guard lock(mu_);
    for (auto it = map_.lower_bound(from); it != map_.end() && it->first < until; ++it) {
      keys->push_back(it->first);
    }
    return Status::OK();
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> map_;  // GUARDED_BY(mu_)
};

class RocksJournalStore final : public CallJournal::Store {
 public:
  static Result<std::unique_ptr<RocksJournalStore>> Open(const std::string& path) {
    auto lock = DirLock::CreateAndAcquire(path, "call journal");
    if (!lock.ok()) return lock.status();
    rocksdb::Options options;
    SetWriterOptions(&options);
    options.create_if_missing = true;
    options.max_background_jobs = 1;
    options.paranoid_checks = true;
    // A damaged log fails the open (never a silent fresh start); only a last
    // write cut short by a crash (never acknowledged) is dropped.
    options.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
    options.write_buffer_size = 4 << 20;
    // Every Begin with a new key looks it up and misses: a Bloom filter per
    // table file answers most misses without reading the file.
    rocksdb::BlockBasedTableOptions table;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    table.whole_key_filtering = true;
    options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
    if (!s.ok()) {
      return RocksStore::Convert(s, fmt::format("cannot open the call journal at '{}'", path));
    }
    auto store = std::unique_ptr<RocksJournalStore>(new RocksJournalStore());
    store->lock_ = std::move(*lock);
    store->db_.reset(raw);
    store->path_ = path;
    return store;
  }

  Status Get(const std::string& key, std::string* value) override {
    rocksdb::ReadOptions ro;
    ro.verify_checksums = true;
    rocksdb::Status s = db_->Get(ro, key, value);
    if (s.IsNotFound()) return Status::NotFound(key);
    return RocksStore::Convert(s, fmt::format("reading the call journal at '{}'", path_));
  }

  Status Write(const Ops& ops, bool sync) override {
    rocksdb::WriteBatch batch;
    for (const auto& [k, v] : ops) {
      if (v) {
        batch.Put(k, *v);
      } else {
        batch.Delete(k);
      }
    }
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    std::lock_guard lock(write_mu_);
    if (resume_) {
      BASTION_RETURN_IF_ERROR(RocksStore::Convert(
          db_->Resume(), fmt::format("writing the call journal at '{}'", path_)));
      resume_ = false;
    }
    Status s = RocksStore::Convert(db_->Write(wo, &batch),
                                   fmt::format("writing the call journal at '{}'", path_));
    resume_ = !s.ok();
    return s;
  }

  Status Keys(const std::string& from, const std::string& until,
              std::vector<std::string>* keys) override {
    rocksdb::ReadOptions ro;
    ro.verify_checksums = true;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
    for (it->Seek(from); it->Valid() && it->key().ToStringView() < until; it->Next()) {
      keys->emplace_back(it->key().ToStringView());
    }
    return RocksStore::Convert(it->status(),
                               fmt::format("reading the call journal at '{}'", path_));
  }

  Status Close() override {
    if (!db_) return Status::OK();
    Status s = RocksStore::Convert(db_->Close(), "closing the call journal");
    db_.reset();
    lock_.reset();
    return s;
  }
  ~RocksJournalStore() override { (void)Close(); }

 private:
  RocksJournalStore() = default;
  std::unique_ptr<DirLock> lock_;  // released after the db closes
  std::unique_ptr<rocksdb::DB> db_;
  std::string path_;
  std::mutex write_mu_;
  bool resume_ = false;  // GUARDED_BY(write_mu_): the last write failed
};

// The interval between prunes: often enough that ended calls do not pile up
// far past their retention, rarely enough to cost nothing per call.
int64_t PruneInterval(int64_t retention_ns) {
  constexpr int64_t kMinute = 60'000'000'000;
  return std::max<int64_t>(0, std::min(kMinute, retention_ns / 4));
}

}  // namespace

Result<std::unique_ptr<CallJournal>> CallJournal::Open(const std::string& path,
                                                       int64_t retention_ns, int64_t now_ns) {
  if (retention_ns < 0) {
    return Status::InvalidArgument(fmt::format(
        "GuardOptions::idempotency_retention_ns must be >= 0, got {}", retention_ns));
  }
  auto j = std::unique_ptr<CallJournal>(new CallJournal());
  j->path_ = path;
  j->retention_ns_ = retention_ns;
  if (path.empty()) {
    j->store_ = std::make_unique<MemoryStore>();
    return j;
  }
  auto store = RocksJournalStore::Open(path);
  if (!store.ok()) return store.status();
  j->store_ = std::move(*store);
  // Every call not over is restored now: the guard adopts its budget hold.
  std::vector<std::string> open;
  BASTION_RETURN_IF_ERROR(j->store_->Keys(std::string(kOpen), "o0", &open));
  for (const std::string& index : open) {
    const std::string key = index.substr(kOpen.size());
    std::string value;
    Status got = j->store_->Get(Key(kCall, key), &value);
    if (got.IsNotFound()) {
      return Status::Corruption(fmt::format(
          "{}: listed as not over, but the call itself is missing", j->What(key)));
    }
    BASTION_RETURN_IF_ERROR(got);
    auto call = std::make_unique<CallState>();
    BASTION_RETURN_IF_ERROR(DecodeCall(value, j->What(key), call.get()));
    if (IsOver(call->phase) || call->request.idempotency_key != key) {
      return Status::Corruption(fmt::format(
          "{}: listed as not over, but the call kept is {} under key '{}'", j->What(key),
          CallPhaseName(call->phase), call->request.idempotency_key));
    }
    j->open_.push_back(std::move(call));
  }
  BASTION_RETURN_IF_ERROR(j->Prune(now_ns));
  return j;
}

CallJournal::~CallJournal() { (void)Close(); }

Status CallJournal::CheckOpen() const {
  if (store_) return Status::OK();
  return Status::FailedPrecondition("the guard is closed (its call journal with it)");
}

std::string CallJournal::What(const std::string& key) const {
  return path_.empty() ? fmt::format("call journal (in memory), key '{}'", key)
                       : fmt::format("call journal '{}', key '{}'", path_, key);
}

std::vector<std::unique_ptr<CallState>> CallJournal::TakeOpenCalls() { return std::move(open_); }

Result<std::unique_ptr<CallState>> CallJournal::Get(const std::string& key, int64_t now_ns) {
  std::shared_lock lock(mu_);
  BASTION_RETURN_IF_ERROR(CheckOpen());
  std::string value;
  Status got = store_->Get(Key(kCall, key), &value);
  if (got.IsNotFound()) return std::unique_ptr<CallState>();
  if (!got.ok()) return got.WithContext(What(key));
  auto call = std::make_unique<CallState>();
  BASTION_RETURN_IF_ERROR(DecodeCall(value, What(key), call.get()));
  if (call->request.idempotency_key != key) {
    return Status::Corruption(fmt::format("{}: holds the call of key '{}'", What(key),
                                          call->request.idempotency_key));
  }
  if (IsOver(call->phase) && call->ended_ns <= now_ns - retention_ns_) {
    return std::unique_ptr<CallState>();  // expired; pruned soon
  }
  return call;
}

Result<std::optional<std::string>> CallJournal::GetMemo(const std::string& key) {
  std::shared_lock lock(mu_);
  BASTION_RETURN_IF_ERROR(CheckOpen());
  std::string value;
  Status got = store_->Get(Key(kMemo, key), &value);
  if (got.IsNotFound()) return std::optional<std::string>();
  if (!got.ok()) return got.WithContext(What(key));
  return std::optional<std::string>(std::move(value));
}

Status CallJournal::Put(const CallState& call, bool sync,
                        const std::optional<std::string>& memo, bool fresh) {
  std::shared_lock lock(mu_);
  BASTION_RETURN_IF_ERROR(CheckOpen());
  const std::string& key = call.request.idempotency_key;
  Store::Ops ops;
  ops.emplace_back(Key(kCall, key), EncodeCall(call));
  if (memo) {
    ops.emplace_back(Key(kMemo, key), *memo);
  } else if (fresh) {
    ops.emplace_back(Key(kMemo, key), std::nullopt);  // an earlier call's
  }
  if (IsOver(call.phase)) {
    ops.emplace_back(Key(kOpen, key), std::nullopt);
    ops.emplace_back(Key(kOver, BigEndian(call.ended_ns) + key), std::string());
  } else {
    ops.emplace_back(Key(kOpen, key), std::string());
  }
  return store_->Write(ops, sync);
}

Status CallJournal::PutMemo(const std::string& key, const std::string& memo, bool sync) {
  std::shared_lock lock(mu_);
  BASTION_RETURN_IF_ERROR(CheckOpen());
  return store_->Write({{Key(kMemo, key), memo}}, sync);
}

Status CallJournal::Forget(const std::string& key) {
  std::shared_lock lock(mu_);
  BASTION_RETURN_IF_ERROR(CheckOpen());
  return store_->Write({{Key(kCall, key), std::nullopt},
                        {Key(kMemo, key), std::nullopt},
                        {Key(kOpen, key), std::nullopt}},
                       /*sync=*/false);
}

Status CallJournal::MaybePrune(int64_t now_ns) {
  if (now_ns < next_prune_ns_.load(std::memory_order_relaxed)) return Status::OK();
  std::unique_lock lock(mu_);
  BASTION_RETURN_IF_ERROR(CheckOpen());
  if (now_ns < next_prune_ns_.load(std::memory_order_relaxed)) return Status::OK();
  return Prune(now_ns);
}

Status CallJournal::Prune(int64_t now_ns) {
  next_prune_ns_.store(now_ns + PruneInterval(retention_ns_), std::memory_order_relaxed);
  // Nothing can have ended before the clock's epoch plus the retention (and
  // a negative bound would sort after every time).
  if (now_ns - retention_ns_ + 1 <= 0) return Status::OK();
  std::vector<std::string> due;
  BASTION_RETURN_IF_ERROR(store_->Keys(std::string(kOver),
                                       Key(kOver, BigEndian(now_ns - retention_ns_ + 1)), &due));
  if (due.empty()) return Status::OK();
  Store::Ops ops;
  for (const std::string& index : due) {
    ops.emplace_back(index, std::nullopt);
    if (index.size() < kOver.size() + 8) continue;
    const std::string key = index.substr(kOver.size() + 8);
    // The key may have begun a new call since: only the call this index
    // entry names goes.
    std::string value;
    CallPhase phase;
    int64_t ended_ns = 0;
    if (!store_->Get(Key(kCall, key), &value).ok() || !Header(value, &phase, &ended_ns) ||
        !IsOver(phase) || BigEndian(ended_ns) != index.substr(kOver.size(), 8)) {
      continue;
    }
    ops.emplace_back(Key(kCall, key), std::nullopt);
    ops.emplace_back(Key(kMemo, key), std::nullopt);
  }
  return store_->Write(ops, /*sync=*/false);
}

Status CallJournal::Close() {
  std::unique_lock lock(mu_);
  if (!store_) return Status::OK();
  Status s = store_->Close();
  store_.reset();
  return s;
}

}  // namespace bastion::guard
