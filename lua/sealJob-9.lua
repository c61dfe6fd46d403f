--[[
  Ends preparation: marks the job sealed (its totals are final) and moves it
  from PREPARING to PROCESSING. A job paused while preparing stays PAUSED.
  An empty job, or one whose batches all finished during preparation, is
  finalized here.

  The call is named by its prepare's nonce (ARGV[2], kept as sealed_by).
  Repeats: a repeat of the seal that was applied answers as it did, the
  finalized flag included. A job sealed by another prepare (two concurrent
  prepare(..., resume=True) of one job: the first to seal wins) answers
  JOB_EXISTS.

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
    ARGV[2] the sealing prepare's nonce

  Output:
    {"OK", finalized (0|1), state, total_records, total_batches, summary}
      summary: the jobSummary include's figures
    {"JOB_NOT_FOUND"}
    {"JOB_NOT_PROCESSING", state}  aborted or failed while preparing
    {"JOB_EXISTS"}                 sealed by another prepare
]]
local rcall = redis.call
local jobKey = KEYS[1]
local finalizer = "seal:" .. ARGV[2]

--- @include "includes/serverTime"
--- @include "includes/finalizeIfDone"
--- @include "includes/finalizedBy"
--- @include "includes/jobSummary"

local function sealedReply(finalized)
  local f = rcall("HMGET", jobKey, "state", "total_records", "total_batches")
  return {"OK", finalized, f[1], tonumber(f[2]), tonumber(f[3]), jobSummary(jobKey)}
end

local job = rcall("HMGET", jobKey, "state", "sealed", "sealed_by")
local state = job[1]
if not state then
  return {"JOB_NOT_FOUND"}
end
if job[2] == "1" then
  if job[3] == ARGV[2] then
    return sealedReply(finalizedBy(jobKey, finalizer))
  end
  return {"JOB_EXISTS"}
end
if state ~= "PREPARING" and state ~= "PAUSED" then
  return {"JOB_NOT_PROCESSING", state}
end
rcall("HSET", jobKey, "sealed", "1", "sealed_at", serverTime(), "sealed_by", ARGV[2])
if state == "PREPARING" then
  rcall("HSET", jobKey, "state", "PROCESSING")
end
return sealedReply(finalizeIfDone(jobKey, KEYS, ARGV[1], finalizer))
