-- Notes that a worker was heard of now (it claimed, heartbeated or committed):
-- its score in the job's workers sorted set becomes the server's time in ms
-- (``ms``, when the caller has read the clock already). Status counts the
-- members heard of within the stale timeout; claims trim the older ones, so
-- the set stays as small as the number of live workers.
--- @include "includes/nowMs"
local function seenWorker(workersKey, worker, ms)
  if not worker or worker == "" then
    return
  end
  redis.call("ZADD", workersKey, ms or nowMs(), worker)
end
