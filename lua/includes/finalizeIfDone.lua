-- Moves a sealed, running job whose every batch is terminal to its final state
-- (FAILED if any batch failed, else COMPLETED), records job:completed on the
-- event stream and starts the retention clock on every key. Returns 1 when this
-- call did it, 0 otherwise: exactly one caller across all workers ever sees 1.
-- ``by`` names the call (a commit's token, "claim:<request>", "seal:<nonce>",
-- "resume:<request>") and is kept as finalized_by, so that a repeat of that very
-- call (its reply was lost) can answer 1 again.
-- allKeys is the nine-key job layout (job, queue, records, batches, failed, events,
-- unique, leases, workers).
-- A redriven job (retry_failed) is FAILED only if a batch of its current attempt
-- failed: attempt_failed_base holds the failed batches of earlier attempts.
--- @include "includes/serverTime"
--- @include "includes/applyRetention"
--- @include "includes/appendEvent"
local function finalizeIfDone(jobKey, allKeys, retentionMs, by)
  local f = redis.call("HMGET", jobKey, "state", "sealed", "total_batches",
    "completed_batches", "failed_batches", "attempt_failed_base")
  if f[1] ~= "PROCESSING" or f[2] ~= "1" then
    return 0
  end
  local failed = tonumber(f[5] or "0")
  if tonumber(f[4] or "0") + failed < tonumber(f[3] or "0") then
    return 0
  end
  local final = "COMPLETED"
  if failed > tonumber(f[6] or "0") then
    final = "FAILED"
  end
  redis.call("HSET", jobKey, "state", final, "completed_at", serverTime(), "finalized_by", by)
  appendEvent(allKeys[6], {"type", "job:completed", "state", final})
  applyRetention(allKeys, retentionMs)
  return 1
end
