// Rate limits and circuit breakers on Redis (bastion/fleet_limits.h). Key
// layout, under the hash slot "{<prefix>}" (docs/fleet.md):
//   {p}:rl:<bucket key>    hash c (credit), t (last refill, server us),
//                          n (count), p (period, us); expires a period after use
//   {p}:breakers           hash <series key> -> "<until us>|<worker>|<reason>"
//   {p}:probes:<series>    hash taken, done, slow: the half-open probe slots
//   {p}:disabled           hash <series key> 0x1f <worker> -> "<until us>|<reason>"
#include "bastion/fleet_limits.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "bastion/slo.h"
#include "fleet/degradation.h"
#include "fleet/redis_client.h"

namespace bastion {
namespace {

using fleet::RedisClient;
using fleet::RedisReply;
using fleet::RedisScript;

Result<std::shared_ptr<RedisClient>> ConnectStore(const FleetLimitsOptions& options) {
  if (options.store.url.empty()) {
    return Status::InvalidArgument("StoreOptions.url: empty (no shared store to connect to)");
  }
  if (options.store.timeout_ns <= 0) {
    return Status::InvalidArgument("StoreOptions.timeout_ns: must be > 0");
  }
  if (options.refresh_interval_ns < 1'000'000) {
    return Status::InvalidArgument("FleetLimitsOptions.refresh_interval_ns: must be >= 1 ms");
  }
  if (options.disable_lease_ns < 1'000'000'000) {
    return Status::InvalidArgument("FleetLimitsOptions.disable_lease_ns: must be >= 1 s");
  }
  auto endpoint = fleet::ParseRedisUrl(options.store.url);
  if (!endpoint.ok()) return endpoint.status();
  RedisClient::Options o;
  o.endpoint = *endpoint;
  o.timeout_ns = options.store.timeout_ns;
  o.retry_interval_ns = std::min<int64_t>(o.retry_interval_ns, options.store.timeout_ns);
  return RedisClient::Connect(o);
}

// The server's clock in microseconds, as every script reads it.
constexpr std::string_view kNowUs =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n";

// Token buckets as RateLimiter keeps them, in microseconds: a token is worth
// `period` units, a bucket holds count * period, refills count per us. All or
// none: a bucket without a token returns {0, i} before anything is written.
const RedisScript& AcquireScript() {
  static const RedisScript script(std::string(kNowUs) + R"lua(
local buckets, order = {}, {}
for i = 1, #KEYS do
  local k = KEYS[i]
  local count, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local b = buckets[k]
  if not b then
    local cap = count * period
    local c, last = cap, now
    local v = redis.call('HMGET', k, 'c', 't', 'n', 'p')
    if v[1] then
      c, last = tonumber(v[1]), tonumber(v[2])
      local n, p = tonumber(v[3]), tonumber(v[4])
      if n ~= count or p ~= period then
        c = math.min(math.floor(c / p), count) * period
      end
      if now > last then
        local elapsed = now - last
        if elapsed >= period then c = cap else c = math.min(cap, c + elapsed * count) end
        last = now
      end
    end
    b = {c = c, n = count, p = period, t = last}
    buckets[k] = b
    order[#order + 1] = k
  end
  if b.c < b.p then return {0, i} end
  b.c = b.c - b.p
end
for _, k in ipairs(order) do
  local b = buckets[k]
  redis.call('HSET', k, 'c', string.format('%.0f', b.c), 't', string.format('%.0f', b.t),
             'n', string.format('%.0f', b.n), 'p', string.format('%.0f', b.p))
  redis.call('PEXPIRE', k, math.floor(b.p / 1000) + 1000)
end
return {1, 0}
)lua");
  return script;
}

// KEYS: breakers, probes. ARGV: series, open_for us, "<worker>|<reason>".
// Opens until now + open_for (or keeps a later until); returns the until.
const RedisScript& OpenScript() {
  static const RedisScript script(std::string(kNowUs) + R"lua(
local untilv = now + tonumber(ARGV[2])
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local u = tonumber(string.match(old, '^(%d+)'))
  if u and u > untilv then return string.format('%.0f', u) end
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', untilv) .. '|' .. ARGV[3])
redis.call('DEL', KEYS[2])
return string.format('%.0f', untilv)
)lua");
  return script;
}

// KEYS: breakers, probes. ARGV: series, half_open_probes, open_for us.
// 1 a slot taken; 0 none left (or open again); 2 closed meanwhile.
const RedisScript& TakeProbeScript() {
  static const RedisScript script(std::string(kNowUs) + R"lua(
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 2 end
if tonumber(string.match(v, '^(%d+)')) > now then return 0 end
local taken = redis.call('HINCRBY', KEYS[2], 'taken', 1)
if taken > tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[2], 'taken', -1)
  return 0
end
redis.call('PEXPIRE', KEYS[2], math.max(1, math.floor(tonumber(ARGV[3]) / 1000)))
return 1
)lua");
  return script;
}

// KEYS: probes.
const RedisScript& ReleaseProbeScript() {
  static const RedisScript script(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'taken', -1)
if n < 0 then redis.call('HSET', KEYS[1], 'taken', 0) end
return n
)lua");
  return script;
}

// KEYS: breakers, probes. ARGV: series, success 0/1, slow 0/1,
// half_open_probes, slow_call_rate pct, open_for us, "<worker>|<reason>".
// 0 closed, 1 open, 2 still half-open.
const RedisScript& ProbeOutcomeScript() {
  static const RedisScript script(std::string(kNowUs) + R"lua(
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
if tonumber(string.match(v, '^(%d+)')) > now then return 1 end
local function reopen()
  redis.call('HSET', KEYS[1], ARGV[1],
             string.format('%.0f', now + tonumber(ARGV[6])) .. '|' .. ARGV[7])
  redis.call('DEL', KEYS[2])
  return 1
end
if ARGV[2] == '0' then return reopen() end
local done = redis.call('HINCRBY', KEYS[2], 'done', 1)
local slow = redis.call('HINCRBY', KEYS[2], 'slow', tonumber(ARGV[3]))
if done >= tonumber(ARGV[4]) then
  if 100 * slow >= tonumber(ARGV[5]) * done then return reopen() end
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  return 0
end
return 2
)lua");
  return script;
}

// KEYS: disabled. ARGV: field, lease us, reason.
const RedisScript& DisableScript() {
  static const RedisScript script(std::string(kNowUs) + R"lua(
local untilv = string.format('%.0f', now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], untilv .. '|' .. ARGV[3])
return 1
)lua");
  return script;
}

