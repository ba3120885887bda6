// BudgetSet: the configured budgets, all-or-nothing holds, threshold
// responses, and the RocksDB state store.
//
// The store keeps one value per budget, "budget/<id>", holding a versioned,
// length-checked encoding of BudgetLedger::Snapshot plus a fingerprint of the
// spec parts that give the saved numbers their meaning (scope, window, zone).
// Writes are whole-budget and atomic; a background thread writes budgets that
// changed since their last write.
#include "bastion/budget_set.h"

#include "bastion/slo.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <rocksdb/db.h>

#include "bastion/money.h"
#include "budget/budget_match.h"
#include "ledger/rocks_store.h"
#include "util/byte_codec.h"
#include "util/path_arg.h"

namespace bastion {

namespace {

constexpr uint8_t kStateVersion = 1;
constexpr std::string_view kKeyPrefix = "budget/";

// Each element of a list takes at least 8 bytes.
constexpr size_t kMinElementBytes = 8;

// What the saved numbers mean: restoring spend of a daily window into a
// monthly one, or per-user spend into a per-tenant budget, would be wrong.
std::string Fingerprint(const BudgetSpec& spec) {
  return fmt::format("scope={}:{};window={};thresholds={}", static_cast<int>(spec.scope.kind),
                     spec.scope.key, spec.window.ToString(), spec.thresholds.size());
}

std::string EncodeState(const BudgetSpec& spec, const BudgetSnapshot& s) {
  std::string out;
  out.push_back(static_cast<char>(kStateVersion));
  PutStr(&out, Fingerprint(spec));
  PutU64(&out, s.windows.size());
  for (const auto& w : s.windows) {
    PutStr(&out, w.key);
    PutI64(&out, w.start_ns);
    PutI64(&out, w.spent_nanousd);
  }
  PutU64(&out, s.rolling.size());
  for (const auto& r : s.rolling) {
    PutStr(&out, r.key);
    PutI64(&out, r.at_ns);
    PutI64(&out, r.amount_nanousd);
  }
  PutU64(&out, s.alerts.size());
  for (const auto& a : s.alerts) {
    PutStr(&out, a.key);
    PutU64(&out, a.threshold_index);
    PutI64(&out, a.last_fired_ns);
    PutI64(&out, a.window_start_ns);
  }
  PutU64(&out, s.outstanding.size());
  for (const auto& o : s.outstanding) {
    PutU64(&out, o.id);
    PutStr(&out, o.key);
    PutI64(&out, o.estimate_nanousd);
    PutI64(&out, o.reserved_at_ns);
    PutI64(&out, o.window.start_ns);
    PutI64(&out, o.window.end_ns);
  }
  const BudgetStats& st = s.stats;
  for (int64_t v : {st.admitted, st.refused, st.settled, st.released, st.outstanding,
                    st.reserved_nanousd, st.spent_nanousd, st.overshoot_count,
                    st.overshoot_nanousd, st.max_overshoot_nanousd, st.alerts_fired}) {
    PutI64(&out, v);
  }
  return out;
}

// Corruption naming the budget and the byte offset when `data` is damaged.
Status DecodeState(std::string_view id, std::string_view data, std::string* fingerprint,
                   BudgetSnapshot* s) {
  ByteReader d(data);
  auto damaged = [&](std::string_view what) {
    return Status::Corruption(
        fmt::format("saved state of budget '{}' is damaged: {} at byte {}", id, what, d.pos()));
  };
  uint8_t version = 0;
  if (!d.Byte(&version)) return damaged("empty value");
  if (version != kStateVersion) {
    return Status::Corruption(fmt::format(
        "saved state of budget '{}' has format version {} (this build reads {})", id, version,
        kStateVersion));
  }
  if (!d.Str(fingerprint)) return damaged("truncated fingerprint");
  s->budget_id = std::string(id);
  uint64_t n = 0;
  if (!d.Count(&n, kMinElementBytes)) return damaged("bad window count");
  s->windows.resize(n);
  for (auto& w : s->windows) {
    if (!d.Str(&w.key) || !d.I64(&w.start_ns) || !d.I64(&w.spent_nanousd)) {
      return damaged("truncated window");
    }
  }
  if (!d.Count(&n, kMinElementBytes)) return damaged("bad rolling count");
  s->rolling.resize(n);
  for (auto& r : s->rolling) {
    if (!d.Str(&r.key) || !d.I64(&r.at_ns) || !d.I64(&r.amount_nanousd)) {
      return damaged("truncated rolling entry");
    }
  }
  if (!d.Count(&n, kMinElementBytes)) return damaged("bad alert count");
  s->alerts.resize(n);
  for (auto& a : s->alerts) {
    uint64_t index = 0;
    if (!d.Str(&a.key) || !d.U64(&index) || !d.I64(&a.last_fired_ns) ||
        !d.I64(&a.window_start_ns)) {
      return damaged("truncated alert mark");
    }
    a.threshold_index = static_cast<size_t>(index);
  }
  if (!d.Count(&n, kMinElementBytes)) return damaged("bad reservation count");
  s->outstanding.resize(n);
  for (auto& o : s->outstanding) {
    if (!d.U64(&o.id) || !d.Str(&o.key) || !d.I64(&o.estimate_nanousd) ||
        !d.I64(&o.reserved_at_ns) || !d.I64(&o.window.start_ns) || !d.I64(&o.window.end_ns)) {
      return damaged("truncated reservation");
    }
  }
  BudgetStats& st = s->stats;
  for (int64_t* v : {&st.admitted, &st.refused, &st.settled, &st.released, &st.outstanding,
                     &st.reserved_nanousd, &st.spent_nanousd, &st.overshoot_count,
                     &st.overshoot_nanousd, &st.max_overshoot_nanousd, &st.alerts_fired}) {
    if (!d.I64(v)) return damaged("truncated statistics");
  }
  if (!d.done()) return damaged("trailing bytes");
  return Status::OK();
}

}  // namespace

// --- the store ---

class BudgetSet::Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::string& path) {
    auto lock = DirLock::CreateAndAcquire(path, "budget state");
    if (!lock.ok()) return lock.status();
    rocksdb::Options options;
    SetWriterOptions(&options);
    options.create_if_missing = true;
    options.max_background_jobs = 1;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
    if (!s.ok()) {
      Status st = RocksStore::Convert(s, fmt::format("cannot open budget state at '{}'", path));
      if (st.IsBusy()) {
        return Status::Busy(fmt::format(
            "budget state at '{}' is already in use by another BudgetSet (in this or another "
            "process)",
            path));
      }
      return st;
    }
    auto store = std::unique_ptr<Store>(new Store());
    store->lock_ = std::move(*lock);
    store->db_.reset(raw);
    store->path_ = path;
    return store;
  }

  // NotFound when nothing was saved for `id`.
  Status Get(std::string_view id, std::string* value) {
    const std::string key = std::string(kKeyPrefix) + std::string(id);
    return RocksStore::Convert(db_->Get(rocksdb::ReadOptions(), key, value),
                               fmt::format("reading budget state of '{}'", id));
  }

  // Every saved budget id.
  Result<std::vector<std::string>> Ids() {
    std::vector<std::string> ids;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(kKeyPrefix); it->Valid() && it->key().starts_with(kKeyPrefix); it->Next()) {
      ids.emplace_back(it->key().ToStringView().substr(kKeyPrefix.size()));
    }
    BASTION_RETURN_IF_ERROR(RocksStore::Convert(it->status(), "listing budget state"));
    return ids;
  }

  Status Put(const std::vector<std::pair<std::string, std::string>>& values, bool sync) {
    rocksdb::WriteBatch batch;
    for (const auto& [id, value] : values) batch.Put(std::string(kKeyPrefix) + id, value);
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    // A failed write (a full disk) stops RocksDB's writes until Resume, which
    // succeeds once there is room again; the unsaved state stays in memory.
    if (resume_) {
      BASTION_RETURN_IF_ERROR(RocksStore::Convert(
          db_->Resume(), fmt::format("writing budget state to '{}'", path_)));
      resume_ = false;
    }
    Status s = RocksStore::Convert(db_->Write(wo, &batch),
                                   fmt::format("writing budget state to '{}'", path_));
    resume_ = !s.ok();
    return s;
  }

  Status Close() {
    if (!db_) return Status::OK();
    Status s = RocksStore::Convert(db_->Close(), "closing budget state");
    db_.reset();
    lock_.reset();
    return s;
  }

 private:
  Store() = default;
  std::unique_ptr<DirLock> lock_;  // released after the db closes
  std::unique_ptr<rocksdb::DB> db_;
  std::string path_;
  bool resume_ = false;  // the last write failed; guarded by the caller's flush_mu_
};

