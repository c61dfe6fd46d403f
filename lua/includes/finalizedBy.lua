-- 1 when the call named ``by`` is the one that finalized the job, else 0.
local function finalizedBy(jobKey, by)
  if redis.call("HGET", jobKey, "finalized_by") == by then
    return 1
  end
  return 0
end
