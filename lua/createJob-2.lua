--[[
  Creates a job in state PREPARING with its batch queue and consumer group.
  Refuses an id that already exists, so two orchestrators can never share a job.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream

    ARGV[1] consumer group name
    ARGV[2] batch size (kept on the job for status tools)

  Output:
    {"OK", created_at}
    {"JOB_EXISTS"}
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]

--- @include "includes/serverTime"

if rcall("EXISTS", jobKey) == 1 then
  return {"JOB_EXISTS"}
end
local now = serverTime()
rcall("HSET", jobKey, "state", "PREPARING", "sealed", "0", "created_at", now,
  "batch_size", ARGV[2], "total_records", 0, "total_batches", 0,
  "processed_records", 0, "failed_records", 0, "completed_batches", 0,
  "failed_batches", 0, "token_seq", 0)
if rcall("EXISTS", queueKey) == 1 then
  rcall("DEL", queueKey)
end
rcall("XGROUP", "CREATE", queueKey, ARGV[1], "$", "MKSTREAM")
return {"OK", now}
