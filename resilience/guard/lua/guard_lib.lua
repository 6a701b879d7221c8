-- Shared by guard_admit.lua, guard_record.lua, guard_settle.lua and guard_admin.lua: it is
-- prepended to each at load time, after clock_lib.lua (Lua scripts cannot call each other). Every decision uses Redis server time, so
-- workers whose clocks disagree still agree on the breaker and the limiter.
--
-- Per resource the caller passes KEYS_PER_RESOURCE keys, all under one hash tag:
--   breaker (hash), window (hash of per-second buckets), probes (zset of half-open leases),
--   events (stream), rate (GCRA theoretical arrival time, integer microseconds),
--   leases (zset of concurrency leases), budget (hash: retry budget tokens),
--   stats (hash: admitted and refused:<reason> counters)
-- and CONFIG_FIELDS configuration arguments (see resilience/guard/resources.py, config_argv).

local KEYS_PER_RESOURCE = 8
local CONFIG_FIELDS = 2
local EVENTS_MAXLEN = 1000

local CLOSED, OPEN, HALF_OPEN = 'closed', 'open', 'half_open'
local FORCED_OPEN, DISABLED = 'forced_open', 'disabled'

local function resource_keys(index)
  local base = (index - 1) * KEYS_PER_RESOURCE
  return {
    breaker = KEYS[base + 1], window = KEYS[base + 2], probes = KEYS[base + 3],
    events = KEYS[base + 4], rate = KEYS[base + 5], leases = KEYS[base + 6],
    budget = KEYS[base + 7], stats = KEYS[base + 8],
  }
end

-- Configuration of resource `index`, read from ARGV starting at `offset`: its name, then its
-- numbers in one JSON array (one argument instead of 22 keeps the call cheap to send, and
-- cjson decodes it faster than Lua parses the numbers). Decoded once per call.
local parsed_configs = {}
local function resource_config(offset, index)
  local at = offset + (index - 1) * CONFIG_FIELDS
  if parsed_configs[at] then return parsed_configs[at] end
  local v = cjson.decode(ARGV[at + 1])
  local c = {
    name = ARGV[at],
    breaker_on = v[1] == 1, window_s = v[2], minimum_calls = v[3],
    failure_threshold = v[4], slow_threshold = v[5], slow_call_us = v[6],
    wait_us = v[7], wait_multiplier = v[8], max_wait_us = v[9],
    permits = v[10], probe_lease_us = v[11],
    rate_on = v[12] == 1, interval_us = v[13], burst = v[14], cost = v[15],
    concurrency_on = v[16] == 1, concurrency_limit = v[17], lease_us = v[18],
    budget_on = v[19] == 1, budget_capacity = v[20], budget_refill_per_s = v[21],
    wait_jitter = v[22],
  }
  parsed_configs[at] = c
  return c
end

local function num(value, default)
  local parsed = tonumber(value)
  if parsed == nil then return default end
  return parsed
end

-- Breaker state ------------------------------------------------------------------------------

local function breaker_read(key)
  local v = redis.call('HMGET', key, 'state', 'gen', 'open_until', 'opens', 'granted',
    'probe_ok', 'probe_failed', 'probe_slow')
  return {
    state = v[1] or CLOSED, gen = num(v[2], 0), open_until = num(v[3], 0),
    opens = num(v[4], 0), granted = num(v[5], 0), probe_ok = num(v[6], 0),
    probe_failed = num(v[7], 0), probe_slow = num(v[8], 0),
  }
end

-- Moves the breaker to `to`, bumping the generation so results of calls admitted before the
-- transition cannot decide the new state; writes exactly one event.
local function breaker_transition(k, b, to, now, open_until, reason, rate)
  local from = b.state
  b.state = to
  b.gen = b.gen + 1
  b.open_until = open_until
  b.granted, b.probe_ok, b.probe_failed, b.probe_slow = 0, 0, 0, 0
  redis.call('HSET', k.breaker, 'state', to, 'gen', b.gen, 'open_until', open_until,
    'opens', b.opens, 'granted', 0, 'probe_ok', 0, 'probe_failed', 0, 'probe_slow', 0,
    'changed_at', now)
  redis.call('DEL', k.window, k.probes)
  redis.call('XADD', k.events, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'from', from, 'to', to,
    'at_us', now, 'gen', b.gen, 'reason', reason, 'rate', rate or '')
  return from .. '>' .. to
end

