--[[
  Stores one batch's records and publishes it on the queue, atomically, so a
  worker can claim it at once. Idempotent: storing an index that is already
  stored changes nothing (a retried pipeline or a resumed prepare is safe).

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] records hash (batch index -> msgpack rows)
    KEYS[4] batches hash (per-batch state)

    ARGV[1] consumer group name
    ARGV[2] batch index
    ARGV[3] number of records in the batch
    ARGV[4] the batch payload (msgpack)
    ARGV[5] the job's column header (msgpack), or "" when unchanged

  Output:
    {"OK", state, unclaimed}  unclaimed: stored batches no worker has claimed yet
    {"JOB_NOT_FOUND"}
    {"JOB_NOT_PROCESSING", state}  aborted or failed while preparing
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local recordsKey = KEYS[3]
local batchesKey = KEYS[4]
local group = ARGV[1]
local idx = ARGV[2]

--- @include "includes/pendingCount"

local state = rcall("HGET", jobKey, "state")
if not state then
  return {"JOB_NOT_FOUND"}
end
if state ~= "PREPARING" and state ~= "PAUSED" then
  return {"JOB_NOT_PROCESSING", state}
end

if rcall("HEXISTS", batchesKey, "n:" .. idx) == 0 then
  if ARGV[5] ~= "" then
    rcall("HSET", jobKey, "columns", ARGV[5])
  end
  rcall("HSET", recordsKey, idx, ARGV[4])
  local id = rcall("XADD", queueKey, "*", "b", idx)
  rcall("HSET", batchesKey, "n:" .. idx, ARGV[3], "s:" .. idx, "PENDING", "e:" .. idx, id,
    "a:" .. idx, 0)
  rcall("HINCRBY", jobKey, "total_records", ARGV[3])
  rcall("HINCRBY", jobKey, "total_batches", 1)
end

local counts = rcall("HMGET", jobKey, "total_batches", "completed_batches", "failed_batches")
local unclaimed = tonumber(counts[1]) - tonumber(counts[2]) - tonumber(counts[3])
  - pendingCount(queueKey, group)
return {"OK", state, unclaimed}
