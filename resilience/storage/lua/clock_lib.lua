-- Prepended to the scripts that decide on time (resilience/storage/scripts.py): Redis server time in
-- integer microseconds, so workers whose clocks disagree still agree; a non-empty override
-- (tests' injected clock) wins.
local function server_now_us(override)
  if override ~= nil and override ~= '' then
    return tonumber(override)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
