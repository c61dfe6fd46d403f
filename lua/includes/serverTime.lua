-- Server time as epoch seconds with microseconds, formatted for a hash field.
-- Workers' clocks drift; the server's is the one clock every worker shares.
local function serverTime()
  local t = redis.call("TIME")
  return string.format("%d.%06d", t[1], t[2])
end
