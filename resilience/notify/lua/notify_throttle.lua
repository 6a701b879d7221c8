-- One notification asks to go out under its rate limit: at most `limit` sent in any window of
-- `window_us` (a log of send times, so the bound is exact, not approximate). One that may not
-- go is counted as held back; the next one that goes takes that count, to say it in its text.
--
-- KEYS: sent (zset of send times, µs), held (counter). ARGV: now override (empty: Redis TIME),
-- window_us, limit, id of this notification.
-- Returns {sent (1/0), held back (taken when sent, so far when not), retry_after_us}.

local now = server_now_us(ARGV[1])
local window_us, limit, id = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local keep_ms = math.floor(window_us / 1000) + 1

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window_us)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], keep_ms)
  local held = tonumber(redis.call('GET', KEYS[2]) or '0')
  redis.call('DEL', KEYS[2])
  return { 1, held, 0 }
end
local held = redis.call('INCR', KEYS[2])
-- Kept until a notification of the kind goes out, however long that is; a week bounds it.
redis.call('EXPIRE', KEYS[2], 7 * 24 * 3600)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return { 0, held, math.max(tonumber(oldest[2]) + window_us - now, 1) }
