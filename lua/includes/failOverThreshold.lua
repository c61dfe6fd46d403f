-- Moves a job that has not ended (PREPARING, PROCESSING, PAUSED) to FAILED once
-- its failed records (invalid and failed in processing) strictly exceed a
-- tolerated count, or a tolerated percentage of total_records (what is stored so
-- far while preparing). The limits are the job's own (tolerated_count,
-- tolerated_percentage, stored by prepare) and the caller's (count, percentage;
-- "" for none): whichever is crossed first. Records job:completed, keeps ``by``
-- as finalized_by and starts the retention clock, like finalizeIfDone. Returns 1
-- when this call failed the job, else 0.
--- @include "includes/serverTime"
--- @include "includes/applyRetention"
--- @include "includes/appendEvent"
local function failOverThreshold(jobKey, allKeys, retentionMs, by, count, percentage)
  local f = redis.call("HMGET", jobKey, "state", "failed_records", "total_records",
    "tolerated_count", "tolerated_percentage")
  if f[1] ~= "PREPARING" and f[1] ~= "PROCESSING" and f[1] ~= "PAUSED" then
    return 0
  end
  local failed = tonumber(f[2] or "0")
  local total = tonumber(f[3] or "0")
  local why = nil
  for _, limit in ipairs({count or "", f[4] or ""}) do
    if limit ~= "" and failed > tonumber(limit) then
      why = failed .. " failed records, more than the " .. limit .. " tolerated"
    end
  end
  for _, limit in ipairs({percentage or "", f[5] or ""}) do
    if limit ~= "" and failed * 100 > tonumber(limit) * total then
      why = failed .. " of " .. total .. " records failed, more than the " .. limit
        .. "% tolerated"
    end
  end
  if not why then
    return 0
  end
  redis.call("HSET", jobKey, "state", "FAILED", "completed_at", serverTime(),
    "finalized_by", by, "error", "failure threshold crossed: " .. why)
  appendEvent(allKeys[6], {"type", "job:completed", "state", "FAILED"})
  applyRetention(allKeys, retentionMs)
  return 1
end
