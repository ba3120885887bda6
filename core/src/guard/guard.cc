// Guard: the lifecycle of one guarded model or tool call, as a pipeline of
// stages (guard/stage.h) over one call state.
//
// Calls in flight live in one map under one mutex, held only to find, insert
// or remove an entry: the stages (policy evaluation, pricing, budgets, SLOs
// and ledger appends) all run outside it. A call's state is allocated once
// at Begin and handed from stage to stage, never copied. A streamed call's
// output (guard/stream.h) has its own lock: chunks of different calls are
// evaluated concurrently, and End waits for a chunk being evaluated.
//
// A call with an idempotency key is also kept in the call journal
// (guard/call_journal.h), written by the thread working on the call after
// each lifecycle step and before the step returns; calls not over are read
// back into flight when the guard opens.
#include "bastion/guard.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "bastion/fleet_limits.h"
#include "bastion/fleet_budgets.h"
#include "bastion/policy_state.h"
#include "guard/call_journal.h"
#include "guard/stage.h"
#include "guard/stream.h"
#include "util/path_arg.h"

namespace bastion {

namespace {

bool IsModelHook(Hook h) { return h == Hook::kBeforeModel; }

// 64 random bits per call, from a per-thread generator seeded once.
uint64_t RandomBits() {
  thread_local std::mt19937_64 rng([] {
    std::random_device rd;
    return (uint64_t{rd()} << 32) ^ rd();
  }());
  return rng();
}

// `words` random 64-bit words as lower-case hex, 16 digits each.
std::string RandomHex(int words) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16 * words, '0');
  for (int w = 0; w < words; ++w) {
    uint64_t bits = RandomBits();
    for (int i = 15; i >= 0; --i, bits >>= 4) out[16 * w + i] = kHex[bits & 15];
  }
  return out;
}

std::string NewTraceId() { return RandomHex(2); }
std::string NewSpanId() { return RandomHex(1); }

// A key reused for another call: InvalidArgument naming both.
Status CheckSameCall(const guard::CallState& f, const CallRequest& request) {
  const CallInfo& was = f.request.call;
  const CallInfo& c = request.call;
  const bool model = c.hook == Hook::kBeforeModel;
  if (f.model_call != model || was.tool != c.tool || was.operation != c.operation ||
      was.resource_id != c.resource_id || was.agent_id != c.agent_id ||
      (model && was.model != c.model && f.requested_model.value_or(was.model) != c.model)) {
    return Status::InvalidArgument(fmt::format(
        "idempotency key '{}' belongs to call {} ({} '{}'), not to this {} call",
        request.idempotency_key, f.call_id, f.model_call ? "model" : "tool",
        f.model_call ? f.requested_model.value_or(was.model) : was.tool,
        model ? "model" : "tool"));
  }
  return Status::OK();
}

}  // namespace

std::string_view CallPhaseName(CallPhase phase) {
  switch (phase) {
    case CallPhase::kAwaitingApproval: return "awaiting_approval";
    case CallPhase::kInFlight: return "in_flight";
    case CallPhase::kAwaitingReview: return "awaiting_review";
    case CallPhase::kEnded: return "ended";
    case CallPhase::kDenied: return "denied";
    case CallPhase::kRejected: return "rejected";
  }
  return "unknown";
}

namespace guard {

TokenUsage RecordTokens(const Usage& u) {
  TokenUsage t;
  t.input = static_cast<uint64_t>(u.input);
  t.output = static_cast<uint64_t>(u.output);
  t.cache_read = static_cast<uint64_t>(u.cache_read);
  t.cache_write = static_cast<uint64_t>(u.cache_write_5m + u.cache_write_1h);
  t.reasoning = static_cast<uint64_t>(u.reasoning);
  return t;
}

// Sets attribute `key`, replacing a value the call brought under that key.
void SetAttribute(Record* r, std::string key, std::string value) {
  for (auto& [k, v] : r->attributes) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  r->attributes.emplace_back(std::move(key), std::move(value));
}

// The fields every record of a call shares, with the call's own attributes.
Record CallRecord(const CallInfo& c, const std::string& action, const CallRequest& req,
                  const std::string& policy_version) {
  Record r = RecordFromCall(c, action);
  r.parent_span_id = req.parent_span_id;
  r.request_id = req.request_id;
  r.policy_version = policy_version;
  return r;
}

}  // namespace guard

using guard::CallState;

class Guard::Impl {
 public:
  guard::StageContext context;
  std::unique_ptr<guard::Pipeline> pipeline;