struct BudgetSet::Throttle {
  RateLimiter limiter;
};

// --- BudgetSet ---

BudgetSet::BudgetSet(BudgetConfig config, Options options)
    : config_(std::move(config)),
      options_(std::move(options)),
      ledger_(options_.clock ? options_.clock : BudgetLedger::Clock(WallNowNs)),
      throttle_(std::make_unique<Throttle>()),
      changes_(config_.budgets.size()),
      flushed_(config_.budgets.size(), 0) {}

Result<std::unique_ptr<BudgetSet>> BudgetSet::Open(BudgetConfig config, Options options) {
  PrepareBudgetConfig(&config);
  auto set = std::unique_ptr<BudgetSet>(new BudgetSet(std::move(config), std::move(options)));
  for (const BudgetRule& rule : set->config_.budgets) {
    BASTION_RETURN_IF_ERROR(set->ledger_.AddBudget(rule.spec));
  }
  if (set->options_.state_path.empty()) return set;
  BASTION_RETURN_IF_ERROR(CheckPathArgument(set->options_.state_path, "state_path"));

  auto store = Store::Open(set->options_.state_path);
  if (!store.ok()) return store.status();
  set->store_ = std::move(*store);
  auto ids = set->store_->Ids();
  if (!ids.ok()) return ids.status();
  for (const std::string& id : *ids) {
    auto index = set->IndexOf(id);
    if (!index.ok()) {
      set->restored_.dropped.push_back(
          fmt::format("budget '{}': saved state kept aside, the budget is no longer configured",
                      id));
      continue;
    }
    const BudgetSpec& spec = set->config_.budgets[*index].spec;
    std::string value, fingerprint;
    BASTION_RETURN_IF_ERROR(set->store_->Get(id, &value));
    BudgetSnapshot snap;
    BASTION_RETURN_IF_ERROR(DecodeState(id, value, &fingerprint, &snap));
    if (fingerprint != Fingerprint(spec)) {
      set->restored_.dropped.push_back(fmt::format(
          "budget '{}': saved state not restored, its scope, window or thresholds changed "
          "(saved {}, now {})",
          id, fingerprint, Fingerprint(spec)));
      continue;
    }
    if (Status s = set->ledger_.Restore(snap); !s.ok()) {
      return Status::Corruption(fmt::format("saved state of budget '{}' is inconsistent: {}", id,
                                            s.message()));
    }
    // The calls behind outstanding reservations died with the process that
    // made them: charge their estimates to the windows they were made in.
    int64_t abandoned = 0;
    for (const auto& o : snap.outstanding) {
      const auto& adopt = set->options_.adopt;
      if (std::any_of(adopt.begin(), adopt.end(), [&](const Reservation& a) {
            return a.id == o.id && a.budget_id == id && a.key == o.key &&
                   a.estimate_nanousd == o.estimate_nanousd &&
                   a.reserved_at_ns == o.reserved_at_ns;
          })) {
        set->restored_.adopted.emplace_back(id, o.id);
        continue;
      }
      ++abandoned;
      Reservation r;
      r.id = o.id;
      r.budget_id = id;
      r.key = o.key;
      r.estimate_nanousd = o.estimate_nanousd;
      r.reserved_at_ns = o.reserved_at_ns;
      r.window = o.window;
      auto settled = set->ledger_.Settle(r, o.estimate_nanousd);
      if (!settled.ok()) return settled.status();
      ++set->restored_.abandoned_reservations;
      set->restored_.abandoned_nanousd += o.estimate_nanousd;
    }
    if (abandoned > 0) set->changes_[*index].fetch_add(1);
    ++set->restored_.budgets_restored;
  }
  if (set->options_.flush_interval_ns > 0) {
    set->flusher_ = std::thread([s = set.get()] { s->FlushLoop(); });
  }
  return set;
}

