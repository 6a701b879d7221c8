-- Move one dead letter from an expected status to a new one (compare-and-set), with audit.
-- A new status of 'discarded' removes the entry; the audit record keeps its JSON.
-- KEYS[1] entries hash  KEYS[2] status hash  KEYS[3] index zset  KEYS[4] audit stream
-- ARGV[1] id  ARGV[2] expected status  ARGV[3] new status  ARGV[4] actor
-- ARGV[5] audit action  ARGV[6] audit detail (JSON)  ARGV[7] audit stream max length
-- Returns {1, new status} on success, {0, current status or 'missing'} otherwise.
local id = ARGV[1]
local current = redis.call('HGET', KEYS[2], id)
if not current then return {0, 'missing'} end
if current ~= ARGV[2] then return {0, current} end
local entry = ''
if ARGV[3] == 'discarded' then
  entry = redis.call('HGET', KEYS[1], id) or ''
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
else
  redis.call('HSET', KEYS[2], id, ARGV[3])
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', tonumber(ARGV[7]), '*',
  'action', ARGV[5], 'id', id, 'actor', ARGV[4], 'from', current, 'to', ARGV[3],
  'detail', ARGV[6], 'entry', entry)
return {1, ARGV[3]}