  std::mutex mu;
  std::unordered_map<uint64_t, std::unique_ptr<CallState>> calls;  // GUARDED_BY(mu)
  std::unordered_map<std::string, uint64_t> by_key;                // GUARDED_BY(mu)
  std::atomic<uint64_t> next_id{1};
  bool closed = false;  // GUARDED_BY(mu)

  std::unique_ptr<guard::CallJournal> journal;
  // Keyed calls over in this process, by id: what Remember(call_id) finds
  // (key, when over); swept of calls past their retention as it grows.
  std::unordered_map<uint64_t, std::pair<std::string, int64_t>> over;  // GUARDED_BY(mu)
  size_t over_sweep_at = 1024;                                         // GUARDED_BY(mu)
  // Keys whose call a thread is beginning, or ending or resolving out of
  // flight: Begin with such a key waits until that thread is done, so two
  // threads never begin one key twice nor find a call half ended.
  std::unordered_set<std::string> busy;  // GUARDED_BY(mu)
  std::condition_variable busy_cv;

  // What Begin returns for a call: the decision copied when the call keeps
  // it (a resumed or approved call returns it again), else moved out.
  static BeginResult ResultOf(CallState& call, bool keep_decision) {
    return BeginResult{
        .call_id = call.call_id,
        .decision = keep_decision ? Decision(call.decision) : Decision(std::move(call.decision)),
        .model = call.model(),
        .input = call.input(),
        .trace_id = call.request.call.trace_id,
        .span_id = call.span_id,
        .estimate_nanousd = call.estimate_nanousd,
        .budget_alerts = call.hold.alerts,
        .record_seq = call.record_seq,
        .state = call.phase,
        .memo = std::nullopt,
        .ended = std::nullopt,
    };
  }

  // What Begin returns for a call its key found: as begun (its decision as
  // resolved), where it stands now, and how it ended.
  static BeginResult ResumedOf(CallState& call) {
    BeginResult out = ResultOf(call, /*keep_decision=*/true);
    if (call.unresolved) out.decision = *call.unresolved;  // not approved until recorded
    out.resumed = true;
    out.budget_alerts.clear();
    if (call.phase == CallPhase::kAwaitingReview || call.phase == CallPhase::kEnded) {
      EndResult& end = out.ended.emplace(call.ended);
      if (call.output_held) {
        end.held_output = call.held_output;
        if (call.phase == CallPhase::kEnded) {  // reviewed
          end.output = call.reviewed_output;
          end.awaiting_approval = false;
          end.withheld = end.output != call.held_output;
        }
      }
    }
    return out;
  }

  // Remembers a keyed call now over, for Remember(call_id).
  void Over(const CallState& call) {
    std::lock_guard lock(mu);
    over[call.call_id] = {call.request.idempotency_key, call.ended_ns};
    if (over.size() < over_sweep_at) return;
    const int64_t cutoff = call.ended_ns - journal->retention_ns();
    std::erase_if(over, [&](const auto& e) { return e.second.second <= cutoff; });
    over_sweep_at = std::max<size_t>(1024, 2 * over.size());
  }

  // Takes call `id` out of flight (and its key, busy until a KeyHold of it
  // dies).
  std::unique_ptr<CallState> Take(std::unordered_map<uint64_t, std::unique_ptr<CallState>>::iterator it) {
    std::unique_ptr<CallState> call = std::move(it->second);
    calls.erase(it);
    if (!call->request.idempotency_key.empty()) {
      by_key.erase(call->request.idempotency_key);
      busy.insert(call->request.idempotency_key);
    }
    return call;
  }

  // The stream of call `id`, begun on first use. The map's lock is held to
  // find the call (and, once, to copy its view); the stream has its own.
  Result<std::shared_ptr<guard::Stream>> StreamOf(uint64_t id, const GuardOptions& options) {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    if (it == calls.end()) return Status::NotFound(fmt::format("call {} is not in flight", id));
    CallState& call = *it->second;
    if (call.awaiting_approval) {
      return Status::FailedPrecondition(
          fmt::format("call {} is awaiting approval; it may not stream yet", id));
    }
    if (call.output_held) {
      return Status::FailedPrecondition(
          fmt::format("call {} has ended; its output awaits review", id));
    }
    if (!call.stream) call.stream = std::make_shared<guard::Stream>(call.request.call, options);
    return call.stream;
  }

  void Put(std::unique_ptr<CallState> call) {
    std::lock_guard lock(mu);
    if (!call->request.idempotency_key.empty()) {
      by_key.emplace(call->request.idempotency_key, call->call_id);
    }
    const uint64_t id = call->call_id;
    calls.emplace(id, std::move(call));
  }
};

