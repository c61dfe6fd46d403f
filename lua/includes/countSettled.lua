-- Adds records settled now (committed, or dead-lettered) to the job's per-second
-- counts: 60 slots on the job hash, r:<second mod 60> = "<second>:<count>", so
-- that a status read sees the last minute of commits in O(1) whatever the job's size.
--- @include "includes/settledSlot"
local function countSettled(jobKey, count)
  count = tonumber(count) or 0
  if count <= 0 then
    return
  end
  local second = tonumber(redis.call("TIME")[1])
  local slot = "r:" .. (second % 60)
  redis.call("HSET", jobKey, slot, settledSlot(redis.call("HGET", jobKey, slot), second, count))
end
