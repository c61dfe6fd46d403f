-- Forgets the claim record of a worker when it names this batch (see
-- claimRecordField): the batch was committed, handed back or released.
--- @include "includes/claimRecordField"
local function forgetClaim(batchesKey, worker, idx)
  local field = claimRecordField(batchesKey, worker, idx)
  if field then
    redis.call("HDEL", batchesKey, field)
  end
end
