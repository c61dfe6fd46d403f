--[[
  A consistent snapshot of a job: its hash, the number of batches claimed right
  now (the consumer group's pending entries), the server's time and the number
  of workers heard of (claim, heartbeat, commit) within the stale timeout, read
  in one atomic step. O(1) in the job's size: the hash holds a fixed set of
  fields (its per-second commit counts are 60 slots), XPENDING's summary and
  ZCOUNT are O(1) and O(log N) in the number of workers.

  Repeats: read only; a repeat answers the job as it is at its own time.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] workers sorted set (worker id -> ms it was last heard of)

    ARGV[1] consumer group name
    ARGV[2] stale timeout in ms, used when the job has none of its own (stale_ms,
            kept by the workers' claims)

  Output:
    {} unknown job
    {claimed_batches, now_ms, workers, field1, value1, field2, value2, ...}
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local workersKey = KEYS[3]

--- @include "includes/pendingCount"
--- @include "includes/nowMs"

local fields = rcall("HGETALL", jobKey)
if #fields == 0 then
  return {}
end
local claimed = 0
if rcall("EXISTS", queueKey) == 1 then
  claimed = pendingCount(queueKey, ARGV[1])
end
local now = nowMs()
local staleMs = tonumber(rcall("HGET", jobKey, "stale_ms") or ARGV[2])
local workers = rcall("ZCOUNT", workersKey, now - staleMs, "+inf")
table.insert(fields, 1, workers)
table.insert(fields, 1, now)
table.insert(fields, 1, claimed)
return fields
