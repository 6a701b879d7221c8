-- Move one dead letter from an expected status to a new one (compare-and-set), with audit.
-- A new status of 'discarded' removes the entry; the audit record keeps its JSON.
-- A 'replaying' claim older than the stale limit (its replayer died between claim and
-- publish) counts as 'dead' again, so the entry cannot stay stuck; the takeover is audited.
-- KEYS[1] entries hash  KEYS[2] status hash  KEYS[3] index zset  KEYS[4] audit stream
-- KEYS[5] claims hash (id -> claimed at, ms)  KEYS[6] ids zset (id -> 0, for prefix lookups)
-- ARGV[1] id  ARGV[2] expected status  ARGV[3] new status  ARGV[4] actor
-- ARGV[5] audit action  ARGV[6] audit detail (JSON)  ARGV[7] audit stream max length
-- ARGV[8] stale claim limit in ms (0: claims never go stale)
-- Returns {1, new status} on success, {0, current status or 'missing'} otherwise.
local id = ARGV[1]
local current = redis.call('HGET', KEYS[2], id)
if not current then return {0, 'missing'} end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if current ~= ARGV[2] then
  local stale_ms = tonumber(ARGV[8])
  local claimed = tonumber(redis.call('HGET', KEYS[5], id) or '')
  local stale = current == 'replaying' and ARGV[2] == 'dead' and stale_ms > 0
    and claimed ~= nil and now_ms - claimed >= stale_ms
  if not stale then return {0, current} end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', tonumber(ARGV[7]), '*',
    'action', 'reclaim', 'id', id, 'actor', ARGV[4], 'from', current, 'to', 'dead',
    'detail', cjson.encode({claimed_ms = claimed, age_ms = now_ms - claimed}), 'entry', '')
  current = 'dead'
end
local entry = ''
if ARGV[3] == 'discarded' then
  entry = redis.call('HGET', KEYS[1], id) or ''
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[6], id)
else
  redis.call('HSET', KEYS[2], id, ARGV[3])
end
if ARGV[3] == 'replaying' then
  redis.call('HSET', KEYS[5], id, now_ms)
else
  redis.call('HDEL', KEYS[5], id)
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', tonumber(ARGV[7]), '*',
  'action', ARGV[5], 'id', id, 'actor', ARGV[4], 'from', current, 'to', ARGV[3],
  'detail', ARGV[6], 'entry', entry)
return {1, ARGV[3]}
