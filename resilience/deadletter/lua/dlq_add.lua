-- Add (or overwrite) one dead letter and keep the store bounded, atomically.
-- KEYS[1] entries hash (id -> JSON)   KEYS[2] status hash (id -> status)
-- KEYS[3] index zset (id -> dead_at_ms) KEYS[4] audit stream  KEYS[5] evicted counter
-- KEYS[6] replay claims hash  KEYS[7] ids zset (id -> 0, for prefix lookups)
-- ARGV[1] id  ARGV[2] entry JSON  ARGV[3] dead_at_ms  ARGV[4] max entries
-- ARGV[5] retention ms  ARGV[6] audit stream max length  ARGV[7] actor
-- Returns the ids evicted to make room (oldest first, then beyond retention).
local id, entry, dead_at = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_entries, retention_ms, audit_max = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

redis.call('HSET', KEYS[1], id, entry)
redis.call('HSET', KEYS[2], id, 'dead')
redis.call('ZADD', KEYS[3], dead_at, id)
redis.call('ZADD', KEYS[7], 0, id)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', audit_max, '*',
  'action', 'dead_letter', 'id', id, 'actor', ARGV[7])

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local evicted = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now_ms - retention_ms))
local expired = #evicted
local overflow = redis.call('ZCARD', KEYS[3]) - expired - max_entries
if overflow > 0 then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. (now_ms - retention_ms), '+inf', 'LIMIT', 0, overflow)
  for _, old in ipairs(oldest) do evicted[#evicted + 1] = old end
end
for i, old in ipairs(evicted) do
  local why = 'retention'
  if i > expired then why = 'max_entries' end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', audit_max, '*',
    'action', 'evict', 'id', old, 'actor', why, 'entry', redis.call('HGET', KEYS[1], old) or '')
  redis.call('HDEL', KEYS[1], old)
  redis.call('HDEL', KEYS[2], old)
  redis.call('HDEL', KEYS[6], old)
  redis.call('ZREM', KEYS[3], old)
  redis.call('ZREM', KEYS[7], old)
end
if #evicted > 0 then redis.call('INCRBY', KEYS[5], #evicted) end
return evicted
