-- Forgets the claim record of a worker (w:<worker> on the batches hash, kept
-- so that a repeated claim answers as the first) when it names this batch:
-- the batch was committed, handed back or released, so no repeat can follow.
local function forgetClaim(batchesKey, worker, idx)
  if not worker then
    return
  end
  local record = redis.call("HGET", batchesKey, "w:" .. worker)
  if record and string.match(record, "^[^|]*|([^|]*)|") == tostring(idx) then
    redis.call("HDEL", batchesKey, "w:" .. worker)
  end
end
