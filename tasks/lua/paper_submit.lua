-- Accept one order at the paper exchange, atomically: refuse a repeated client_order_id
-- (Alpaca's 422), refuse buys beyond cash and sells beyond the position, then book it.
-- KEYS[1] orders hash (client_order_id -> JSON)  KEYS[2] order ids hash (id -> client_order_id)
-- KEYS[3] positions hash (symbol -> qty)         KEYS[4] account hash (cash, counters)
-- KEYS[5] log stream
-- ARGV[1] client_order_id  ARGV[2] order id  ARGV[3] order JSON  ARGV[4] symbol
-- ARGV[5] side  ARGV[6] qty  ARGV[7] cash delta if filled (negative for buys, 0 if resting)
-- ARGV[8] position delta if filled  ARGV[9] initial cash  ARGV[10] cash needed (buys)
-- Returns {'ok', JSON} | {'duplicate', existing JSON} | {'insufficient_funds', cash}
--       | {'insufficient_qty', held}
redis.call('HSETNX', KEYS[4], 'cash', ARGV[9])
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  redis.call('HINCRBY', KEYS[4], 'duplicates_rejected', 1)
  return {'duplicate', existing}
end
local cash = tonumber(redis.call('HGET', KEYS[4], 'cash'))
if ARGV[5] == 'buy' and cash < tonumber(ARGV[10]) then
  redis.call('HINCRBY', KEYS[4], 'rejected', 1)
  return {'insufficient_funds', tostring(cash)}
end
if ARGV[5] == 'sell' then
  local held = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
  if held < tonumber(ARGV[6]) then
    redis.call('HINCRBY', KEYS[4], 'rejected', 1)
    return {'insufficient_qty', tostring(held)}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
if tonumber(ARGV[7]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[4], 'cash', ARGV[7]) end
if tonumber(ARGV[8]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[3], ARGV[4], ARGV[8]) end
redis.call('HINCRBY', KEYS[4], 'accepted', 1)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', 'event', 'accepted', 'client_order_id', ARGV[1])
return {'ok', ARGV[3]}
