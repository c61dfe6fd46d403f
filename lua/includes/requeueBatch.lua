-- Returns a claimed batch to the back of the queue: revokes the holder's token
-- (any later commit or heartbeat with it is refused), acknowledges and removes
-- its old entry, publishes a fresh one, ends its lease and drops the holder's
-- consumer if it now holds nothing. Acknowledging before deleting keeps the
-- entry out of XAUTOCLAIM's deleted-entry report.
--- @include "includes/newToken"
--- @include "includes/dropIdleConsumer"
--- @include "includes/forgetClaim"
local function requeueBatch(jobKey, queueKey, batchesKey, leasesKey, group, idx)
  local held = redis.call("HMGET", batchesKey, "e:" .. idx, "o:" .. idx)
  if held[1] then
    redis.call("XACK", queueKey, group, held[1])
    redis.call("XDEL", queueKey, held[1])
  end
  local newId = redis.call("XADD", queueKey, "*", "b", idx)
  redis.call("HSET", batchesKey, "e:" .. idx, newId, "s:" .. idx, "PENDING",
    "t:" .. idx, newToken(jobKey))
  redis.call("HDEL", batchesKey, "o:" .. idx)
  redis.call("ZREM", leasesKey, idx)
  if held[2] then
    forgetClaim(batchesKey, held[2], idx)
    dropIdleConsumer(queueKey, group, held[2])
  end
end
