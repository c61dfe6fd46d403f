--[[
  Ends preparation: marks the job sealed (its totals are final) and moves it
  from PREPARING to PROCESSING. A job paused while preparing stays PAUSED.
  An empty job, or one whose batches all finished during preparation, is
  finalized here.

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
    {"OK", finalized (0|1), state, total_records, total_batches, summary}
      summary: the jobSummary include's figures
    {"JOB_NOT_FOUND"}
    {"JOB_NOT_PROCESSING", state}  aborted or failed while preparing
]]
local rcall = redis.call
local jobKey = KEYS[1]

--- @include "includes/serverTime"
--- @include "includes/finalizeIfDone"
--- @include "includes/jobSummary"
--- @include "includes/preparingState"

local state, refusal = preparingState(jobKey)
if refusal then
  return refusal
end
rcall("HSET", jobKey, "sealed", "1", "sealed_at", serverTime())
if state == "PREPARING" then
  rcall("HSET", jobKey, "state", "PROCESSING")
end
local finalized = finalizeIfDone(jobKey, KEYS, ARGV[1])
local f = rcall("HMGET", jobKey, "state", "total_records", "total_batches")
return {"OK", finalized, f[1], tonumber(f[2]), tonumber(f[3]), jobSummary(jobKey)}
