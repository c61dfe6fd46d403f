-- Server time in whole milliseconds (the lease clock every worker shares), from
-- a TIME reply the caller already has, or from a new one.
local function nowMs(t)
  t = t or redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
