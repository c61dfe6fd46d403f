--[[
  Returns a claimed batch to the queue, only if the given worker still holds
  it. The holder's fencing token is revoked: its later commit is refused.
  The next claim of the batch counts as a new attempt. The worker's consumer
  is dropped from the group if it now holds nothing.

  Repeats: the call is named by its request id, kept on the batch as
  r:<index>: a repeat of a release that was applied answers 1 again.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] batches hash
    KEYS[4] leases sorted set (batch index -> ms of its claim or last heartbeat)

    ARGV[1] consumer group name
    ARGV[2] batch index
    ARGV[3] worker id
    ARGV[4] request id (unique per call; a retried send repeats it)

  Output:
    1 released, 0 the worker does not hold that batch
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local batchesKey = KEYS[3]
local leasesKey = KEYS[4]
local idx = ARGV[2]

--- @include "includes/requeueBatch"

local batch = rcall("HMGET", batchesKey, "s:" .. idx, "o:" .. idx, "r:" .. idx)
if batch[3] == ARGV[4] then
  return 1
end
if batch[1] ~= "PROCESSING" or batch[2] ~= ARGV[3] then
  return 0
end
requeueBatch(jobKey, queueKey, batchesKey, leasesKey, ARGV[1], idx)
rcall("HSET", batchesKey, "r:" .. idx, ARGV[4])
return 1
