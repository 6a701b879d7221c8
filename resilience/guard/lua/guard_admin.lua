-- Operator actions on one breaker (alchemiser breaker open/close/reset), each one audited
-- transition: force_open isolates the resource, disable lets every call through unrecorded,
-- reset returns to CLOSED with a fresh window and no memory of earlier openings.
--
-- ARGV: now override, action, the resource's configuration (guard_lib.lua).
-- Returns the transition ("from>to"), or "" when the breaker was already in that state.

local now = server_now_us(ARGV[1])
local action = ARGV[2]
local k = resource_keys(1)
local b = breaker_read(k.breaker)
local targets = { force_open = FORCED_OPEN, disable = DISABLED, reset = CLOSED }
local to = targets[action]
if to == nil then return redis.error_reply('unknown breaker action: ' .. tostring(action)) end
if action == 'reset' then
  b.opens = 0
elseif b.state == to then
  return ''
end
return breaker_transition(k, b, to, now, 0, 'operator: ' .. action, nil)
