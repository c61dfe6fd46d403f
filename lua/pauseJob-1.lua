--[[
  Pauses a preparing or running job: claims answer JOB_NOT_PROCESSING until it
  is resumed; batches already claimed may still commit, and preparation goes on
  storing batches.

  Repeats: the call is named by its request id (kept as last_control on the
  job); a repeat of a call that paused the job answers 1 again.

  Input:
    KEYS[1] job hash

    ARGV[1] request id (unique per call; a retried send repeats it), or ""

  Output:
    1 paused, 0 unknown job or not in a state that can be paused
]]
local rcall = redis.call
local jobKey = KEYS[1]

--- @include "includes/repeatedControl"

if repeatedControl(jobKey, ARGV[1]) then
  return 1
end

local state = rcall("HGET", jobKey, "state")
if state ~= "PREPARING" and state ~= "PROCESSING" then
  return 0
end
rcall("HSET", jobKey, "state", "PAUSED", "last_control", ARGV[1])
return 1