// A busy key (Impl::busy), given back when this dies (outside mu).
struct Guard::KeyHold {
  Impl* impl = nullptr;
  std::string key;  // "" = none
  KeyHold() = default;
  KeyHold(Impl* i, std::string k) : impl(i), key(std::move(k)) {}
  KeyHold(const KeyHold&) = delete;
  KeyHold& operator=(const KeyHold&) = delete;
  ~KeyHold() {
    if (key.empty()) return;
    {
      std::lock_guard lock(impl->mu);
      impl->busy.erase(key);
    }
    impl->busy_cv.notify_all();
  }
};

namespace {

// A kept call taken out of flight by a step (End, ReviewOutput, a
// rejection): if the step fails, nobody holds the call any more, so its kept
// entry goes too and its key begins a new call (as a process that crashed
// there would begin one after the restart, its records being what they are).
// Declared after the step's KeyHold, so it runs while the key is still busy.
struct DropUnlessDone {
  guard::CallJournal* journal;
  const guard::CallState* call;
  bool done = false;
  ~DropUnlessDone() {
    if (!done && call->kept) (void)journal->Forget(call->request.idempotency_key);
  }
};

}  // namespace

Guard::Guard(GuardOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

Guard::~Guard() { (void)Close(); }

Result<std::unique_ptr<Guard>> Guard::Open(GuardOptions options) {
  auto guard = std::unique_ptr<Guard>(new Guard(std::move(options)));
  const GuardOptions& o = guard->options_;
  for (const auto& [path, name] : {std::pair{&o.policy_dir, "policy_dir"},
                                   {&o.budgets_file, "budgets_file"},
                                   {&o.slos_file, "slos_file"},
                                   {&o.ledger_path, "ledger_path"},
                                   {&o.state_path, "state_path"},
                                   {&o.calls_path, "calls_path"}}) {
    BASTION_RETURN_IF_ERROR(CheckPathArgument(*path, name, /*allow_empty=*/true));
  }
  for (size_t i = 0; i < o.pricing_files.size(); ++i) {
    BASTION_RETURN_IF_ERROR(CheckPathArgument(o.pricing_files[i],
                                              fmt::format("pricing_files[{}]", i)));
  }
  BASTION_RETURN_IF_ERROR(guard::ValidateStageNames(o.stages));
  if (o.stream_hold_bytes > o.chunk_window_bytes) {
    return Status::InvalidArgument(fmt::format(
        "GuardOptions: stream_hold_bytes ({}) is more than chunk_window_bytes ({})",
        o.stream_hold_bytes, o.chunk_window_bytes));
  }
  if (o.budget_backend && !o.budgets_file.empty()) {
    return Status::InvalidArgument(
        "GuardOptions: budgets_file and budget_backend are both set; give one");
  }
  if (o.budget_backend && !o.store.url.empty()) {
    return Status::InvalidArgument(
        "GuardOptions: store and budget_backend are both set; the store keeps the budgets of "
        "budgets_file");
  }
  guard->clock_ = o.clock ? o.clock : std::make_shared<WallClock>();
  auto clock = guard->clock_;

  // The journal first: the budget state adopts the holds of its calls.
  auto journal = guard::CallJournal::Open(o.calls_path, o.idempotency_retention_ns,
                                          clock->NowNs());
  if (!journal.ok()) return journal.status();
  guard->impl_->journal = std::move(*journal);
  std::vector<std::unique_ptr<CallState>> kept = guard->impl_->journal->TakeOpenCalls();

  if (!o.ledger_path.empty()) {
    auto ledger = Ledger::Open(o.ledger_path, o.ledger);
    if (!ledger.ok()) return ledger.status();
    guard->ledger_ = std::move(*ledger);
    // A kept call whose decision record was still queued when its process
    // ended never reached the ledger: it is forgotten (Begin with its key
    // begins anew, checked and recorded), and its hold is not adopted (the
    // budget state charges it as abandoned, as for a call without a key).
    auto head = guard->ledger_->GetHead();
    if (!head.ok()) return head.status();
    for (auto it = kept.begin(); it != kept.end();) {
      if ((*it)->record_seq > head->seq) {
        BASTION_RETURN_IF_ERROR(
            guard->impl_->journal->Forget((*it)->request.idempotency_key));
        it = kept.erase(it);
      } else {
        ++it;
      }
    }
  }

  std::shared_ptr<SharedRateLimits> shared_limits;
  std::shared_ptr<BreakerStore> shared_breakers;
  if (!o.store.url.empty()) {
    FleetLimitsOptions fo;
    fo.store = o.store;
    auto limits = SharedRateLimits::Open(fo);
    if (!limits.ok()) return limits.status();
    shared_limits = std::move(*limits);
  }

  if (!o.policy_dir.empty()) {
    auto engine = PolicyEngine::Load(o.policy_dir);
    if (!engine.ok()) return engine.status();
    guard->engine_ = std::move(*engine);
    guard->engine_->SetClock(clock);
    if (shared_limits) guard->engine_->SetRateLimits(shared_limits);
  }

  auto pricing = std::make_shared<PricingTable>();
  for (const std::string& file : o.pricing_files) {
    auto table = PricingTable::FromYamlFile(file);
    if (!table.ok()) return table.status();
    pricing->MergeFrom(*table);
  }
  guard->pricing_ = pricing;

  if (!o.budgets_file.empty() && !o.store.url.empty()) {
    auto config = LoadBudgetYamlFile(o.budgets_file);
    if (!config.ok()) return config.status();
    RedisBudgets::Options ro;
    ro.clock = o.clock ? BudgetLedger::Clock([clock] { return clock->NowNs(); }) : nullptr;
    auto shared = RedisBudgets::Open(std::move(*config), o.store, std::move(ro));
    if (!shared.ok()) return shared.status();
    guard->budget_backend_ = std::move(*shared);
  } else if (!o.budgets_file.empty()) {
    auto config = LoadBudgetYamlFile(o.budgets_file);
    if (!config.ok()) return config.status();
    BudgetSet::Options bo;
    bo.clock = [clock] { return clock->NowNs(); };
    bo.state_path = o.state_path;
    bo.flush_interval_ns = o.budget_flush_interval_ns;
    for (const auto& call : kept) {
      bo.adopt.insert(bo.adopt.end(), call->hold.reservations.begin(),
                      call->hold.reservations.end());
    }
    auto set = BudgetSet::Open(std::move(*config), bo);
    if (!set.ok()) return set.status();
    guard->budgets_ = std::move(*set);
    guard->budget_backend_ = BudgetSetBackend(guard->budgets_);
  } else {
    guard->budget_backend_ = o.budget_backend;
  }

  if (!o.slos_file.empty()) {
    auto specs = LoadSloYamlFile(o.slos_file);
    if (!specs.ok()) return specs.status();
    SloMonitor::Options so;
    so.clock = clock;
    if (shared_limits) {
      FleetLimitsOptions fo;
      fo.store = o.store;
        auto breakers = OpenRedisBreakers(fo);
      if (!breakers.ok()) return breakers.status();
      shared_breakers = *breakers;
      so.breakers = std::move(*breakers);
      so.rate_limits = shared_limits;
    }
    auto monitor = SloMonitor::Create(std::move(*specs), so);
    if (!monitor.ok()) return monitor.status();
    guard->slos_ = std::move(*monitor);
  }

  if (guard->engine_) {
    guard->engine_->SetState(
        std::make_shared<LivePolicyState>(guard->pricing_, guard->budgets_, guard->slos_));
  }

  guard::StageContext& ctx = guard->impl_->context;
  ctx.options = &guard->options_;
  ctx.clock = guard->clock_.get();
  ctx.engine = guard->engine_.get();
  ctx.pricing = guard->pricing_.get();
  ctx.budgets = guard->budget_backend_.get();
  ctx.slos = guard->slos_.get();
  ctx.ledger = guard->ledger_.get();
  // What the budget backend and the shared state went through (degraded
  // mode entered or left), for the record stage to write to the ledger.
  ctx.take_store_events = [budgets = guard->budget_backend_, shared_limits, shared_breakers] {
    std::vector<StoreEvent> events;
    if (budgets) events = budgets->TakeEvents();
    auto add = [&events](std::vector<StoreEvent> more) {
      for (StoreEvent& e : more) events.push_back(std::move(e));
    };
    if (shared_limits) add(shared_limits->TakeEvents());
    if (shared_breakers) add(shared_breakers->TakeEvents());
    return events;
  };
  auto pipeline = guard::Pipeline::Build(o.stages, ctx, o.time_stages);
  if (!pipeline.ok()) return pipeline.status();
  guard->impl_->pipeline = std::move(*pipeline);
  BASTION_RETURN_IF_ERROR(guard->Restore(std::move(kept)));
  return guard;
}

// Calls the journal kept not over go back into flight under new ids. A hold
// is settled or released only where the budget state still holds it
// outstanding (adopted): one it lost, or one already settled before the
// crash, is never charged again.
Status Guard::Restore(std::vector<std::unique_ptr<guard::CallState>> kept) {
  for (auto& call : kept) {
    call->call_id = impl_->next_id.fetch_add(1, std::memory_order_relaxed);
    call->journaled = true;
    call->kept = true;
    call->awaiting_approval = call->phase == CallPhase::kAwaitingApproval;
    call->output_held = call->phase == CallPhase::kAwaitingReview;
    std::vector<Reservation>& held = call->hold.reservations;
    if (!held.empty() && (budgets_ || !budget_backend_)) {
      const size_t before = held.size();
      std::erase_if(held, [&](const Reservation& r) {
        if (!budgets_) return true;
        const auto& adopted = budgets_->restored().adopted;
        return std::find(adopted.begin(), adopted.end(), std::pair{r.budget_id, r.id}) ==
               adopted.end();
      });
      if (held.size() != before) {
        BASTION_RETURN_IF_ERROR(impl_->journal->Put(*call, /*sync=*/false));
      }
    }
    impl_->Put(std::move(call));
  }
  return Status::OK();
}

Result<uint64_t> Guard::AppendRecord(bastion::Record record) {
  if (record.policy_version.empty() && engine_) record.policy_version = engine_->version();
  if (!ledger_) return uint64_t{0};
  if (record.timestamp_ns == 0) record.timestamp_ns = clock_->NowNs();
  return ledger_->Append(std::move(record), options_.durability);
}

std::vector<StageTiming> Guard::StageTimings() const { return impl_->pipeline->Timings(); }

Status Guard::Journal(CallState& call, Durability durability,
                      const std::optional<std::string>& memo) {
  BASTION_RETURN_IF_ERROR(
      impl_->journal->Put(call, durability == Durability::kSync, memo, /*fresh=*/!call.kept));
  // Written only on a call's first write, which no other thread can see yet
  // (Begin, or End of a call taken out of flight): Remember reads it under mu.
  if (!call.kept) call.kept = true;
  // Pruning is housekeeping: its failure is not the step's (the next write
  // tries again), and the call's own entry is written.
  (void)impl_->journal->MaybePrune(clock_->NowNs());
  return Status::OK();
}

// The call `request`'s key names, if one is kept: in flight in this process,
// or over and kept in the journal. nullopt: begin a new call.
Result<std::optional<BeginResult>> Guard::Resume(const CallRequest& request, KeyHold* hold) {
  const std::string& key = request.idempotency_key;
  std::optional<BeginResult> out;
  {
    std::unique_lock lock(impl_->mu);
    impl_->busy_cv.wait(lock, [&] { return !impl_->busy.contains(key); });
    if (auto it = impl_->by_key.find(key); it != impl_->by_key.end()) {
      auto call = impl_->calls.find(it->second);
      if (call == impl_->calls.end()) {
        return Status::Internal(fmt::format("idempotency key '{}' names no call", key));
      }
      BASTION_RETURN_IF_ERROR(CheckSameCall(*call->second, request));
      out = Impl::ResumedOf(*call->second);
    } else {
      impl_->busy.insert(key);  // this thread finds it in the journal or begins it
      hold->impl = impl_.get();
      hold->key = key;
    }
  }
  if (!out) {
    auto kept = impl_->journal->Get(key, clock_->NowNs());
    if (!kept.ok()) return kept.status();
    if (*kept == nullptr) return out;
    CallState& call = **kept;
    BASTION_RETURN_IF_ERROR(CheckSameCall(call, request));
    if (!guard::IsOver(call.phase)) {
      // Calls not over are in flight from Open on, or busy.
      return Status::Internal(fmt::format(
          "the call of idempotency key '{}' is kept {} but is not in flight", key,
          CallPhaseName(call.phase)));
    }
    // Over: returned as it ended, under a new id nothing else has (End and
    // Approve find no call in flight by it).
    call.call_id = impl_->next_id.fetch_add(1, std::memory_order_relaxed);
    impl_->Over(call);
    out = Impl::ResumedOf(call);
  }
  auto memo = impl_->journal->GetMemo(key);
  if (!memo.ok()) return memo.status();
  out->memo = std::move(*memo);
  return out;
}

Result<BeginResult> Guard::Begin(CallRequest request) {
  const CallInfo& c = request.call;
  if (c.hook != Hook::kBeforeModel && c.hook != Hook::kBeforeTool) {
    return Status::InvalidArgument("Begin takes a before_model or before_tool call");
  }
  KeyHold hold;  // a new keyed call's key, busy until it is in flight
  if (!request.idempotency_key.empty()) {
    auto found = Resume(request, &hold);
    if (!found.ok()) return found.status();
    if (*found) return std::move(**found);
  }

  auto call = std::make_unique<CallState>();
  call->call_id = impl_->next_id.fetch_add(1, std::memory_order_relaxed);
  call->model_call = IsModelHook(request.call.hook);
  call->request = std::move(request);
  if (call->request.call.trace_id.empty()) call->request.call.trace_id = NewTraceId();
  call->span_id = NewSpanId();
  call->started_ns = clock_->NowNs();
  call->journaled = !call->request.idempotency_key.empty();
  // Without a bundle nobody else names the call's risk (it decides durability).
  if (!engine_) call->decision.risk_level = call->request.call.risk_level;
  BASTION_RETURN_IF_ERROR(impl_->pipeline->Admit(*call));

  const Effect effect = call->decision.effect;
  if (effect == Effect::kDeny) {
    call->phase = CallPhase::kDenied;
    if (call->journaled) {
      call->ended_ns = call->started_ns;
      BASTION_RETURN_IF_ERROR(Journal(*call, options_.durability));
      impl_->Over(*call);
    }
    return Impl::ResultOf(*call, /*keep_decision=*/false);
  }
  call->awaiting_approval = effect == Effect::kRequireApproval;
  call->phase = call->awaiting_approval ? CallPhase::kAwaitingApproval : CallPhase::kInFlight;
  call->policy_version = call->decision.policy_version;
  // Kept from Begin on: a call awaiting approval (its hold saved too, so no
  // crash loses it meanwhile) and a high-risk one, as durable as their
  // decision records (record stage). An allowed low-risk call is kept once
  // it ends: in flight, this process finds it by its key; if the process
  // dies first, a Begin with the key begins it anew, as for a call without
  // a key (docs/guarantees.md#calls-across-a-restart).
  if (call->journaled && (call->awaiting_approval || call->high_risk())) {
    const bool runs = !call->awaiting_approval;
    Status kept = !runs && budgets_ && !call->hold.reservations.empty() ? budgets_->Flush()
                                                                         : Status::OK();
    if (kept.ok()) {
      kept = Journal(*call, !runs || call->high_risk() ? options_.high_risk_durability
                                                       : options_.durability);
    }
    if (!kept.ok()) {
      (void)impl_->pipeline->Undo(*call);
      return kept;
    }
  }
  // A call found again (by its key, or to approve it) returns its decision.
  const bool keep = call->awaiting_approval || !call->request.idempotency_key.empty();
  BeginResult out = Impl::ResultOf(*call, keep);
  impl_->Put(std::move(call));
  return out;
}

Result<ChunkResult> Guard::Chunk(uint64_t call_id, std::string_view text) {
  auto stream = impl_->StreamOf(call_id, options_);
  if (!stream.ok()) return stream.status();
  return (*stream)->Chunk(engine_.get(), text);
}

Result<ChunkResult> Guard::FinishStream(uint64_t call_id) {
  auto stream = impl_->StreamOf(call_id, options_);
  if (!stream.ok()) return stream.status();
  return (*stream)->Finish(engine_.get());
}

Result<EndResult> Guard::End(uint64_t call_id, const CallOutcome& outcome) {
  std::unique_ptr<CallState> call;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->calls.find(call_id);
    if (it == impl_->calls.end()) {
      return Status::NotFound(fmt::format("call {} is not in flight (ended, or denied at begin)",
                                          call_id));
    }
    if (it->second->awaiting_approval) {
      return Status::FailedPrecondition(
          fmt::format("call {} is awaiting approval; Approve it first", call_id));
    }
    if (it->second->output_held) {
      return Status::FailedPrecondition(fmt::format(
          "call {} has ended; its output awaits review (ReviewOutput)", call_id));
    }
    if (outcome.memo && !it->second->journaled) {
      return Status::FailedPrecondition(
          fmt::format("call {} has no idempotency key to keep a memo with", call_id));
    }
    call = impl_->Take(it);
  }
  const KeyHold ending(impl_.get(), call->request.idempotency_key);
  DropUnlessDone dropped{impl_->journal.get(), call.get()};
  CallState& s = *call;
  // The cost of the outcome, which the slo and budget stages settle with.
  if (outcome.usage) {
    auto cost = PriceCall(*pricing_, s.model(), *outcome.usage);
    if (cost.ok()) {
      s.ended.cost_nanousd = cost->total_nanousd;
    } else if (cost.status().IsNotFound()) {
      s.ended.unpriced = s.model_call;
    } else {
      return cost.status();
    }
  }
  s.latency_ns = outcome.latency_ns.value_or(std::max<int64_t>(0, clock_->NowNs() - s.started_ns));
  BASTION_RETURN_IF_ERROR(impl_->pipeline->Settle(s, outcome));

  if (!s.ended.awaiting_approval) {
    if (s.journaled) {
      s.phase = CallPhase::kEnded;
      s.ended_ns = clock_->NowNs();
      BASTION_RETURN_IF_ERROR(Journal(s, options_.durability, outcome.memo));
      impl_->Over(s);
    }
    dropped.done = true;
    return std::move(s.ended);
  }
  // Kept (its budget settled, its SLO recorded) until ReviewOutput; a Begin
  // with its idempotency key finds it as begun.
  EndResult out = s.ended;
  s.request.call.hook = s.model_call ? Hook::kBeforeModel : Hook::kBeforeTool;
  s.output_held = true;
  s.held_output = std::move(s.ended.held_output);
  s.after_policy_version = s.ended.decision.policy_version;
  s.phase = CallPhase::kAwaitingReview;
  if (s.journaled) {
    s.ended_ns = clock_->NowNs();
    BASTION_RETURN_IF_ERROR(Journal(s, options_.durability, outcome.memo));
  }
  dropped.done = true;
  impl_->Put(std::move(call));
  return out;
}

