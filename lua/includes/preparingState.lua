-- The state of a job that may still take batches (PREPARING, or PAUSED while
-- preparing), or nil and the reply that refuses the caller.
local function preparingState(jobKey)
  local state = redis.call("HGET", jobKey, "state")
  if not state then
    return nil, {"JOB_NOT_FOUND"}
  end
  if state ~= "PREPARING" and state ~= "PAUSED" then
    return nil, {"JOB_NOT_PROCESSING", state}
  end
  return state, nil
end
