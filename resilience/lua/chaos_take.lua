-- Decide whether a fault rule fires for one operation, spending its count atomically.
-- KEYS[1] rules hash (target@phase -> rule JSON)  KEYS[2] fired counters hash (target -> n)
-- ARGV[1] rule field (target@phase)  ARGV[2] target  ARGV[3] roll in [0, 1)
-- Returns the rule JSON when it fires, else nil. Expired or spent rules are removed.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return nil end
local rule = cjson.decode(raw)
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if rule['expires_at_ms'] ~= cjson.null and rule['expires_at_ms'] and now_ms >= rule['expires_at_ms'] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return nil
end
if tonumber(ARGV[3]) >= rule['probability'] then return nil end
if rule['count'] ~= cjson.null and rule['count'] then
  if rule['count'] <= 1 then
    redis.call('HDEL', KEYS[1], ARGV[1])
  else
    rule['count'] = rule['count'] - 1
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rule))
  end
end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return raw