BudgetSet::~BudgetSet() { Close(); }

std::vector<std::pair<size_t, std::string>> BudgetSet::Covering(
    const BudgetSubject& subject) const {
  return CoveringBudgetKeys(config_, subject);
}

Result<BudgetHold> BudgetSet::Reserve(const BudgetSubject& subject, int64_t estimate_nanousd,
                                      std::string* refused_by) {
  if (estimate_nanousd < 0) {
    return Status::InvalidArgument(
        fmt::format("estimate must be >= $0 (got {})", FormatUsd(estimate_nanousd)));
  }
  BudgetHold hold;
  hold.estimate_nanousd = estimate_nanousd;
  const int64_t now = options_.clock ? options_.clock() : WallNowNs();
  auto undo = [&] {
    for (const Reservation& r : hold.reservations) (void)ledger_.Release(r);
  };
  for (const auto& [index, key] : Covering(subject)) {
    const BudgetRule& rule = config_.budgets[index];
    auto r = ledger_.Reserve(rule.spec.id, key, estimate_nanousd);
    changes_[index].fetch_add(1, std::memory_order_relaxed);
    if (!r.ok()) {
      undo();
      if (refused_by != nullptr && r.status().IsFailedPrecondition()) *refused_by = rule.spec.id;
      return r.status();
    }
    // Responses in force at the committed level this reservation reached.
    const __int128 committed = r->committed_nanousd;
    for (size_t t = 0; t < rule.spec.thresholds.size(); ++t) {
      const AlertThreshold& th = rule.spec.thresholds[t];
      if (committed * 100 < static_cast<__int128>(r->limit_nanousd) * th.percent) continue;
      if (th.action == AlertAction::kDowngrade && !hold.downgrade_model) {
        hold.downgrade_model = rule.downgrade_models[t];
        hold.downgrade_budget = rule.spec.id;
      } else if (th.action == AlertAction::kThrottle) {
        const std::string bucket = fmt::format("{}\x1f{}\x1f{}", rule.spec.id, t, key);
        if (!throttle_->limiter.TryAcquire(bucket, rule.throttle_rates[t], now)) {
          (void)ledger_.Release(*r);
          undo();
          if (refused_by != nullptr) *refused_by = rule.spec.id;
          return Status::FailedPrecondition(fmt::format(
              "budget '{}' key '{}' is throttled to {} above {}% of its limit", rule.spec.id, key,
              rule.throttle_rates[t].ToString(), th.percent));
        }
      }
    }
    hold.alerts.insert(hold.alerts.end(), r->alerts.begin(), r->alerts.end());
    hold.reservations.push_back(std::move(*r));
  }
  // Write-through: the reservation is on disk before the call it admits can
  // run, so a crash cannot hand its money back on restart. A hold that cannot
  // be saved is not granted.
  if (options_.flush_interval_ns == 0 && store_ && !hold.reservations.empty()) {
    if (Status s = FlushDirty(false); !s.ok()) {
      undo();
      for (const Reservation& r : hold.reservations) Touch(r.budget_id);
      return s;
    }
  }
  return hold;
}

