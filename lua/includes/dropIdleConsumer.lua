-- Removes a consumer from the group once it holds no pending entry, so worker
-- ids do not pile up as consumers. O(log N): one XPENDING for that consumer,
-- COUNT 1. Never drops a consumer that still holds an entry (DELCONSUMER would
-- drop its pending entries with it).
local function dropIdleConsumer(queueKey, group, consumer)
  if not consumer or consumer == "" then
    return
  end
  local held = redis.call("XPENDING", queueKey, group, "-", "+", 1, consumer)
  if #held == 0 then
    redis.call("XGROUP", "DELCONSUMER", queueKey, group, consumer)
  end
end
