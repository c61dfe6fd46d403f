-- The job's final figures, appended to a reply that finalized the job:
-- {state, total_records, processed_records, failed_records, created_at, completed_at}.
local function jobSummary(jobKey)
  return redis.call("HMGET", jobKey, "state", "total_records", "processed_records",
    "failed_records", "created_at", "completed_at")
end
