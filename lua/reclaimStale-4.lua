--[[
  Makes every claimed batch whose lease is older than the timeout claimable
  again: each one's holder loses its fencing token and the batch goes back to
  the queue. The next claim of each counts as a new attempt. Leases are read
  from the leases sorted set (ZRANGEBYSCORE: O(log N + M) for M stale
  batches); no consumer of the group is used or created, so no worker id can
  collide with a name of ours.

  Repeats: the call is named by its request id; the job keeps the last
  reclaim that changed something (last_reclaim = "<request>|<count>"), and a
  repeat of it answers the same count.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] batches hash
    KEYS[4] leases sorted set (batch index -> ms of its claim or last heartbeat)

    ARGV[1] consumer group name
    ARGV[2] idle timeout in ms
    ARGV[3] request id (unique per call; a retried send repeats it)

  Output:
    the number of batches made claimable again
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local batchesKey = KEYS[3]
local leasesKey = KEYS[4]
local group = ARGV[1]

--- @include "includes/nowMs"
--- @include "includes/requeueBatch"

if rcall("EXISTS", jobKey) == 0 then
  return 0
end
local last = rcall("HGET", jobKey, "last_reclaim")
if last then
  local request, count = string.match(last, "^(.*)|(%d+)$")
  if request == ARGV[3] then
    return tonumber(count)
  end
end
local stale = rcall("ZRANGEBYSCORE", leasesKey, "-inf", nowMs() - tonumber(ARGV[2]))
for _, idx in ipairs(stale) do
  requeueBatch(jobKey, queueKey, batchesKey, leasesKey, group, idx)
end
if #stale > 0 then
  rcall("HSET", jobKey, "last_reclaim", ARGV[3] .. "|" .. #stale)
end
return #stale
