// Token buckets in exact integer arithmetic: one token is worth `period_ns`
// units of credit, so a limit of N per period refills exactly N units per
// nanosecond and a full bucket holds N * period_ns units. No floating point,
// no drift, however often or rarely a bucket is used.
#include "bastion/permissions.h"  // RateLimiter

#include <algorithm>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace bastion {
namespace {

constexpr size_t kShardCount = 64;
// count * period_ns must stay below this, so that credit plus a refill never
// overflows 64 bits.
constexpr uint64_t kMaxCapacity = uint64_t{1} << 62;

struct Bucket {
  uint64_t credit = 0;  // tokens * period_ns of the limit below
  int64_t last_ns = 0;  // when credit was last brought up to date
  RateLimit limit;      // the limit it was last used with
};

bool IsValid(const RateLimit& limit) {
  return limit.count > 0 && limit.period_ns > 0 &&
         static_cast<uint64_t>(limit.count) <=
             kMaxCapacity / static_cast<uint64_t>(limit.period_ns);
}

uint64_t Capacity(const RateLimit& limit) {
  return static_cast<uint64_t>(limit.count) * static_cast<uint64_t>(limit.period_ns);
}

// Brings `b` up to `now_ns` under `limit`.
void Refill(Bucket* b, const RateLimit& limit, int64_t now_ns) {
  const uint64_t period = static_cast<uint64_t>(limit.period_ns);
  if (!(b->limit == limit)) {  // the limit changed: keep whole tokens, capped
    const uint64_t tokens = b->credit / static_cast<uint64_t>(b->limit.period_ns);
    b->credit = std::min<uint64_t>(tokens, limit.count) * period;
    b->limit = limit;
  }
  if (now_ns > b->last_ns) {
    // Unsigned subtraction is exact here even if the signed one would overflow.
    const uint64_t elapsed = static_cast<uint64_t>(now_ns) - static_cast<uint64_t>(b->last_ns);
    const uint64_t capacity = Capacity(limit);
    if (elapsed >= period) {
      b->credit = capacity;
    } else {
      b->credit = std::min(capacity, b->credit + elapsed * limit.count);
    }
    b->last_ns = now_ns;
  }
}

}  // namespace

struct alignas(64) RateLimiter::Shard {
  mutable std::mutex mu;
  // Guarded by mu. Node-based: references stay valid across inserts.
  std::unordered_map<std::string, Bucket, internal::StringHash, std::equal_to<>> buckets;

  // The bucket for `key`, created full if new. Requires mu.
  Bucket* Get(std::string_view key, const RateLimit& limit, int64_t now_ns) {
    auto it = buckets.find(key);
    if (it == buckets.end()) {
      it = buckets.emplace(std::string(key), Bucket{Capacity(limit), now_ns, limit}).first;
    }
    return &it->second;
  }
};

namespace {

size_t ShardOf(std::string_view key) {
  const size_t h = internal::StringHash{}(key);
  return (h ^ (h >> 29)) % kShardCount;
}

}  // namespace

RateLimiter::RateLimiter() : shards_(new Shard[kShardCount]) {}
RateLimiter::~RateLimiter() = default;

bool RateLimiter::TryAcquire(std::string_view key, const RateLimit& limit, int64_t now_ns) {
  if (!IsValid(limit)) return false;
  Shard& shard = shards_[ShardOf(key)];
  std::lock_guard<std::mutex> lock(shard.mu);
  Bucket* b = shard.Get(key, limit, now_ns);
  Refill(b, limit, now_ns);
  const uint64_t period = static_cast<uint64_t>(limit.period_ns);
  if (b->credit < period) return false;
  b->credit -= period;
  return true;
}

bool RateLimiter::TryAcquire(const std::vector<RateLimitRef>& refs, int64_t now_ns) {
  if (refs.empty()) return true;
  if (refs.size() == 1) return TryAcquire(refs[0].key, refs[0].limit, now_ns);
  for (const RateLimitRef& ref : refs) {
    if (!IsValid(ref.limit)) return false;
  }
  // Lock every shard involved, in ascending order (no deadlock), so the whole
  // acquisition is one atomic step for other callers.
  std::vector<size_t> order;
  order.reserve(refs.size());
  for (const RateLimitRef& ref : refs) order.push_back(ShardOf(ref.key));
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(order.size());
  for (size_t i : order) locks.emplace_back(shards_[i].mu);

  std::vector<Bucket*> taken;
  taken.reserve(refs.size());
  for (const RateLimitRef& ref : refs) {
    Bucket* b = shards_[ShardOf(ref.key)].Get(ref.key, ref.limit, now_ns);
    Refill(b, ref.limit, now_ns);
    const uint64_t period = static_cast<uint64_t>(ref.limit.period_ns);
    if (b->credit < period) {
      for (Bucket* t : taken) t->credit += static_cast<uint64_t>(t->limit.period_ns);
      return false;
    }
    b->credit -= period;
    taken.push_back(b);
  }
  return true;
}

Result<bool> RateLimiter::Acquire(const std::vector<RateLimitRef>& refs, int64_t now_ns,
                                  size_t* refused) {
  if (TryAcquire(refs, now_ns)) return true;
  if (refused != nullptr) {
    // The first ref that would be refused on its own: what a reason names.
    *refused = 0;
    for (size_t i = 0; i < refs.size(); ++i) {
      if (Available(refs[i].key, refs[i].limit, now_ns) == 0) {
        *refused = i;
        break;
      }
    }
  }
  return false;
}

uint64_t RateLimiter::Available(std::string_view key, const RateLimit& limit,
                                int64_t now_ns) const {
  if (!IsValid(limit)) return 0;
  const Shard& shard = shards_[ShardOf(key)];
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.buckets.find(key);
  if (it == shard.buckets.end()) return limit.count;
  Bucket copy = it->second;
  Refill(&copy, limit, now_ns);
  return copy.credit / static_cast<uint64_t>(limit.period_ns);
}

size_t RateLimiter::Prune(int64_t now_ns) {
  size_t dropped = 0;
  for (size_t i = 0; i < kShardCount; ++i) {
    Shard& shard = shards_[i];
    std::lock_guard<std::mutex> lock(shard.mu);
    for (auto it = shard.buckets.begin(); it != shard.buckets.end();) {
      Bucket copy = it->second;
      Refill(&copy, copy.limit, now_ns);
      if (copy.credit >= Capacity(copy.limit)) {
        it = shard.buckets.erase(it);
        ++dropped;
      } else {
        ++it;
      }
    }
  }
  return dropped;
}

size_t RateLimiter::size() const {
  size_t total = 0;
  for (size_t i = 0; i < kShardCount; ++i) {
    std::lock_guard<std::mutex> lock(shards_[i].mu);
    total += shards_[i].buckets.size();
  }
  return total;
}

}  // namespace bastion
