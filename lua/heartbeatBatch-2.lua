--[[
  Keeps a live worker's batch from being reclaimed: if the caller still holds
  the batch with its fencing token, resets the queue entry's idle time
  (XCLAIM to itself with JUSTID, which does not count as a delivery).

  Input:
    KEYS[1] queue stream
    KEYS[2] batches hash

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
local idx = ARGV[3]

local batch = rcall("HMGET", batchesKey, "s:" .. idx, "t:" .. idx, "e:" .. idx)
if batch[1] ~= "PROCESSING" or batch[2] ~= ARGV[4] then
  return {"STALE"}
end
rcall("XCLAIM", queueKey, ARGV[1], ARGV[2], 0, batch[3], "JUSTID")
return {"OK"}
