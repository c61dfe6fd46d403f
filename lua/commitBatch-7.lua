--[[
  Commits a processed batch: refused unless the caller still holds the batch
  with the same fencing token (a batch reclaimed or released since is not the
  caller's to write). Acknowledges the queue entry, deletes the raw records,
  stores the batch's counts and failed records, adds them to the job's
  counters once, and finalizes the job when it was the last batch of a sealed
  job. One atomic script: exactly-once accounting and finalization.

  A partial commit (ARGV[9] set: the worker's time budget ran out) settles
  the records the worker finished and hands the rest back: the remainder
  replaces the batch's records, and the batch returns to the queue with its
  holder's token revoked; the hand-back does not count as an attempt.
  Failed records accumulate across partial commits (ARGV[7] parts are
  appended, each already length-prefixed by the caller).

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] records hash
    KEYS[4] batches hash
    KEYS[5] failed hash
    KEYS[6] events stream
    KEYS[7] unique hash (a unique value's digest -> index of its first record)

    ARGV[1] consumer group name
    ARGV[2] batch index
    ARGV[3] fencing token from the claim
    ARGV[4] processed record count
    ARGV[5] failed record count
    ARGV[6] batch outcome: "COMPLETED" or "FAILED"
    ARGV[7] failed records (a length-prefixed msgpack part), or "" when none failed
    ARGV[8] retention in ms, or "" to keep the job forever
    ARGV[9] the remainder handed back (msgpack batch), or "" for a full commit
    ARGV[10] the remainder's record count
    ARGV[11] the remainder's duplicates (JSON, as storeBatch writes them), or ""

  Output:
    {"OK", finalized (0|1), state, summary}  summary: the jobSummary include's figures
                                             (a partial commit never finalizes)
    {"STALE"}          the caller no longer holds the batch: nothing was written
    {"JOB_NOT_FOUND"}  the job was deleted
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local recordsKey = KEYS[3]
local batchesKey = KEYS[4]
local failedKey = KEYS[5]
local eventsKey = KEYS[6]
local idx = ARGV[2]

--- @include "includes/applyRetention"
--- @include "includes/appendEvent"
--- @include "includes/finalizeIfDone"
--- @include "includes/jobSummary"
--- @include "includes/requeueBatch"

if rcall("EXISTS", jobKey) == 0 then
  return {"JOB_NOT_FOUND"}
end
local batch = rcall("HMGET", batchesKey, "s:" .. idx, "t:" .. idx, "e:" .. idx)
if batch[1] ~= "PROCESSING" or batch[2] ~= ARGV[3] then
  return {"STALE"}
end

if ARGV[7] ~= "" then
  local earlier = rcall("HGET", failedKey, idx) or ""
  rcall("HSET", failedKey, idx, earlier .. ARGV[7])
end
rcall("HINCRBY", jobKey, "processed_records", ARGV[4])
rcall("HINCRBY", jobKey, "failed_records", ARGV[5])
rcall("HINCRBY", batchesKey, "p:" .. idx, ARGV[4])
rcall("HINCRBY", batchesKey, "f:" .. idx, ARGV[5])

if ARGV[9] ~= "" then
  rcall("HSET", recordsKey, idx, ARGV[9])
  rcall("HSET", batchesKey, "n:" .. idx, ARGV[10])
  if ARGV[11] ~= "" then
    rcall("HSET", batchesKey, "d:" .. idx, ARGV[11])
  else
    rcall("HDEL", batchesKey, "d:" .. idx)
  end
  requeueBatch(jobKey, queueKey, batchesKey, ARGV[1], idx)
  rcall("HINCRBY", batchesKey, "a:" .. idx, -1)
  appendEvent(eventsKey, {"type", "batch:handed-back", "batch", idx,
    "processed", ARGV[4], "failed", ARGV[5], "remaining", ARGV[10]})
  return {"OK", 0, rcall("HGET", jobKey, "state"), jobSummary(jobKey)}
end

rcall("XACK", queueKey, ARGV[1], batch[3])
rcall("XDEL", queueKey, batch[3])
rcall("HDEL", recordsKey, idx)
rcall("HDEL", batchesKey, "o:" .. idx, "d:" .. idx)
rcall("HSET", batchesKey, "s:" .. idx, ARGV[6])
if ARGV[6] == "FAILED" then
  rcall("HINCRBY", jobKey, "failed_batches", 1)
else
  rcall("HINCRBY", jobKey, "completed_batches", 1)
end
appendEvent(eventsKey, {"type", "batch:" .. string.lower(ARGV[6]), "batch", idx,
  "processed", ARGV[4], "failed", ARGV[5]})

local finalized = finalizeIfDone(jobKey, KEYS, ARGV[8])
local state = rcall("HGET", jobKey, "state")
if state == "ABORTED" or state == "FAILED" then
  -- A late commit into a job that already ended: keep its keys on the clock.
  applyRetention(KEYS, ARGV[8])
end
return {"OK", finalized, state, jobSummary(jobKey)}
