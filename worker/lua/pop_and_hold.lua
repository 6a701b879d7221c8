-- Take the next message off a worker's queues and record it as held, in one step.
--
-- kombu pops with BRPOP and records the message as unacknowledged afterwards, in a second
-- command: a worker killed between the two (the reply waiting in its socket while the event
-- loop is busy), or a Redis killed after logging the pop but before the reply reached the
-- worker, loses the message for good. Here the pop and the record are one script, so a message
-- is always on its queue or in the unacknowledged set.
--
-- KEYS: the queue lists in the order to try, then the unacked hash and the unacked index.
-- ARGV[1]: now (seconds since the epoch), the delivery time kombu's restore sweep reads.
-- Returns {queue key, message} or false. An item that is not a kombu message (no delivery
-- tag) is returned unrecorded: the worker wraps it and quarantines it (worker.transport).

local queues = #KEYS - 2
local unacked, index = KEYS[queues + 1], KEYS[queues + 2]
for i = 1, queues do
    local item = redis.call('RPOP', KEYS[i])
    if item then
        local ok, message = pcall(cjson.decode, item)
        if ok and type(message) == 'table' and type(message.properties) == 'table' then
            local tag = message.properties.delivery_tag
            local info = message.properties.delivery_info
            if type(tag) == 'string' and type(info) == 'table' then
                -- kombu's own record: [message, exchange, routing_key]
                redis.call('HSET', unacked, tag, '[' .. item .. ',' .. cjson.encode(info.exchange or '')
                    .. ',' .. cjson.encode(info.routing_key or '') .. ']')
                redis.call('ZADD', index, ARGV[1], tag)
            end
        end
        return {KEYS[i], item}
    end
end
return false