std::string KeyPrefix(const StoreOptions& store) { return "{" + store.prefix + "}:"; }

}  // namespace

// ---------------------------------------------------------------------------
// Rate limits.

class SharedRateLimits::Impl {
 public:
  Impl(FleetLimitsOptions options, std::shared_ptr<RedisClient> redis)
      : options_(std::move(options)),
        redis_(std::move(redis)),
        prefix_(KeyPrefix(options_.store) + "rl:"),
        degradation_("rate_limits", redis_->where(), WallNowNs) {}

  Result<bool> Acquire(const std::vector<RateLimitRef>& refs, int64_t now_ns, size_t* refused) {
    if (refs.empty()) return true;
    std::vector<std::string> keys, args;
    keys.reserve(refs.size());
    args.reserve(2 * refs.size());
    for (size_t i = 0; i < refs.size(); ++i) {
      const RateLimit& l = refs[i].limit;
      const int64_t period_us = std::max<int64_t>(1, l.period_ns / 1000);
      // Lua numbers are doubles: credit must stay below 2^53.
      if (l.count == 0 || l.period_ns <= 0 ||
          static_cast<double>(l.count) * static_cast<double>(period_us) > 9.0e15) {
        if (refused != nullptr) *refused = i;
        return false;
      }
      keys.push_back(prefix_ + refs[i].key);
      args.push_back(std::to_string(l.count));
      args.push_back(std::to_string(period_us));
    }
    std::vector<std::string_view> kv(keys.begin(), keys.end()), av(args.begin(), args.end());
    auto reply = redis_->Eval(AcquireScript(), kv, av);
    if (!reply.ok()) {
      if (!options_.store.degrade_to_local) {
        return Status::Unavailable(
            fmt::format("shared rate limits: {}", reply.status().message()));
      }
      degradation_.Enter(reply.status());
      return local_.Acquire(refs, now_ns, refused);
    }
    degradation_.Leave();
    if (reply->type != RedisReply::Type::kArray || reply->elements.size() != 2) {
      return Status::Internal(redis_->where() + ": the rate-limit script gave an unexpected reply");
    }
    if (reply->elements[0].integer == 1) return true;
    if (refused != nullptr) *refused = static_cast<size_t>(reply->elements[1].integer - 1);
    return false;
  }