std::vector<std::string> BudgetSet::CoveringBudgets(const BudgetSubject& subject) const {
  std::vector<std::string> ids;
  for (const auto& [index, key] : Covering(subject)) {
    const std::string& id = config_.budgets[index].spec.id;
    if (ids.empty() || ids.back() != id) ids.push_back(id);
  }
  return ids;
}

Result<HoldSettlement> BudgetSet::Settle(const BudgetHold& hold, int64_t actual_nanousd) {
  HoldSettlement out;
  out.actual_nanousd = actual_nanousd;
  Status first;
  for (const Reservation& r : hold.reservations) {
    auto s = ledger_.Settle(r, actual_nanousd);
    if (!s.ok()) {
      if (first.ok()) first = s.status();
      continue;
    }
    out.overshoot_nanousd = std::max(out.overshoot_nanousd, s->overshoot_nanousd);
    out.alerts.insert(out.alerts.end(), s->alerts.begin(), s->alerts.end());
  }
  for (const Reservation& r : hold.reservations) Touch(r.budget_id);
  if (options_.flush_interval_ns == 0 && store_) BASTION_RETURN_IF_ERROR(FlushDirty(false));
  if (!first.ok()) return first;
  return out;
}

Status BudgetSet::Release(const BudgetHold& hold) {
  Status first;
  for (const Reservation& r : hold.reservations) {
    Status s = ledger_.Release(r);
    if (!s.ok() && first.ok()) first = s;
    Touch(r.budget_id);
  }
  if (options_.flush_interval_ns == 0 && store_) BASTION_RETURN_IF_ERROR(FlushDirty(false));
  return first;
}

