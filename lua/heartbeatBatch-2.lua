--[[
  Keeps a live worker's batch from being reclaimed: if the caller still holds
  the batch with its fencing token, renews its lease (its score in the leases
  sorted set becomes the server's time now). ZADD XX: a heartbeat never
  creates the leases key (a job that ended keeps its retention TTL).

  Repeats: a repeat renews the lease again and answers the same, or STALE if
  the batch was taken away in between (which is then true).

  Input:
    KEYS[1] batches hash
    KEYS[2] leases sorted set (batch index -> ms of its claim or last heartbeat)

    ARGV[1] consumer group name (unused; kept for the call's shape)
    ARGV[2] worker id
    ARGV[3] batch index
    ARGV[4] fencing token from the claim

  Output:
    {"OK"}
    {"STALE"}  the batch was reclaimed or released: the caller should stop
]]
local rcall = redis.call
local batchesKey = KEYS[1]
local leasesKey = KEYS[2]
local idx = ARGV[3]

--- @include "includes/nowMs"

local batch = rcall("HMGET", batchesKey, "s:" .. idx, "t:" .. idx)
if batch[1] ~= "PROCESSING" or batch[2] ~= ARGV[4] then
  return {"STALE"}
end
rcall("ZADD", leasesKey, "XX", nowMs(), idx)
return {"OK"}