  Status Ping() {
    auto r = redis_->Command({"PING"});
    return r.ok() ? Status::OK() : r.status();
  }

  const FleetLimitsOptions options_;
  const std::shared_ptr<RedisClient> redis_;
  const std::string prefix_;
  fleet::Degradation degradation_;
  RateLimiter local_;  // degraded mode
};

SharedRateLimits::SharedRateLimits(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SharedRateLimits::~SharedRateLimits() = default;

Result<std::shared_ptr<SharedRateLimits>> SharedRateLimits::Open(
    const FleetLimitsOptions& options) {
  auto redis = ConnectStore(options);
  if (!redis.ok()) return redis.status();
  return std::shared_ptr<SharedRateLimits>(
      new SharedRateLimits(std::make_unique<Impl>(options, std::move(*redis))));
}

Result<bool> SharedRateLimits::Acquire(const std::vector<RateLimitRef>& refs, int64_t now_ns,
                                       size_t* refused) {
  return impl_->Acquire(refs, now_ns, refused);
}

Status SharedRateLimits::Ping() { return impl_->Ping(); }
std::vector<StoreEvent> SharedRateLimits::TakeEvents() { return impl_->degradation_.Take(); }
bool SharedRateLimits::degraded() const { return impl_->degradation_.degraded(); }

// ---------------------------------------------------------------------------
// Breakers.

namespace {

struct Entry {
  int64_t until_us = 0;
  std::string worker, reason;
};

// What one refresh read.
struct Snapshot {
  std::unordered_map<std::string, Entry> open;      // breakers
  std::unordered_map<std::string, Entry> disabled;  // leases in force
  int64_t server_us = 0;                            // TIME at the refresh
  int64_t steady_ns = 0;                            // when the reply came
};

// "<until>|<rest>" -> until, rest.
bool SplitUntil(std::string_view v, int64_t* until_us, std::string_view* rest) {
  const size_t bar = v.find('|');
  if (bar == std::string_view::npos || bar == 0) return false;
  int64_t u = 0;
  for (char c : v.substr(0, bar)) {
    if (c < '0' || c > '9') return false;
    u = u * 10 + (c - '0');
  }
  *until_us = u;
  *rest = v.substr(bar + 1);
  return true;
}

class RedisBreakers final : public BreakerStore {
 public:
  RedisBreakers(FleetLimitsOptions options, std::shared_ptr<RedisClient> redis)
      : options_(std::move(options)),
        redis_(std::move(redis)),
        worker_(options_.store.worker.empty() ? fleet::HostAndPid() : options_.store.worker),
        breakers_key_(KeyPrefix(options_.store) + "breakers"),
        disabled_key_(KeyPrefix(options_.store) + "disabled"),
        probes_prefix_(KeyPrefix(options_.store) + "probes:"),
        stale_after_ns_(std::max(options_.store.timeout_ns, 2 * options_.refresh_interval_ns)),
        degradation_("breakers", redis_->where(), WallNowNs) {}

  ~RedisBreakers() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (refresher_.joinable()) refresher_.join();
  }

  void Start() {
    Refresh();
    refresher_ = std::thread([this] { Run(); });
  }

  Result<SharedBreakerState> Lookup(std::string_view key) override {
    const int64_t now = SteadyNowNs();
    if (now > fresh_until_ns_.load(std::memory_order_acquire)) {
      if (options_.store.degrade_to_local) {
        SharedBreakerState s;
        s.state = SharedBreakerState::State::kLocal;
        return s;
      }
      std::lock_guard<std::mutex> lock(mu_);
      return Status::Unavailable(fmt::format("shared circuit breakers: {}", error_));
    }
    SharedBreakerState s;
    if (!any_.load(std::memory_order_acquire)) return s;
    std::shared_ptr<const Snapshot> snap;
    {
      std::lock_guard<std::mutex> lock(mu_);
      snap = snapshot_;
    }
    // The server's clock now, from the last refresh.
    const int64_t server_us = snap->server_us + (now - snap->steady_ns) / 1000;
    const std::string k(key);
    if (auto it = snap->disabled.find(k); it != snap->disabled.end() &&
                                          it->second.until_us > server_us) {
      s.state = SharedBreakerState::State::kDisabled;
      s.until_ns = it->second.until_us * 1000;
      s.worker = it->second.worker;
      s.reason = it->second.reason;
      return s;
    }
    if (auto it = snap->open.find(k); it != snap->open.end()) {
      s.state = it->second.until_us > server_us ? SharedBreakerState::State::kOpen
                                                : SharedBreakerState::State::kHalfOpen;
      s.until_ns = it->second.until_us * 1000;
      s.worker = it->second.worker;
      s.reason = it->second.reason;
    }
    return s;
  }

  Status PublishOpen(std::string_view key, int64_t open_for_ns, std::string_view reason) override {
    const std::string probes = probes_prefix_ + std::string(key);
    const std::string open_for = std::to_string(std::max<int64_t>(1, open_for_ns / 1000));
    const std::string tail = fmt::format("{}|{}", worker_, reason);
    auto r = redis_->Eval(OpenScript(), {breakers_key_, probes}, {key, open_for, tail});
    if (!r.ok()) return Failed(r.status());
    Changed();
    return Status::OK();
  }

  Result<bool> TakeProbe(std::string_view key, const CircuitBreakerOptions& breaker,
                         bool* took_slot) override {
    *took_slot = false;
    const std::string probes = probes_prefix_ + std::string(key);
    const std::string max = std::to_string(breaker.half_open_probes);
    const std::string open_for =
        std::to_string(std::max<int64_t>(1, breaker.open_duration_ns / 1000));
    auto r = redis_->Eval(TakeProbeScript(), {breakers_key_, probes}, {key, max, open_for});
    if (!r.ok()) return Failed(r.status());
    if (r->integer == 2) {
      Changed();  // closed meanwhile: let the cache catch up
      return true;
    }
    *took_slot = r->integer == 1;
    return *took_slot;
  }

  void ReleaseProbe(std::string_view key) override {
    const std::string probes = probes_prefix_ + std::string(key);
    (void)redis_->Eval(ReleaseProbeScript(), {probes}, {});
  }

  Result<SharedBreakerState::State> ProbeOutcome(std::string_view key, bool success, bool slow,
                                                 const CircuitBreakerOptions& breaker,
                                                 std::string_view reopen_reason) override {
    const std::string probes = probes_prefix_ + std::string(key);
    const std::string count = std::to_string(breaker.half_open_probes);
    const std::string pct = fmt::format("{}", breaker.slow_call_rate_threshold_pct);
    const std::string open_for =
        std::to_string(std::max<int64_t>(1, breaker.open_duration_ns / 1000));
    const std::string tail = fmt::format("{}|{}", worker_, reopen_reason);
    auto r = redis_->Eval(ProbeOutcomeScript(), {breakers_key_, probes},
                          {key, success ? "1" : "0", slow ? "1" : "0", count, pct, open_for, tail});
    if (!r.ok()) return Failed(r.status());
    Changed();
    switch (r->integer) {
      case 0: return SharedBreakerState::State::kClosed;
      case 1: return SharedBreakerState::State::kOpen;
      default: return SharedBreakerState::State::kHalfOpen;
    }
  }

  Status SetDisabled(std::string_view key, bool disabled, std::string_view reason) override {
    const std::string field = fmt::format("{}\x1f{}", key, worker_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (disabled) {
        disables_[field] = std::string(reason);
      } else {
        disables_.erase(field);
      }
    }
    Status s = disabled ? Disable(field, reason) : Enable(field);
    if (!s.ok()) return Failed(s);
    Changed();
    return Status::OK();
  }

  std::vector<StoreEvent> TakeEvents() override { return degradation_.Take(); }

 private:
  Status Disable(const std::string& field, std::string_view reason) {
    const std::string lease = std::to_string(options_.disable_lease_ns / 1000);
    auto r = redis_->Eval(DisableScript(), {disabled_key_}, {field, lease, reason});
    return r.ok() ? Status::OK() : r.status();
  }
  Status Enable(const std::string& field) {
    auto r = redis_->Command({"HDEL", disabled_key_, field});
    return r.ok() ? Status::OK() : r.status();
  }

  Status Failed(const Status& s) {
    if (s.IsUnavailable() && options_.store.degrade_to_local) degradation_.Enter(s);
    return s;
  }

  // A write of ours changed the shared state: refresh now rather than at the
  // next tick, so this worker sees its own change at once.
  void Changed() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      refresh_now_ = true;
    }
    wake_.notify_all();
  }

  void Run() {
    int64_t next_renewal = SteadyNowNs() + options_.disable_lease_ns / 4;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::nanoseconds(options_.refresh_interval_ns),
                     [this] { return stopping_ || refresh_now_; });
      if (stopping_) break;
      refresh_now_ = false;
      const bool renew = SteadyNowNs() >= next_renewal;
      std::unordered_map<std::string, std::string> disables;
      if (renew) disables = disables_;
      lock.unlock();
      if (renew) {
        next_renewal = SteadyNowNs() + options_.disable_lease_ns / 4;
        for (const auto& [field, reason] : disables) (void)Disable(field, reason);
      }
      Refresh();
      lock.lock();
    }
  }

  // One round trip: the server's clock, every open breaker, every disable.
  void Refresh() {
    auto replies = redis_->Pipeline(
        {{"TIME"}, {"HGETALL", breakers_key_}, {"HGETALL", disabled_key_}});
    const int64_t steady = SteadyNowNs();
    Status bad;
    int64_t server_ns = 0;
    if (!replies.ok()) {
      bad = replies.status();
    } else if (replies->size() != 3) {
      bad = Status::Internal(redis_->where() + ": the breaker refresh gave an unexpected reply");
    } else if (auto t = fleet::ParseServerTime((*replies)[0], redis_->where()); !t.ok()) {
      bad = t.status();
    } else {
      server_ns = *t;
    }
    if (!bad.ok()) {
      fresh_until_ns_.store(0, std::memory_order_release);
      {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = std::string(bad.message());
      }
      if (options_.store.degrade_to_local) degradation_.Enter(bad);
      return;
    }
    auto snap = std::make_shared<Snapshot>();
    snap->server_us = server_ns / 1000;
    snap->steady_ns = steady;
    const auto& open = (*replies)[1].elements;
    for (size_t i = 0; i + 1 < open.size(); i += 2) {
      Entry e;
      std::string_view rest;
      if (!SplitUntil(open[i + 1].str, &e.until_us, &rest)) continue;
      const size_t bar = rest.find('|');
      e.worker = std::string(rest.substr(0, bar));
      if (bar != std::string_view::npos) e.reason = std::string(rest.substr(bar + 1));
      snap->open.emplace(open[i].str, std::move(e));
    }
    const auto& disabled = (*replies)[2].elements;
    for (size_t i = 0; i + 1 < disabled.size(); i += 2) {
      Entry e;
      std::string_view rest;
      if (!SplitUntil(disabled[i + 1].str, &e.until_us, &rest)) continue;
      if (e.until_us <= snap->server_us) continue;  // a lapsed lease
      const std::string& field = disabled[i].str;
      const size_t sep = field.rfind('\x1f');
      if (sep == std::string::npos) continue;
      e.worker = field.substr(sep + 1);
      e.reason = std::string(rest);
      snap->disabled.emplace(field.substr(0, sep), std::move(e));
    }
    const bool any = !snap->open.empty() || !snap->disabled.empty();
    {
      std::lock_guard<std::mutex> lock(mu_);
      snapshot_ = std::move(snap);
    }
    any_.store(any, std::memory_order_release);
    fresh_until_ns_.store(steady + stale_after_ns_, std::memory_order_release);
    degradation_.Leave();
  }

  const FleetLimitsOptions options_;
  const std::shared_ptr<RedisClient> redis_;
  const std::string worker_;
  const std::string breakers_key_, disabled_key_, probes_prefix_;
  // The cache is trusted this long after a successful refresh.
  const int64_t stale_after_ns_;
  fleet::Degradation degradation_;

  std::atomic<int64_t> fresh_until_ns_{0};  // steady clock
  std::atomic<bool> any_{false};            // the snapshot holds an entry

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;                                      // GUARDED_BY(mu_)
  bool refresh_now_ = false;                                   // GUARDED_BY(mu_)
  std::shared_ptr<const Snapshot> snapshot_ = std::make_shared<Snapshot>();  // GUARDED_BY(mu_)
  std::string error_ = "not refreshed yet";                    // GUARDED_BY(mu_)
  std::unordered_map<std::string, std::string> disables_;      // GUARDED_BY(mu_): ours
  std::thread refresher_;
};

}  // namespace

Result<std::shared_ptr<BreakerStore>> OpenRedisBreakers(const FleetLimitsOptions& options) {
  auto redis = ConnectStore(options);
  if (!redis.ok()) return redis.status();
  auto store = std::make_shared<RedisBreakers>(options, std::move(*redis));
  store->Start();
  return std::shared_ptr<BreakerStore>(std::move(store));
}

}  // namespace bastion
