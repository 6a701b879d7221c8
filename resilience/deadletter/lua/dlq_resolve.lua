-- Resolve a dead-letter id, or the start of one, as git resolves a short commit id: an id
-- stored whole names that entry; otherwise every id that starts with it, found in the ids
-- index (one sorted set, every score 0, so ZRANGEBYLEX walks ids in byte order: O(log N + M)).
-- KEYS[1] status hash  KEYS[2] index zset (id -> dead_at_ms)  KEYS[3] ids zset (id -> 0)
-- ARGV[1] id or id prefix  ARGV[2] most ids to return
-- Returns {how many ids match, the first matching ids in byte order (at most ARGV[2])}.
local given, most = ARGV[1], tonumber(ARGV[2])
if redis.call('HEXISTS', KEYS[1], given) == 1 then return {1, given} end
if redis.call('ZCARD', KEYS[3]) ~= redis.call('ZCARD', KEYS[2]) then
  -- Entries stored before the ids index existed (or by an older worker): index them all,
  -- once; from then on dlq_add and dlq_transition keep both sorted sets in step.
  redis.call('ZUNIONSTORE', KEYS[3], 1, KEYS[2], 'WEIGHTS', 0)
end
-- No UTF-8 byte is 0xFF, so every id that starts with `given` sorts between these bounds.
local low, high = '[' .. given, '[' .. given .. '\255'
local found = redis.call('ZRANGEBYLEX', KEYS[3], low, high, 'LIMIT', 0, most)
local count = #found
if count == most then count = redis.call('ZLEXCOUNT', KEYS[3], low, high) end
table.insert(found, 1, count)
return found
