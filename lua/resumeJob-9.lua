--[[
  Resumes a paused job: back to PREPARING if it was not sealed yet, else to
  PROCESSING, finalizing it when every batch finished while it was paused.

  Repeats: the call is named by its request id (kept as last_control on the
  job); a repeat of a call that resumed the job answers as it did, the
  finalized flag included.

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

    ARGV[1] retention in ms, or "" to keep the job forever
    ARGV[2] request id (unique per call; a retried send repeats it), or ""

  Output:
    {1, finalized (0|1), summary} resumed; summary: the jobSummary include's figures
    {0, 0}                        unknown job or not paused
]]
local rcall = redis.call
local jobKey = KEYS[1]

--- @include "includes/finalizeIfDone"
--- @include "includes/jobSummary"
--- @include "includes/finalizedBy"
--- @include "includes/repeatedControl"

local finalizer = "resume:" .. ARGV[2]
if repeatedControl(jobKey, ARGV[2]) then
  return {1, finalizedBy(jobKey, finalizer), jobSummary(jobKey)}
end

local f = rcall("HMGET", jobKey, "state", "sealed")
if f[1] ~= "PAUSED" then
  return {0, 0}
end
local resumed = "PREPARING"
if f[2] == "1" then
  resumed = "PROCESSING"
end
rcall("HSET", jobKey, "state", resumed, "last_control", ARGV[2])
return {1, finalizeIfDone(jobKey, KEYS, ARGV[1], finalizer), jobSummary(jobKey)}