Result<std::string> Guard::ReviewOutput(uint64_t call_id, bool approved,
                                        const std::string& reviewed_by,
                                        const std::string& reason) {
  if (reviewed_by.empty()) {
    return Status::InvalidArgument("a review must name who decided (approved_by)");
  }
  std::unique_ptr<CallState> call;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->calls.find(call_id);
    if (it == impl_->calls.end()) {
      return Status::NotFound(fmt::format("call {} is not in flight", call_id));
    }
    if (!it->second->output_held) {
      return Status::FailedPrecondition(
          fmt::format("call {}'s output is not awaiting review", call_id));
    }
    call = impl_->Take(it);
  }
  const KeyHold reviewing(impl_.get(), call->request.idempotency_key);
  DropUnlessDone dropped{impl_->journal.get(), call.get()};
  const std::string who = reason.empty() ? reviewed_by : reviewed_by + ": " + reason;
  guard::Verdict verdict;
  verdict.approved = approved;
  verdict.on_output = true;
  verdict.by = reviewed_by;
  verdict.message = fmt::format("output {} by {}", approved ? "approved" : "rejected", who);
  BASTION_RETURN_IF_ERROR(impl_->pipeline->Resolve(*call, verdict));
  std::string shown = approved ? call->held_output
                               : fmt::format("[withheld: output rejected by {}]", who);
  if (call->journaled) {
    call->phase = CallPhase::kEnded;
    call->ended_ns = clock_->NowNs();
    call->reviewed_output = shown;
    BASTION_RETURN_IF_ERROR(Journal(*call, options_.high_risk_durability));
    impl_->Over(*call);
  }
  dropped.done = true;
  return shown;
}

