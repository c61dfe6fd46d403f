-- Returns a claimed batch to the back of the queue: revokes the holder's token
-- (any later commit or heartbeat with it is refused), acknowledges and removes
-- its old entry, and publishes a fresh one. Acknowledging before deleting keeps
-- the entry out of XAUTOCLAIM's deleted-entry report.
local function requeueBatch(jobKey, queueKey, batchesKey, group, idx)
  local oldId = redis.call("HGET", batchesKey, "e:" .. idx)
  if oldId then
    redis.call("XACK", queueKey, group, oldId)
    redis.call("XDEL", queueKey, oldId)
  end
  local newId = redis.call("XADD", queueKey, "*", "b", idx)
  local revoked = redis.call("HINCRBY", jobKey, "token_seq", 1)
  redis.call("HSET", batchesKey, "e:" .. idx, newId, "s:" .. idx, "PENDING",
    "t:" .. idx, revoked)
  redis.call("HDEL", batchesKey, "o:" .. idx)
end
