--[[
  Ends a job that has not reached a final state, with the given terminal
  state: ABORTED (a user's abort) or FAILED (preparation could not read the
  source). No batch is claimed afterwards and finalization emits nothing
  further. Starts the retention clock on every key.

  Repeats: the call is named by its request id (kept as last_control on the
  job); a repeat of a call that ended the job answers 1 again.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] records hash
    KEYS[4] batches hash
    KEYS[5] failed hash
    KEYS[6] events stream
    KEYS[7] unique hash (a unique value's digest -> index of its first record)
    KEYS[8] leases sorted set (batch index -> ms of its claim or last heartbeat)
    KEYS[9] workers sorted set (worker id -> ms it was last heard of: claim, heartbeat, commit)

    ARGV[1] terminal state: "ABORTED" or "FAILED"
    ARGV[2] error message, or ""
    ARGV[3] retention in ms, or "" to keep the job forever
    ARGV[4] request id (unique per call; a retried send repeats it), or ""

  Output:
    1 ended, 0 unknown job or already in a final state
]]
local rcall = redis.call
local jobKey = KEYS[1]

--- @include "includes/serverTime"
--- @include "includes/applyRetention"
--- @include "includes/appendEvent"
--- @include "includes/repeatedControl"

if repeatedControl(jobKey, ARGV[4]) then
  return 1
end

local state = rcall("HGET", jobKey, "state")
if state ~= "PREPARING" and state ~= "PROCESSING" and state ~= "PAUSED" then
  return 0
end
rcall("HSET", jobKey, "state", ARGV[1], "completed_at", serverTime(), "last_control", ARGV[4])
if ARGV[2] ~= "" then
  rcall("HSET", jobKey, "error", ARGV[2])
end
appendEvent(KEYS[6], {"type", "job:completed", "state", ARGV[1]})
applyRetention(KEYS, ARGV[3])
return 1
