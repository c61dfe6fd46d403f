-- The field of a worker's claim record (w:<worker> on the batches hash, kept so
-- that a repeated claim answers as the first) when that record names batch
-- ``idx``, else nil: the field to delete once the batch is committed, handed
-- back or released, since no repeat of that claim can follow.
local function claimRecordField(batchesKey, worker, idx)
  if not worker then
    return nil
  end
  local field = "w:" .. worker
  local record = redis.call("HGET", batchesKey, field)
  if record and string.match(record, "^[^|]*|([^|]*)|") == tostring(idx) then
    return field
  end
  return nil
end
