// The Lua scripts of RedisBudgets (docs/fleet.md#budgets). Each runs
// atomically on the server, so what it checks and what it writes cannot be
// interleaved with another worker's call.
//
// Every script starts with the same arguments:
//   ARGV[1] the key prefix "{bastion}"   ARGV[2] this worker
//   ARGV[3] now, ns (windows, alert times)
//   ARGV[4] the worker TTL, ms: > 0 renews this worker's liveness, and
//           then, unless 0, the script reclaims the holds of at most one
//           dead worker (a bounded number of them). The scripts of calls
//           pass 0 and stay short; the background reports do the rest.
//
// A (budget, key, window) is described by an "entry" of arguments:
//   sk  its state hash: s spent, r reserved, l leased, h held under leases
//       (rolling windows also keep sk..':z', settled amounts by date)
//   ak  its alert hash (per budget and key, across windows): f<t> when
//       threshold t last fired, w<t> in which window, tk<t>/tt<t> the
//       throttle bucket's tokens and when they were counted
//   px  ms to keep sk after now (0: per-run, kept)
//   adm the admissible limit (-1: soft)     limit the full limit
//   rs  a rolling window's start ('' otherwise)   ws the window's start
//   apx ms to keep ak (0: kept)   minp the lowest threshold's percent
//   n, then n thresholds: percent, cooldown ns, throttle count (0: none),
//       throttle period ns
//
// Numbers are Lua doubles: exact up to 2^53 nano-USD (about $9 million) per
// key and window; writes use HINCRBY, so stored totals stay exact integers.
#ifndef BASTION_FLEET_BUDGET_SCRIPTS_H_
#define BASTION_FLEET_BUDGET_SCRIPTS_H_