Result<BeginResult> Guard::Approve(uint64_t call_id, bool approved, const std::string& approved_by,
                                   const std::string& reason) {
  guard::Verdict verdict;
  verdict.approved = approved;
  verdict.by = approved_by;
  verdict.message = fmt::format("{} by {}{}{}", approved ? "approved" : "rejected", approved_by,
                                reason.empty() ? "" : ": ", reason);
  // A rejected call leaves flight now. An approved one stays (End and
  // Approve see it as awaiting approval) until its verdict is recorded;
  // meanwhile only this thread changes it.
  std::unique_ptr<CallState> rejected;
  CallState* call = nullptr;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->calls.find(call_id);
    if (it == impl_->calls.end()) {
      return Status::NotFound(fmt::format("call {} is not in flight", call_id));
    }
    if (!it->second->awaiting_approval || it->second->resolving) {
      return Status::FailedPrecondition(fmt::format(
          "call {} is not awaiting approval{}", call_id,
          it->second->output_held ? " (its output awaits review: ReviewOutput)"
          : it->second->resolving ? " (another approval is being recorded)"
                                  : ""));
    }
    if (approved) {
      call = it->second.get();
      call->resolving = true;
    } else {
      rejected = impl_->Take(it);
      call = rejected.get();
    }
  }
  if (!approved) {
    const KeyHold rejecting(impl_.get(), call->request.idempotency_key);
    DropUnlessDone dropped{impl_->journal.get(), call};
    call->decision.Resolve(false, "approval", verdict.message);
    BASTION_RETURN_IF_ERROR(impl_->pipeline->Resolve(*call, verdict));
    call->phase = CallPhase::kRejected;
    if (call->journaled) {
      call->approved_by = approved_by;
      call->approval_reason = reason;
      call->ended_ns = clock_->NowNs();
      BASTION_RETURN_IF_ERROR(Journal(*call, options_.high_risk_durability));
      impl_->Over(*call);
    }
    dropped.done = true;
    BeginResult out = Impl::ResultOf(*call, /*keep_decision=*/false);
    out.record_seq = call->verdict_seq;
    return out;
  }
  // Resolved on a copy, swapped in under the lock: a Begin resuming the call
  // reads its decision meanwhile.
  CallState& s = *call;
  Decision resolved = s.decision;
  resolved.Resolve(true, "approval", verdict.message);
  {
    std::lock_guard lock(impl_->mu);
    std::swap(s.decision, resolved);  // the record stage records the resolved decision
    s.unresolved = resolved;
  }
  Status recorded = impl_->pipeline->Resolve(s, verdict);
  if (recorded.ok() && s.journaled) {
    {
      std::lock_guard lock(impl_->mu);
      s.phase = CallPhase::kInFlight;
      s.approved_by = approved_by;
      s.approval_reason = reason;
    }
    recorded = Journal(s, options_.high_risk_durability);
  }
  std::lock_guard lock(impl_->mu);
  s.resolving = false;
  s.unresolved.reset();
  if (!recorded.ok()) {
    std::swap(s.decision, resolved);
    s.phase = CallPhase::kAwaitingApproval;
    return recorded;
  }
  s.awaiting_approval = false;
  s.phase = CallPhase::kInFlight;
  BeginResult out = Impl::ResultOf(s, /*keep_decision=*/true);
  out.record_seq = s.verdict_seq;
  return out;
}

