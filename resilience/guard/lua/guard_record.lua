-- Records how one admitted run went, in one round trip: returns its concurrency lease and
-- half-open probe lease, adds the call to the breaker's window (only if the breaker is still in
-- the generation that admitted it) and trips or settles the breaker, pushes the rate limiter
-- past a server's Retry-After, and spends or refills the retry budget.
--
-- ARGV: now override, ticket id, resource count, open-wait spread (uniform in [-1, 1]), each resource's
-- configuration (guard_lib.lua), then each resource's outcome: outcome (ok | fail | ignore |
-- none), duration_us, generation, probe (0/1), push_us, retry_cost, success_refill.
-- Returns {retry_allowed (1/0, 1 when no retry was asked), then per resource: transition}.

local now = server_now_us(ARGV[1])
local ticket = ARGV[2]
local count = tonumber(ARGV[3])
local spread = tonumber(ARGV[4])
local CONFIG_OFFSET = 5
local OUTCOME_FIELDS = 7
local outcome_offset = CONFIG_OFFSET + count * CONFIG_FIELDS

local function outcome_of(i)
  local at = outcome_offset + (i - 1) * OUTCOME_FIELDS
  return {
    outcome = ARGV[at], duration_us = tonumber(ARGV[at + 1]), gen = tonumber(ARGV[at + 2]),
    probe = tonumber(ARGV[at + 3]) == 1, push_us = tonumber(ARGV[at + 4]),
    retry_cost = tonumber(ARGV[at + 5]), success_refill = tonumber(ARGV[at + 6]),
  }
end

local function record_probe(k, c, b, o)
  if b.state ~= HALF_OPEN or b.gen ~= o.gen or redis.call('ZREM', k.probes, ticket) == 0 then
    return ''  -- admitted in an earlier generation, or its lease expired and was reclaimed
  end
  if o.outcome == 'ignore' or o.outcome == 'none' then
    -- The probe told nothing about the API's health: free its slot for another probe.
    b.granted = math.max(b.granted - 1, 0)
    redis.call('HSET', k.breaker, 'granted', b.granted)
    return ''
  end
  if o.outcome == 'fail' then b.probe_failed = b.probe_failed + 1 else b.probe_ok = b.probe_ok + 1 end
  if c.slow_call_us > 0 and o.duration_us >= c.slow_call_us then b.probe_slow = b.probe_slow + 1 end
  -- Resilience4j's rule: the verdict waits for every permitted probe, so each half-open
  -- period lets exactly `permits` calls reach the API.
  if b.probe_ok + b.probe_failed < c.permits then
    redis.call('HSET', k.breaker, 'probe_ok', b.probe_ok, 'probe_failed', b.probe_failed,
      'probe_slow', b.probe_slow)
    return ''
  end
  local failure_rate = b.probe_failed * 100 / c.permits
  local slow_rate = b.probe_slow * 100 / c.permits
  if failure_rate >= c.failure_threshold then
    return breaker_open(k, b, c, now, spread, 'half-open probes failed', failure_rate)
  end
  if c.slow_threshold > 0 and slow_rate >= c.slow_threshold then
    return breaker_open(k, b, c, now, spread, 'half-open probes slow', slow_rate)
  end
  b.opens = 0
  return breaker_transition(k, b, CLOSED, now, 0, 'half-open probes succeeded', failure_rate)
end

local function record_call(k, c, b, o)
  if b.state ~= CLOSED or b.gen ~= o.gen or o.outcome == 'ignore' then return '' end
  local slow = c.slow_call_us > 0 and o.duration_us >= c.slow_call_us
  return window_record(k, c, b, now, spread, 1, o.outcome == 'fail' and 1 or 0, slow and 1 or 0)
end

-- Retries are paid for all-or-nothing across the resources that keep a budget.
local retry_allowed = 1
local budgets = {}
for i = 1, count do
  local c, o = resource_config(CONFIG_OFFSET, i), outcome_of(i)
  if c.budget_on and o.retry_cost > 0 then
    local k = resource_keys(i)
    local tokens = budget_tokens(k.budget, c, now)
    if tokens < o.retry_cost then retry_allowed = 0 end
    budgets[i] = tokens
  end
end

local reply = { retry_allowed }
for i = 1, count do
  local k, c, o = resource_keys(i), resource_config(CONFIG_OFFSET, i), outcome_of(i)
  local transition = ''
  redis.call('ZREM', k.leases, ticket)
  if c.breaker_on and (o.outcome ~= 'none' or o.probe) then
    local b = breaker_read(k.breaker)
    if o.probe then
      transition = record_probe(k, c, b, o)
    else
      transition = record_call(k, c, b, o)
    end
  end
  if c.rate_on and o.push_us > 0 then gcra_push(k.rate, c, now, now + o.push_us) end
  if c.budget_on then
    if budgets[i] ~= nil and retry_allowed == 1 then
      budget_store(k.budget, budgets[i] - o.retry_cost, now)
    elseif o.outcome == 'ok' and o.success_refill > 0 then
      local tokens = budget_tokens(k.budget, c, now)
      budget_store(k.budget, math.min(c.budget_capacity, tokens + o.success_refill), now)
    end
  end
  table.insert(reply, transition)
end
return reply
