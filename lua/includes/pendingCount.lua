-- Number of entries in the consumer group's pending entries list: the batches
-- currently claimed by some worker.
local function pendingCount(queueKey, group)
  local summary = redis.call("XPENDING", queueKey, group)
  return tonumber(summary[1]) or 0
end
