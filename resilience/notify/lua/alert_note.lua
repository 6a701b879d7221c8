-- One more failure of a group: opens the group's alert if none is open (its first flush due
-- after group_wait), else counts it, keeps it as an example while there are fewer than
-- `max_examples`, and raises the alert's severity to the worst seen. What the next flush must
-- tell (Alertmanager's "the group changed") is counted in `news`: the alert itself, an
-- operation failing in the group for the first time (up to `max_members` of them), a rise of
-- severity. More failures of what was already told are only counted.
--
-- KEYS: the alert's hash, the index of open alerts (alert id -> group).
-- ARGV: now override (empty: Redis TIME), id for a new alert, group, rule, severity, error type,
-- component, the failure as a JSON example, group_wait_us, max_examples, the failure's
-- operation, max_members.
-- Returns {opened (1/0), alert id, next flush (µs)}.

local RANK = { low = 0, medium = 1, high = 2, critical = 3 }
local now = server_now_us(ARGV[1])
local new_id, group, rule, severity = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local example, group_wait_us, max_examples = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local operation, max_members = ARGV[11], tonumber(ARGV[12])

local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'resolved' then
  local flush_at = now + group_wait_us
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'alert_id', new_id, 'group', group, 'rule', rule,
    'status', 'firing', 'severity', severity, 'error_type', ARGV[6], 'component', ARGV[7],
    'opened_us', now, 'last_failure_us', now, 'count', 1, 'news', 1, 'sent_level', -1,
    'last_sent_us', 0, 'next_flush_us', flush_at, 'examples', '[' .. example .. ']',
    'members', cjson.encode({ operation }))
  redis.call('HSET', KEYS[2], new_id, group)
  return { 1, new_id, flush_at }
end

local v = redis.call('HMGET', KEYS[1], 'alert_id', 'severity', 'examples', 'next_flush_us',
  'members')
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last_failure_us', now)
if (RANK[severity] or 0) > (RANK[v[2]] or 0) then
  redis.call('HSET', KEYS[1], 'severity', severity)
  redis.call('HINCRBY', KEYS[1], 'news', 1)
end
local members = cjson.decode(v[5])
if #members < max_members then
  local known = false
  for _, member in ipairs(members) do
    if member == operation then known = true break end
  end
  if not known then
    table.insert(members, operation)
    redis.call('HSET', KEYS[1], 'members', cjson.encode(members))
    redis.call('HINCRBY', KEYS[1], 'news', 1)
  end
end
local examples = cjson.decode(v[3])
if #examples < max_examples then
  table.insert(examples, cjson.decode(example))
  redis.call('HSET', KEYS[1], 'examples', cjson.encode(examples))
end
return { 0, v[1], tonumber(v[4]) }
