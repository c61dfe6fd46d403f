--[[
  Keeps a live worker's batch from being reclaimed: if the caller still holds
  the batch with its fencing token, renews its lease (its score in the leases
  sorted set becomes the server's time now). ZADD XX: a heartbeat never
  creates the leases key (a job that ended keeps its retention TTL). The queue
  entry's idle time is reset too (XCLAIM to itself with JUSTID, which does not
  count as a delivery), so XPENDING/XINFO show operators the same picture;
  reclaiming goes by the lease alone. The worker is noted in the workers set
  (status counts the workers heard of within the stale timeout).

  Repeats: a repeat renews the lease again and answers the same, or STALE if
  the batch was taken away in between (which is then true).

  Input:
    KEYS[1] queue stream
    KEYS[2] batches hash
    KEYS[3] leases sorted set (batch index -> ms of its claim or last heartbeat)
    KEYS[4] workers sorted set (worker id -> ms it was last heard of)

    ARGV[1] consumer group name
    ARGV[2] worker id (consumer name)
    ARGV[3] batch index
    ARGV[4] fencing token from the claim

  Output:
    {"OK"}
    {"STALE"}  the batch was reclaimed or released: the caller should stop
]]
local rcall = redis.call
local queueKey = KEYS[1]
local batchesKey = KEYS[2]
local leasesKey = KEYS[3]
local workersKey = KEYS[4]
local idx = ARGV[3]

--- @include "includes/nowMs"
--- @include "includes/seenWorker"

local batch = rcall("HMGET", batchesKey, "s:" .. idx, "t:" .. idx, "e:" .. idx)
if batch[1] ~= "PROCESSING" or batch[2] ~= ARGV[4] then
  return {"STALE"}
end
rcall("ZADD", leasesKey, "XX", nowMs(), idx)
rcall("XCLAIM", queueKey, ARGV[1], ARGV[2], 0, batch[3], "JUSTID")
seenWorker(workersKey, ARGV[2])
local ttl = rcall("PTTL", leasesKey)
if ttl > 0 then
  -- The job has ended and its keys are on the retention clock: so is this set.
  rcall("PEXPIRE", workersKey, ttl)
end
return {"OK"}
