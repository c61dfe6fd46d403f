--[[
  Returns a claimed batch to the queue, only if the given worker still holds
  it. The holder's fencing token is revoked: its later commit is refused.
  The next claim of the batch counts as a new attempt.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] batches hash

    ARGV[1] consumer group name
    ARGV[2] batch index
    ARGV[3] worker id

  Output:
    1 released, 0 the worker does not hold that batch
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local batchesKey = KEYS[3]
local idx = ARGV[2]

--- @include "includes/requeueBatch"

local batch = rcall("HMGET", batchesKey, "s:" .. idx, "o:" .. idx)
if batch[1] ~= "PROCESSING" or batch[2] ~= ARGV[3] then
  return 0
end
requeueBatch(jobKey, queueKey, batchesKey, ARGV[1], idx)
return 1