namespace bastion::fleet {

inline constexpr const char* kBudgetPrelude = R"lua(
local P, W, NOWS, TTL = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local NOW = tonumber(NOWS)
local function I(x) return string.format('%d', x) end
-- The server's clock in ms (liveness), read once and only when needed.
local MS = nil
local function now_ms()
  if not MS then
    local tm = redis.call('TIME')
    MS = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
  end
  return MS
end
local WORKERS = P .. ':workers'
local function holds(w) return P .. ':w:' .. w .. ':h' end
local function leases(w) return P .. ':w:' .. w .. ':l' end
local function alive(w) return P .. ':w:' .. w .. ':alive' end
local function lease_of(v)
  local l, h = string.match(v, '^(%-?%d+) (%-?%d+)$')
  return tonumber(l), tonumber(h)
end

local function entry(i)
  local e = {sk = ARGV[i], ak = ARGV[i + 1], px = tonumber(ARGV[i + 2]),
             adm = tonumber(ARGV[i + 3]), limit = tonumber(ARGV[i + 4]), rs = ARGV[i + 5],
             ws = ARGV[i + 6], apx = tonumber(ARGV[i + 7]), minp = tonumber(ARGV[i + 8]),
             n = tonumber(ARGV[i + 9]), ti = i + 10}
  return e, i + 10 + 4 * e.n
end

-- The thresholds of an entry, read from its arguments when first needed:
-- most calls stay below the lowest (minp) and never read them.
local function thresholds(e)
  if not e.th then
    e.th = {}
    local i = e.ti
    for t = 1, e.n do
      e.th[t] = {p = tonumber(ARGV[i]), cd = tonumber(ARGV[i + 1]), tc = tonumber(ARGV[i + 2]),
                 tp = tonumber(ARGV[i + 3])}
      i = i + 4
    end
  end
  return e.th
end

local function reached(e, committed)
  return e.n > 0 and committed * 100 >= e.limit * e.minp
end

local function keep(e)
  if e.px > 0 then
    redis.call('PEXPIRE', e.sk, e.px)
    if e.rs ~= '' then redis.call('PEXPIRE', e.sk .. ':z', e.px) end
  end
end

-- The state of an entry, a rolling window's old amounts dropped first.
-- `new`: the key does not exist yet (every write sets 'r').
local function load(e)
  local v = redis.call('HMGET', e.sk, 's', 'r', 'l', 'h')
  local st = {s = tonumber(v[1] or '0'), r = tonumber(v[2] or '0'),
              l = tonumber(v[3] or '0'), h = tonumber(v[4] or '0'), new = not v[2]}
  if e.rs ~= '' then
    local z = e.sk .. ':z'
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. e.rs)
    if #old > 0 then
      local sum = 0
      for _, m in ipairs(old) do sum = sum + tonumber(string.match(m, ':(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. e.rs)
      redis.call('HINCRBY', e.sk, 's', I(-sum))
      st.s = st.s - sum
    end
  end
  return st
end

-- Spend dated `at` (a rolling window keeps it by date).
local function spend(e, st, amount, at, tag)
  if amount == 0 then return end
  if e.rs ~= '' then
    if tonumber(at) < tonumber(e.rs) then return end
    redis.call('ZADD', e.sk .. ':z', at, tag .. ':' .. I(amount))
  end
  redis.call('HINCRBY', e.sk, 's', I(amount))
  st.s = st.s + amount
end

-- Thresholds reached at `committed` that may fire now: once per window, or
-- once per cooldown. Returns their indexes (0-based).
local function alerts(e, committed)
  local fired = {}
  if not reached(e, committed) then return fired end
  for t, th in ipairs(thresholds(e)) do
    if committed * 100 >= e.limit * th.p then
      local v = redis.call('HMGET', e.ak, 'f' .. t, 'w' .. t)
      local ok = not v[1]
      if not ok then
        if th.cd > 0 then ok = NOW - tonumber(v[1]) >= th.cd else ok = v[2] ~= e.ws end
      end
      if ok then
        redis.call('HSET', e.ak, 'f' .. t, NOWS, 'w' .. t, e.ws)
        fired[#fired + 1] = t - 1
      end
    end
  end
  if #fired > 0 and e.apx > 0 then redis.call('PEXPIRE', e.ak, e.apx) end
  return fired
end

-- This worker's report on an entry: `d` spent (under its lease or while
-- degraded) since the last report, `c` of the lease used up by it, `dh` the
-- change of what it holds open under the lease, `r` given back. Every part
-- is an amount to add, so reports and grants racing each other commute.
local function report(e, st, d, c, dh, r)
  if d == 0 and c == 0 and dh == 0 and r == 0 then return end
  local v = redis.call('HGET', leases(W), e.sk)
  if d > 0 then spend(e, st, d, NOWS, 'd' .. redis.call('INCR', P .. ':seq')) end
  if v then  -- none: no lease, or reclaimed when this worker was taken for dead
    local L, H = lease_of(v)
    L = L - c - r
    H = H + dh
    if c + r ~= 0 then
      redis.call('HINCRBY', e.sk, 'l', I(-(c + r)))
      st.l = st.l - c - r
    end
    if dh ~= 0 then
      redis.call('HINCRBY', e.sk, 'h', I(dh))
      st.h = st.h + dh
    end
    if L <= 0 and H <= 0 then
      redis.call('HDEL', leases(W), e.sk)
    else
      redis.call('HSET', leases(W), e.sk, I(L) .. ' ' .. I(H))
    end
  end
  keep(e)
end

-- A dead worker's open reservation: charged at its estimate.
local function charge_hold(id, rec)
  local h = cmsgpack.unpack(rec)
  local est = tonumber(h[1])
  for j = 3, #h, 2 do
    local sk = h[j]
    if redis.call('EXISTS', sk) == 1 then
      redis.call('HINCRBY', sk, 'r', I(-est))
      if h[j + 1] == '' or tonumber(h[2]) >= tonumber(h[j + 1]) then
        redis.call('HINCRBY', sk, 's', I(est))
        if h[j + 1] ~= '' then
          redis.call('ZADD', sk .. ':z', h[2], 'x' .. id .. ':' .. j .. ':' .. I(est))
        end
      end
    end
  end
end

-- A dead worker's lease: what it held at its last report is charged, the
-- rest goes back.
local function charge_lease(sk, v)
  local L, H = lease_of(v)
  if redis.call('EXISTS', sk) == 1 then
    redis.call('HINCRBY', sk, 'l', I(-L))
    redis.call('HINCRBY', sk, 'h', I(-H))
    if H > 0 then redis.call('HINCRBY', sk, 's', I(H)) end  -- never a negative charge
  end
end

-- Charges and removes a batch of a dead worker's holds or leases; returns
-- how many.
local function drain(key, charge)
  local items = redis.call('HSCAN', key, 0, 'COUNT', 64)[2]
  for i = 1, #items, 2 do
    charge(items[i], items[i + 1])
    redis.call('HDEL', key, items[i])
  end
  return #items / 2
end

local function reclaim()
  local w = redis.call('ZRANGEBYSCORE', WORKERS, '-inf', now_ms(), 'LIMIT', 0, 1)[1]
  if not w then return end
  local left = redis.call('PTTL', alive(w))
  if left > 0 then
    redis.call('ZADD', WORKERS, now_ms() + left, w)
    return
  end
  local n = drain(holds(w), charge_hold) + drain(leases(w), charge_lease)
  if n > 0 then redis.call('HINCRBY', P .. ':reclaimed', 'items', n) end
  -- HSCAN may return an empty batch while entries remain: done only when none are left.
  if redis.call('HLEN', holds(w)) + redis.call('HLEN', leases(w)) == 0 then
    redis.call('ZREM', WORKERS, w)
  end
end

if TTL > 0 then
  redis.call('SET', alive(W), '1', 'PX', TTL)
  redis.call('ZADD', WORKERS, now_ms() + TTL, W)
end
if TTL ~= 0 then reclaim() end
)lua";

// ARGV[5] estimate, ARGV[6] number of entries, then per entry: the entry,
// d, c, dh, r (the lease report: r gives back a lease too small for the
// call), lease_min (0: no lease wanted), lease_cap.
// Reply: {0, entry (1-based), 1 = over budget | 2 = throttled, spent,
// reserved, leased, threshold} or {1, hold id, {committed, granted,
// fired...} per entry}.
inline constexpr const char* kReserveScript = R"lua(
local est = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local i = 7
local es = {}
for k = 1, n do
  local e
  e, i = entry(i)
  e.st = load(e)
  report(e, e.st, tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]),
         tonumber(ARGV[i + 3]))
  e.lmin, e.lcap = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  i = i + 6
  es[k] = e
