-- Server time as epoch seconds with microseconds, formatted for a hash field,
-- from a TIME reply the caller already has, or from a new one. Workers' clocks
-- drift; the server's is the one clock every worker shares.
local function serverTime(t)
  t = t or redis.call("TIME")
  return string.format("%d.%06d", t[1], t[2])
end