Result<size_t> BudgetSet::IndexOf(std::string_view budget_id) const {
  return BudgetIndexOf(config_, budget_id);
}

void BudgetSet::Touch(std::string_view budget_id) {
  if (auto index = IndexOf(budget_id); index.ok()) {
    changes_[*index].fetch_add(1, std::memory_order_relaxed);
  }
}

Result<std::string> BudgetSet::KeyFor(std::string_view budget_id,
                                      const BudgetSubject& subject) const {
  return BudgetKeyFor(config_, budget_id, subject);
}

Result<BudgetUsage> BudgetSet::UsageOf(std::string_view budget_id, std::string_view key) {
  auto index = IndexOf(budget_id);
  if (!index.ok()) return index.status();
  auto status = ledger_.Usage(budget_id, key);
  if (!status.ok()) return status.status();
  const BudgetSpec& spec = config_.budgets[*index].spec;
  BudgetUsage u;
  u.budget_id = spec.id;
  u.key = status->key;
  u.window = status->window_description;
  u.window_start_ns = status->window.start_ns;
  u.window_end_ns = status->window.end_ns;
  u.limit_nanousd = spec.limit_nanousd;
  u.admissible_nanousd = spec.AdmissibleNanousd();
  u.spent_nanousd = status->spent_nanousd;
  u.reserved_nanousd = status->reserved_nanousd;
  u.remaining_nanousd = status->remaining_nanousd;
  u.hard = spec.enforcement == BudgetSpec::Enforcement::kHard;
  return u;
}

std::vector<BudgetUsage> BudgetSet::Usage() {
  std::vector<BudgetUsage> out;
  for (const BudgetRule& rule : config_.budgets) {
    auto keys = ledger_.Keys(rule.spec.id);
    if (!keys.ok()) continue;
    if (keys->empty() && rule.spec.scope.kind == Scope::Kind::kGlobal) keys->push_back("");
    if (keys->empty() && !rule.spec.scope.key.empty()) keys->push_back(rule.spec.scope.key);
    for (const std::string& key : *keys) {
      auto u = UsageOf(rule.spec.id, key);
      if (u.ok()) out.push_back(std::move(*u));
    }
  }
  return out;
}

Status BudgetSet::FlushDirty(bool all) {
  std::lock_guard lock(flush_mu_);
  if (!store_ || closed_) return Status::OK();
  std::vector<std::pair<std::string, std::string>> values;
  std::vector<std::pair<size_t, uint64_t>> marks;
  for (size_t i = 0; i < config_.budgets.size(); ++i) {
    const uint64_t seen = changes_[i].load(std::memory_order_acquire);
    if (!all && seen == flushed_[i]) continue;
    const BudgetRule& rule = config_.budgets[i];
    auto snap = ledger_.Snapshot(rule.spec.id);
    if (!snap.ok()) return snap.status();
    values.emplace_back(rule.spec.id, EncodeState(rule.spec, *snap));
    marks.emplace_back(i, seen);
  }
  if (values.empty()) return Status::OK();
  BASTION_RETURN_IF_ERROR(store_->Put(values, /*sync=*/options_.flush_interval_ns == 0));
  for (const auto& [i, seen] : marks) flushed_[i] = seen;
  return Status::OK();
}

Status BudgetSet::Flush() { return FlushDirty(false); }

void BudgetSet::FlushLoop() {
  std::unique_lock lock(loop_mu_);
  while (!stopping_) {
    loop_cv_.wait_for(lock, std::chrono::nanoseconds(options_.flush_interval_ns),
                      [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    (void)FlushDirty(false);  // a failed background write is retried next round and at Close
    lock.lock();
  }
}

Status BudgetSet::Close() {
  {
    std::lock_guard lock(loop_mu_);
    stopping_ = true;
  }
  loop_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  Status s = FlushDirty(true);
  std::lock_guard lock(flush_mu_);
  if (closed_) return Status::OK();
  closed_ = true;
  if (store_) {
    Status c = store_->Close();
    if (s.ok()) s = c;
  }
  return s;
}

}  // namespace bastion
