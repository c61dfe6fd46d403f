--[[
  Resumes a paused job: back to PREPARING if it was not sealed yet, else to
  PROCESSING, finalizing it when every batch finished while it was paused.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] records hash
    KEYS[4] batches hash
    KEYS[5] failed hash
    KEYS[6] events stream
    KEYS[7] unique hash (a unique value's digest -> index of its first record)

    ARGV[1] retention in ms, or "" to keep the job forever

  Output:
    {1, finalized (0|1), summary} resumed; summary: the jobSummary include's figures
    {0, 0}                        unknown job or not paused
]]
local rcall = redis.call
local jobKey = KEYS[1]

--- @include "includes/finalizeIfDone"
--- @include "includes/jobSummary"

local f = rcall("HMGET", jobKey, "state", "sealed")
if f[1] ~= "PAUSED" then
  return {0, 0}
end
if f[2] == "1" then
  rcall("HSET", jobKey, "state", "PROCESSING")
else
  rcall("HSET", jobKey, "state", "PREPARING")
end
return {1, finalizeIfDone(jobKey, KEYS, ARGV[1]), jobSummary(jobKey)}