Result<uint64_t> Guard::FindByKey(const std::string& idempotency_key) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->by_key.find(idempotency_key);
  if (it == impl_->by_key.end()) {
    return Status::NotFound(fmt::format("no call in flight with key '{}'", idempotency_key));
  }
  return it->second;
}

Status Guard::Remember(uint64_t call_id, std::string memo) {
  std::string key;
  {
    std::lock_guard lock(impl_->mu);
    if (auto it = impl_->calls.find(call_id); it != impl_->calls.end()) {
      key = it->second->request.idempotency_key;
      if (key.empty()) {
        return Status::FailedPrecondition(fmt::format(
            "call {} has no idempotency key: there is nothing to keep a memo under", call_id));
      }
      if (!it->second->kept) {
        return Status::FailedPrecondition(fmt::format(
            "call {} is not kept until it ends: give the memo to End", call_id));
      }
    } else if (auto over = impl_->over.find(call_id); over != impl_->over.end()) {
      key = over->second.first;
    } else {
      return Status::NotFound(fmt::format(
          "call {} is unknown to this guard (or was begun without an idempotency key)",
          call_id));
    }
  }
  return Remember(key, std::move(memo));
}

Status Guard::Remember(const std::string& idempotency_key, std::string memo) {
  if (idempotency_key.empty()) {
    return Status::InvalidArgument("Remember: the idempotency key is empty");
  }
  bool known = false;
  {
    std::lock_guard lock(impl_->mu);
    if (auto it = impl_->by_key.find(idempotency_key); it != impl_->by_key.end()) {
      auto call = impl_->calls.find(it->second);
      if (call != impl_->calls.end() && !call->second->kept) {
        return Status::FailedPrecondition(fmt::format(
            "the call of key '{}' is not kept until it ends: give the memo to End",
            idempotency_key));
      }
      known = true;
    }
  }
  if (!known) {
    auto kept = impl_->journal->Get(idempotency_key, clock_->NowNs());
    if (!kept.ok()) return kept.status();
    if (*kept == nullptr) {
      return Status::NotFound(
          fmt::format("no call is kept with idempotency key '{}'", idempotency_key));
    }
  }
  return impl_->journal->PutMemo(idempotency_key, memo,
                                 options_.durability == Durability::kSync);
}

Status Guard::Close() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->closed) return Status::OK();
    impl_->closed = true;
  }
  Status result;
  if (impl_->journal) result = impl_->journal->Close();
  if (budgets_) {
    Status s = budgets_->Close();
    if (result.ok()) result = s;
  }
  if (!options_.store.url.empty()) {  // the shared budgets this guard opened
    if (auto* shared = dynamic_cast<RedisBudgets*>(budget_backend_.get())) {
      Status s = shared->Close();
      if (result.ok()) result = s;
    }
  }
  if (ledger_) {
    Status s = ledger_->Close();
    if (result.ok()) result = s;
  }
  return result;
}

}  // namespace bastion
