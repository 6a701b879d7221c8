-- Acknowledges an open alert, if it is still the one with this id and still firing: no further
-- escalation levels, no reminders (alert_flush.lua). KEYS: the alert's hash. ARGV: alert id.
-- Returns 1 if it is acknowledged now (or already was), 0 if no open alert has that id.

local v = redis.call('HMGET', KEYS[1], 'alert_id', 'status')
if v[1] ~= ARGV[1] or not v[2] or v[2] == 'resolved' then return 0 end
if v[2] == 'firing' then redis.call('HSET', KEYS[1], 'status', 'acknowledged') end
return 1