-- OPEN for wait * multiplier^(consecutive openings - 1), capped, times 1 + spread * jitter
-- (spread: the caller's uniform random number in [-1, 1]).
local function breaker_open(k, b, c, now, spread, reason, rate)
  b.opens = b.opens + 1
  local wait = c.wait_us * (c.wait_multiplier ^ (b.opens - 1))
  if c.max_wait_us > 0 and wait > c.max_wait_us then wait = c.max_wait_us end
  wait = math.floor(wait * (1 + spread * c.wait_jitter))
  return breaker_transition(k, b, OPEN, now, now + wait, reason, rate)
end

-- Window of per-second buckets: fields c<i>, f<i>, s<i> for bucket i = second % window_s,
-- running totals calls/fails/slow, and head = the newest second recorded. The key expires two
-- windows after head last moved.

-- Moves head to `sec` (if later), dropping the buckets of the seconds that left the window.
-- Returns head and the running totals of failed and slow calls afterwards.
local function window_advance(key, sec, window_s)
  local v = redis.call('HMGET', key, 'head', 'fails', 'slow')
  local head, fails, slows = num(v[1], -1), num(v[2], 0), num(v[3], 0)
  if head < 0 or sec - head >= window_s then
    redis.call('DEL', key)
    redis.call('HSET', key, 'head', sec, 'calls', 0, 'fails', 0, 'slow', 0)
    redis.call('PEXPIRE', key, window_s * 2000)
    return sec, 0, 0
  end
  if sec <= head then return head, fails, slows end
  -- Chunked: unpack() takes at most a few thousand values, and a gap may span 3 x 3600 fields.
  local dc, df, ds = 0, 0, 0
  local s = head + 1
  while s <= sec do
    local fields = {}
    local last = math.min(sec, s + 299)
    for t = s, last do
      local i = t % window_s
      table.insert(fields, 'c' .. i)
      table.insert(fields, 'f' .. i)
      table.insert(fields, 's' .. i)
    end
    local old = redis.call('HMGET', key, unpack(fields))
    for j = 1, #old, 3 do
      dc = dc + num(old[j], 0)
      df = df + num(old[j + 1], 0)
      ds = ds + num(old[j + 2], 0)
    end
    redis.call('HDEL', key, unpack(fields))
    s = last + 1
  end
  redis.call('HINCRBY', key, 'calls', 0 - dc)
  redis.call('HINCRBY', key, 'fails', 0 - df)
  redis.call('HINCRBY', key, 'slow', 0 - ds)
  redis.call('HSET', key, 'head', sec)
  redis.call('PEXPIRE', key, window_s * 2000)
  return sec, fails - df, slows - ds
end

-- Adds `calls` calls, `fails` of them failed and `slows` slow, to the bucket of `sec` (or of
-- head, if a late record's second is older); returns the window's totals.
local function window_add(key, sec, window_s, calls, fails, slows)
  local head, total_fails, total_slow = window_advance(key, sec, window_s)
  local i = head % window_s
  redis.call('HINCRBY', key, 'c' .. i, calls)
  local total_calls = redis.call('HINCRBY', key, 'calls', calls)
  if fails > 0 then
    redis.call('HINCRBY', key, 'f' .. i, fails)
    total_fails = redis.call('HINCRBY', key, 'fails', fails)
  end
  if slows > 0 then
    redis.call('HINCRBY', key, 's' .. i, slows)
    total_slow = redis.call('HINCRBY', key, 'slow', slows)
  end
  return total_calls, total_fails, total_slow
end

-- Half-open probe leases: a lease not returned by its expiry (the worker died) frees its slot.
local function probes_reclaim(k, b, now)
  local expired = redis.call('ZRANGEBYSCORE', k.probes, '-inf', now)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', k.probes, '-inf', now)
    b.granted = math.max(b.granted - #expired, 0)
    redis.call('HSET', k.breaker, 'granted', b.granted)
  end
  return #expired
end

-- GCRA ---------------------------------------------------------------------------------------

-- Admits `cost` units if the theoretical arrival time stays within the burst tolerance.
-- Returns allowed, the new TAT (when allowed) or the wait in microseconds, and remaining.
local function gcra_check(key, c, now)
  local tat = math.max(num(redis.call('GET', key), now), now)
  local new_tat = tat + c.interval_us * c.cost
  local limit = c.interval_us * (c.burst + 1)
  if new_tat - now > limit then
    local remaining = math.floor((limit - (tat - now)) / c.interval_us)
    return false, new_tat - now - limit, math.max(remaining, 0)
  end
  return true, new_tat, math.floor((limit - (new_tat - now)) / c.interval_us)
end

-- Like gcra_check, for up to `want` runs at once (a permit lease): admits n = the most runs,
-- 1 <= n <= want, that fit. Returns allowed, the TAT to charge from (when allowed) or the
-- wait in microseconds for one run, remaining after one run, and n (0 when refused).
local function gcra_take(key, c, now, want)
  local allowed, value, remaining = gcra_check(key, c, now)
  if not allowed then return false, value, remaining, 0 end
  local per_run = c.interval_us * c.cost
  local tat = value - per_run
  local fits = math.floor((c.interval_us * (c.burst + 1) - (tat - now)) / per_run)
  return true, tat, remaining, math.max(math.min(fits, want), 1)
end

-- The TAT is kept until at least 1 ms past itself: Redis expires keys by a millisecond clock
-- read when the script started, which can be up to 1 ms behind TIME, and a TAT that expired
-- early would let the next admission start from `now` instead of it.
local function gcra_keep_ms(tat, now)
  return math.floor((tat - now) / 1000) + 2
end

local function gcra_commit(key, new_tat, now)
  redis.call('SET', key, string.format('%d', new_tat), 'PX', gcra_keep_ms(new_tat, now))
end

-- Moves the next allowed time to at least `until_us` for every worker (a server's 429).
local function gcra_push(key, c, now, until_us)
  local tat = math.max(num(redis.call('GET', key), now), now)
  local pushed = until_us + c.interval_us * c.burst
  if pushed > tat then
    redis.call('SET', key, string.format('%d', pushed), 'PX', gcra_keep_ms(pushed, now))
  end
end

-- Retry budget -------------------------------------------------------------------------------

-- Tokens refill at refill_per_s (and on successes); a retry spends `cost` if there are enough.
local function budget_tokens(key, c, now)
  local v = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = num(v[1], c.budget_capacity)
  local at = num(v[2], now)
  if now > at then
    tokens = math.min(c.budget_capacity, tokens + (now - at) * c.budget_refill_per_s / 1000000)
  end
  return tokens
end

local function budget_store(key, tokens, now)
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', now)
end

-- Outcomes in CLOSED -------------------------------------------------------------------------

-- Adds calls to the window and trips the breaker if the window crossed a threshold (only once
-- minimum_calls were seen). Returns the transition, or ''.
local function window_record(k, c, b, now, spread, calls, fails, slows)
  local total, failed, slow = window_add(k.window, math.floor(now / 1000000), c.window_s,
    calls, fails, slows)
  if total < c.minimum_calls then return '' end
  local failure_rate = failed * 100 / total
  if failure_rate >= c.failure_threshold then
    return breaker_open(k, b, c, now, spread, 'failure rate', failure_rate)
  end
  local slow_rate = slow * 100 / total
  if c.slow_threshold > 0 and slow_rate >= c.slow_threshold then
    return breaker_open(k, b, c, now, spread, 'slow call rate', slow_rate)
  end
  return ''
end

-- Successful runs a worker recorded late (resilience/guard/settlement.py). After the configurations,
-- each resource has: its counts ('' or JSON [budget refill, [[generation, calls, slow calls],
-- ...]]), the number of its tickets, then the tickets (concurrency leases to give back).
-- Returns the counts, the tickets and the offset of the next resource's.
local function late_args(offset)
  local counts, n = ARGV[offset], tonumber(ARGV[offset + 1])
  local tickets = {}
  for j = 1, n do tickets[j] = ARGV[offset + 1 + j] end
  return counts, tickets, offset + 2 + n
end

-- The leases come back; the counts go to the breaker's window (only those admitted in the
-- breaker's current generation, and only while it is CLOSED) and refill the retry budget.
-- `b` is the breaker as read by the caller (nil when the breaker is off). Returns the breaker
-- transition they caused, or ''.
local function settle(k, c, b, counts, tickets, now, spread)
  if c.concurrency_on and #tickets > 0 then
    redis.call('ZREM', k.leases, unpack(tickets))
  end
  if counts == '' then return '' end
  local late = cjson.decode(counts)
  local transition = ''
  if b ~= nil then
    for _, group in ipairs(late[2]) do
      if transition == '' and b.state == CLOSED and b.gen == group[1] then
        transition = window_record(k, c, b, now, spread, group[2], 0, group[3])
      end
    end
  end
  if c.budget_on and late[1] > 0 then
    local tokens = budget_tokens(k.budget, c, now)
    budget_store(k.budget, math.min(c.budget_capacity, tokens + late[1]), now)
  end
  return transition
end
