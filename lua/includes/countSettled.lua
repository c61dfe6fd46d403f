-- Adds records settled now (committed, or dead-lettered) to the job's per-second
-- counts: 60 slots on the job hash, r:<second mod 60> = "<second>:<count>", so
-- that a status read sees the last minute of commits in O(1) whatever the job's size.
local function countSettled(jobKey, count)
  count = tonumber(count) or 0
  if count <= 0 then
    return
  end
  local second = tonumber(redis.call("TIME")[1])
  local slot = "r:" .. (second % 60)
  local earlier = redis.call("HGET", jobKey, slot)
  if earlier then
    local at, n = string.match(earlier, "^(%d+):(%d+)$")
    if tonumber(at) == second then
      count = count + tonumber(n)
    end
  end
  redis.call("HSET", jobKey, slot, string.format("%d:%d", second, count))
end
