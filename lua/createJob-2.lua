--[[
  Creates a job in state PREPARING with its batch queue and consumer group.
  Refuses an id that already exists, so two orchestrators can never share a job.

  The creating call brings a nonce made by the client (a uuid4), kept as the
  job's incarnation: every fencing token of the job starts with it, so the
  tokens of a job deleted and created again under the same id never match
  the old ones.

  The prepare's failure thresholds (ARGV[4], ARGV[5]) are kept on the job, so
  that every worker enforces them, also one constructed without them. The
  batch size and byte cap (ARGV[2], ARGV[6]) are kept so that a resumed
  prepare can check it cuts the source into the same batches.

  Repeats: a repeat of the creating call (same nonce) answers OK with the same
  created_at, not JOB_EXISTS.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream

    ARGV[1] consumer group name
    ARGV[2] batch size (kept on the job for status tools)
    ARGV[3] nonce of the creating call (the job's incarnation)
    ARGV[4] tolerated failed records, or "" for no limit
    ARGV[5] tolerated failed records in percent of total_records, or "" for no limit
    ARGV[6] the prepare's max_batch_bytes, or "" (kept for a resume's check)

  Output:
    {"OK", created_at}
    {"JOB_EXISTS"}
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]

--- @include "includes/serverTime"

local existing = rcall("HMGET", jobKey, "state", "incarnation", "created_at")
if existing[1] then
  if existing[2] == ARGV[3] then
    return {"OK", existing[3]}
  end
  return {"JOB_EXISTS"}
end
local now = serverTime()
rcall("HSET", jobKey, "state", "PREPARING", "sealed", "0", "created_at", now,
  "batch_size", ARGV[2], "total_records", 0, "total_batches", 0,
  "processed_records", 0, "failed_records", 0, "completed_batches", 0,
  "failed_batches", 0, "token_seq", 0, "incarnation", ARGV[3], "attempt", 1)
if ARGV[4] and ARGV[4] ~= "" then
  rcall("HSET", jobKey, "tolerated_count", ARGV[4])
end
if ARGV[5] and ARGV[5] ~= "" then
  rcall("HSET", jobKey, "tolerated_percentage", ARGV[5])
end
if ARGV[6] and ARGV[6] ~= "" then
  rcall("HSET", jobKey, "max_batch_bytes", ARGV[6])
end
if rcall("EXISTS", queueKey) == 1 then
  rcall("DEL", queueKey)
end
rcall("XGROUP", "CREATE", queueKey, ARGV[1], "$", "MKSTREAM")
return {"OK", now}
