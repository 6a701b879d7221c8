-- Admission of one task run to every resource it declares, in one round trip: the circuit
-- breaker (OPEN -> HALF_OPEN once its wait is over; fleet-wide probe leases in HALF_OPEN), the
-- GCRA rate limiter and the concurrency limit. Nothing is taken unless every resource admits.
--
-- Each resource first settles the successes this worker recorded late (guard_lib.lua,
-- settle): their leases come back before the limit is checked, so the worker's next run never
-- waits on its own previous one, and the window counts them before the breaker is asked.
--
-- A permit lease (resilience/guard/resources.py, PermitLeaseConfig) asks for up to `want` runs at
-- once: granted only while every breaker is CLOSED (or off) and no resource has a concurrency
-- limit, and no more than every rate limiter has room for; each limiter is charged for all of
-- them. A half-open probe is always a single run.
--
-- ARGV: now override (empty: Redis TIME), ticket id, resource count, open-wait spread (uniform
-- in [-1, 1]), want (runs asked for, >= 1), each resource's configuration, then each
-- resource's late successes (guard_lib.lua, late_args). Returns {admitted, retry_after_us,
-- refused resource index, reason, now_us, runs granted, then per resource: generation, state,
-- probe (0/1), remaining, transition}.

local now = server_now_us(ARGV[1])
local ticket = ARGV[2]
local count = tonumber(ARGV[3])
local spread = tonumber(ARGV[4])
local granted = math.max(tonumber(ARGV[5]), 1)
local CONFIG_OFFSET = 6
local late_offset = CONFIG_OFFSET + count * CONFIG_FIELDS
local BUSY_RETRY_US = 250000

local refused_index, retry_us, reason = 0, 0, ''
local function refuse(index, wait_us, why)
  wait_us = math.max(math.floor(wait_us), 1000)
  if refused_index == 0 or wait_us > retry_us then
    refused_index, retry_us, reason = index, wait_us, why
  end
end

local plans = {}
local reply_tail = {}
for i = 1, count do
  local k = resource_keys(i)
  local c = resource_config(CONFIG_OFFSET, i)
  local plan = { k = k, c = c, probe = 0, tat = nil, remaining = -1 }
  local gen, state, transition = 0, '', ''
  local b = nil
  if c.breaker_on then b = breaker_read(k.breaker) end
  local counts, tickets
  counts, tickets, late_offset = late_args(late_offset)
  transition = settle(k, c, b, counts, tickets, now, spread)
  if b ~= nil then
    if b.state == OPEN and now >= b.open_until then
      transition = breaker_transition(k, b, HALF_OPEN, now, 0, 'wait in open elapsed', nil)
    end
    gen, state = b.gen, b.state
    plan.breaker = b
    if b.state == OPEN then
      refuse(i, b.open_until - now, 'breaker open')
    elseif b.state == FORCED_OPEN then
      refuse(i, c.wait_us, 'breaker forced open')
    elseif b.state == HALF_OPEN then
      granted = 1
      probes_reclaim(k, b, now)
      if b.granted < c.permits then
        plan.probe = 1
      else
        local first = redis.call('ZRANGE', k.probes, 0, 0, 'WITHSCORES')
        local wait = BUSY_RETRY_US * 4
        if #first == 2 then wait = math.min(tonumber(first[2]) - now, wait) end
        refuse(i, wait, 'breaker half-open: probes in flight')
      end
    end
  end
  if c.rate_on then
    local allowed, value, remaining, fits = gcra_take(k.rate, c, now, granted)
    plan.remaining = remaining
    if allowed then
      plan.tat, granted = value, math.min(granted, fits)
    else
      refuse(i, value, 'rate limited')
    end
  end
  if c.concurrency_on then
    granted = 1
    local held = redis.call('ZCARD', k.leases)
    if held >= c.concurrency_limit then
      -- Leases of crashed workers are reclaimed only when they would refuse someone.
      held = held - redis.call('ZREMRANGEBYSCORE', k.leases, '-inf', now)
    end
    if held >= c.concurrency_limit then
      local first = redis.call('ZRANGE', k.leases, 0, 0, 'WITHSCORES')
      refuse(i, math.min(tonumber(first[2]) - now, BUSY_RETRY_US), 'concurrency limit')
    end
  end
  plans[i] = plan
  local n = #reply_tail
  reply_tail[n + 1], reply_tail[n + 2], reply_tail[n + 3] = gen, state, plan.probe
  reply_tail[n + 4], reply_tail[n + 5] = plan.remaining, transition
  plan.remaining_at = n + 4
end

if refused_index == 0 then
  for i = 1, count do
    local plan = plans[i]
    local k, c = plan.k, plan.c
    if plan.probe == 1 then
      redis.call('ZADD', k.probes, now + c.probe_lease_us, ticket)
      redis.call('HSET', k.breaker, 'granted', plan.breaker.granted + 1)
    end
    if plan.tat then
      local new_tat = plan.tat + c.interval_us * c.cost * granted
      gcra_commit(k.rate, new_tat, now)
      reply_tail[plan.remaining_at] =
        math.floor((c.interval_us * (c.burst + 1) - (new_tat - now)) / c.interval_us)
    end
    if c.concurrency_on then
      redis.call('ZADD', k.leases, now + c.lease_us, ticket)
    end
    redis.call('HINCRBY', k.stats, 'admitted', granted)
  end
else
  redis.call('HINCRBY', plans[refused_index].k.stats, 'refused:' .. reason, 1)
end

if refused_index ~= 0 then granted = 0 end
local reply = { refused_index == 0 and 1 or 0, retry_us, refused_index, reason, now, granted }
for _, v in ipairs(reply_tail) do table.insert(reply, v) end
return reply
