-- Whether this control call (pause, resume, abort) is a repeat of the last one
-- that changed the job, by its request id (kept as last_control on the job).
local function repeatedControl(jobKey, request)
  return request ~= "" and redis.call("HGET", jobKey, "last_control") == request
end
