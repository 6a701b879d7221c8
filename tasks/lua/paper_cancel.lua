-- Cancel one resting order at the paper exchange.
-- KEYS[1] orders hash  KEYS[2] order ids hash  KEYS[3] account hash  KEYS[4] log stream
-- ARGV[1] order id
-- Returns {'ok', JSON} | {'not_found', ''} | {'not_cancelable', status}
local coid = redis.call('HGET', KEYS[2], ARGV[1])
if not coid then return {'not_found', ''} end
local raw = redis.call('HGET', KEYS[1], coid)
local order = cjson.decode(raw)
if order['status'] ~= 'accepted' then return {'not_cancelable', order['status']} end
order['status'] = 'canceled'
local updated = cjson.encode(order)
redis.call('HSET', KEYS[1], coid, updated)
redis.call('HINCRBY', KEYS[3], 'canceled', 1)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'event', 'canceled', 'client_order_id', coid)
return {'ok', updated}
