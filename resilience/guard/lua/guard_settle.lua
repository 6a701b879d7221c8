-- Settles the successes a worker recorded late when no admission of the same resource came to
-- carry them (guard_lib.lua, settle): an idle worker's leases come back and its successes reach
-- the breaker's window within the linger of its background thread.
--
-- ARGV: now override (empty: Redis TIME), resource count, open-wait spread (uniform in
-- [-1, 1]), each resource's configuration, then each resource's late successes (guard_lib.lua,
-- late_args).
-- Returns per resource: the breaker transition they caused, or ''.

local now = server_now_us(ARGV[1])
local count = tonumber(ARGV[2])
local spread = tonumber(ARGV[3])
local CONFIG_OFFSET = 4
local late_offset = CONFIG_OFFSET + count * CONFIG_FIELDS

local reply = {}
for i = 1, count do
  local k, c = resource_keys(i), resource_config(CONFIG_OFFSET, i)
  local b = nil
  if c.breaker_on then b = breaker_read(k.breaker) end
  local counts, tickets
  counts, tickets, late_offset = late_args(late_offset)
  table.insert(reply, settle(k, c, b, counts, tickets, now, spread))
end
return reply
