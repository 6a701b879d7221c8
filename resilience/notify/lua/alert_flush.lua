-- What an alert's scheduled flush does now (Alertmanager's group_interval and repeat_interval,
-- with escalation levels): tell the levels reached what is new in the group (the alert itself,
-- an operation failing in it for the first time, a rise of severity: `news`, counted by
-- alert_note.lua); tell a newly reached level; remind after repeat_interval, with the count so
-- far, while the alert is unacknowledged. An alert is resolved once its group was quiet for
-- resolve_after, everything new was told and it escalated as far as it will (its last level
-- told, or acknowledged): an unacknowledged alert reaches its next level at its delay even when
-- the failures stopped. An acknowledged alert reaches no further level and sends no
-- reminders. Only the flush the alert expects acts (a stale or duplicate one returns 'stale'),
-- so exactly one chain of flushes runs per alert.
--
-- KEYS: the alert's hash, the index of open alerts.
-- ARGV: now override, the flush time this call was scheduled for (µs), group_interval_us,
-- repeat_interval_us, resolve_after_us, level count, then each level's delay after opening (µs).
-- Returns {action, first level, last level, next flush (µs, 0: none), alert id, status,
-- severity, count, examples (JSON), opened (µs)} with action one of notify, repeat, resolve,
-- none, wait (early: try again at the same time), stale.

local now = server_now_us(ARGV[1])
local expected, group_interval = tonumber(ARGV[2]), tonumber(ARGV[3])
local repeat_interval, resolve_after = tonumber(ARGV[4]), tonumber(ARGV[5])
local n_levels = tonumber(ARGV[6])

local v = redis.call('HMGET', KEYS[1], 'status', 'opened_us', 'last_failure_us', 'count',
  'news', 'sent_level', 'last_sent_us', 'next_flush_us', 'alert_id', 'severity', 'examples')
local status = v[1]
if not status or status == 'resolved' or tonumber(v[8]) ~= expected then
  return { 'stale', 0, -1, 0 }
end
-- Early (flushes are scheduled at most a group_interval ahead, so a clock jump is seen within
-- one): nothing yet, the same flush again.
if now < expected then
  return { 'wait', 0, -1, expected, v[9] }
end
local opened, last_failure, count = tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
local news, sent_level, last_sent = tonumber(v[5]), tonumber(v[6]), tonumber(v[7])
local acked = status == 'acknowledged'
local function after(level) return tonumber(ARGV[7 + level]) end -- level counts from 0

local reached = -1
for level = 0, n_levels - 1 do
  if opened + after(level) <= now then reached = level end
end
if acked and reached > sent_level then reached = sent_level end

local function reply(action, first, last, next_flush)
  return { action, first, last, next_flush, v[9], status, v[10], count, v[11], opened }
end

-- (Acknowledged before any level was told, there is nobody to tell what is new.)
local told = news == 0 or (acked and sent_level < 0)
local escalated = acked or sent_level >= n_levels - 1
if now - last_failure >= resolve_after and told and escalated then
  redis.call('HSET', KEYS[1], 'status', 'resolved', 'next_flush_us', 0)
  redis.call('HDEL', KEYS[2], v[9])
  return reply('resolve', 0, sent_level, 0)
end

local action, first, last = 'none', 0, -1
if reached >= 0 then
  if news > 0 then
    action, first, last = 'notify', 0, reached
  elseif reached > sent_level then
    action, first, last = 'notify', sent_level + 1, reached
  elseif not acked and now - last_sent >= repeat_interval then
    action, first, last = 'repeat', 0, reached
  end
  if action ~= 'none' then
    redis.call('HSET', KEYS[1], 'news', 0, 'sent_level', math.max(sent_level, reached),
      'last_sent_us', now)
  end
end

-- Next: a group_interval from now, or the next level's time if that comes first.
local next_flush = now + group_interval
if not acked and reached + 1 < n_levels then
  next_flush = math.min(next_flush, opened + after(reached + 1))
end
redis.call('HSET', KEYS[1], 'next_flush_us', next_flush)
return reply(action, first, last, next_flush)
