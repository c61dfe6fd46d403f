--[[
  Pauses a preparing or running job: claims answer JOB_NOT_PROCESSING until it
  is resumed; batches already claimed may still commit, and preparation goes on
  storing batches.

  Input:
    KEYS[1] job hash

  Output:
    1 paused, 0 unknown job or not in a state that can be paused
]]
local rcall = redis.call
local jobKey = KEYS[1]

local state = rcall("HGET", jobKey, "state")
if state ~= "PREPARING" and state ~= "PROCESSING" then
  return 0
end
rcall("HSET", jobKey, "state", "PAUSED")
return 1