end
for k, e in ipairs(es) do
  local st = e.st
  if e.adm >= 0 and st.s + st.r + st.l + est > e.adm then
    return {0, k, 1, st.s, st.r, st.l, 0}
  end
  e.c = st.s + st.r + st.h + est
  for t, th in ipairs(reached(e, e.c) and thresholds(e) or {}) do
    if th.tc > 0 and e.c * 100 >= e.limit * th.p then
      local v = redis.call('HMGET', e.ak, 'tk' .. t, 'tt' .. t)
      local tokens = th.tc
      if v[1] then
        tokens = math.min(th.tc, tonumber(v[1]) + (NOW - tonumber(v[2])) * th.tc / th.tp)
      end
      if tokens < 1 then return {0, k, 2, st.s, st.r, st.l, t - 1} end
      e.tok = e.tok or {}
      e.tok[t] = tokens - 1
    end
  end
end
local id = redis.call('INCR', P .. ':seq')
local rec = {ARGV[5], NOWS}
local out = {1, id}
local live = nil
for k, e in ipairs(es) do
  redis.call('HINCRBY', e.sk, 'r', ARGV[5])
  e.st.r = e.st.r + est
  if e.tok then
    for t, v in pairs(e.tok) do redis.call('HSET', e.ak, 'tk' .. t, tostring(v), 'tt' .. t, NOWS) end
    if e.apx > 0 then redis.call('PEXPIRE', e.ak, e.apx) end
  end
  local fired = alerts(e, e.c)
  local grant = 0
  if e.lmin > 0 and e.adm >= 0 then
    live = live or math.max(redis.call('ZCOUNT', WORKERS, now_ms(), '+inf'), 1)
    local free = e.adm - e.st.s - e.st.r - e.st.l
    local slice = math.floor(math.min(e.lcap, free / (2 * live)))
    if slice >= e.lmin then
      grant = slice
      redis.call('HINCRBY', e.sk, 'l', I(slice))
      local v = redis.call('HGET', leases(W), e.sk)
      local L, H = 0, 0
      if v then L, H = lease_of(v) end
      redis.call('HSET', leases(W), e.sk, I(L + slice) .. ' ' .. I(H))
    end
  end
  if e.st.new or e.rs ~= '' then keep(e) end
  rec[#rec + 1] = e.sk
  rec[#rec + 1] = e.rs
  local r = {e.c, grant}
  for _, f in ipairs(fired) do r[#r + 1] = f end
  out[#out + 1] = r
end
redis.call('HSET', holds(W), id, cmsgpack.pack(rec))
return out
)lua";

// Settle (ARGV[6] >= 0, the actual cost) or release (ARGV[6] = -1) hold
// ARGV[5]; ARGV[7] entries follow, in the hold's order. Reply: {0} when the
// hold is not outstanding (settled, released, or reclaimed from this worker
// as dead), else {1, {fired...} per entry}.
inline constexpr const char* kFinishScript = R"lua(
local rec = redis.call('HGET', holds(W), ARGV[5])
if not rec then return {0} end
redis.call('HDEL', holds(W), ARGV[5])
local h = cmsgpack.unpack(rec)
local est = tonumber(h[1])
local actual = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local i = 8
local out = {1}
for k = 1, n do
  local e
  e, i = entry(i)
  local fired = {}
  local st = load(e)
  if not st.new then  -- gone: a window ended long ago
    redis.call('HINCRBY', e.sk, 'r', I(-est))
    st.r = st.r - est
    if actual >= 0 then
      spend(e, st, actual, h[2], 'h' .. ARGV[5] .. ':' .. k)
      fired = alerts(e, st.s + st.r + st.h)
    end
    if e.rs ~= '' then keep(e) end  -- a rolling window's keys live on its writes
  end
  out[#out + 1] = fired
end
return out
)lua";

// ARGV[5] entries, each with d, c, dh and r (the report).
// Reply: {{committed, fired...} per entry}.
inline constexpr const char* kSyncScript = R"lua(
local n = tonumber(ARGV[5])
local i = 6
local out = {}
for k = 1, n do
  local e
  e, i = entry(i)
  local d, dh = tonumber(ARGV[i]), tonumber(ARGV[i + 2])
  local st = load(e)
  report(e, st, d, tonumber(ARGV[i + 1]), dh, tonumber(ARGV[i + 3]))
  i = i + 4
  local c = st.s + st.r + st.h
  local r = {c}
  if d > 0 or dh > 0 then
    for _, f in ipairs(alerts(e, c)) do r[#r + 1] = f end
  end
  out[k] = r
end
return out
)lua";

// ARGV[5] one entry. Reply: {spent, reserved, leased, held}.
inline constexpr const char* kUsageScript = R"lua(
local e = entry(5)
local st = load(e)
return {st.s, st.r, st.l, st.h}
)lua";

// Only the prelude: renews this worker, reclaims a dead one.
inline constexpr const char* kBeatScript = R"lua(
return 1
)lua";

// Leaves the fleet: the liveness key goes; a worker with reservations still
// open stays registered, already expired, so another worker's next report
// charges them.
inline constexpr const char* kLeaveScript = R"lua(
redis.call('DEL', alive(W))
if redis.call('HLEN', holds(W)) + redis.call('HLEN', leases(W)) > 0 then
  redis.call('ZADD', WORKERS, now_ms() - 1, W)
else
  redis.call('ZREM', WORKERS, W)
end
return 1
)lua";

}  // namespace bastion::fleet

#endif  // BASTION_FLEET_BUDGET_SCRIPTS_H_
