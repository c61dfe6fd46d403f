--[[
  Commits a processed batch: refused unless the caller still holds the batch
  with the same fencing token (a batch reclaimed or released since is not the
  caller's to write). Acknowledges the queue entry, ends the batch's lease,
  deletes the raw records, stores the batch's counts and failed records, adds
  them to the job's counters once, and finalizes the job when it was the last
  batch of a sealed job. One atomic script: exactly-once accounting and
  finalization. The holder's consumer is dropped from the group once it holds
  nothing (one XPENDING for that consumer, no scan of the group).

  A partial commit (ARGV[9] set: the worker's time budget ran out, or it was
  stopped) settles the records the worker finished and hands the rest back:
  the remainder replaces the batch's records, and the batch returns to the
  queue with its holder's token revoked; the hand-back does not count as an
  attempt. Failed records accumulate across partial commits (ARGV[7] parts
  are appended, each already length-prefixed by the caller). Into a job that
  has ended meanwhile (ABORTED, or FAILED while preparing) the remainder is not
  queued again: what was done is settled, the batch ends as ENDED (its other
  records are never processed: skipped), the job keeps its state and every
  key gets the retention TTL. Into a FAILED job the remainder is kept as the
  batch's records, so that a redrive (retry_failed) can queue it again. A full commit into an ended
  job is counted the same way and the keys get the TTL too.

  Failure thresholds: when the job's failed records come to exceed a tolerated
  count or percentage (the job's own, set by prepare, or the caller's: ARGV[12],
  ARGV[13]), this commit moves the job to FAILED at once and answers finalized:
  no batch is claimed afterwards; commits already in flight are still counted.

  Every commit also counts its settled records per second on the job hash (the
  status's rate), notes its worker in the workers set, and bumps the job's
  settle_seq (a redrive reads the failed records and refuses to apply what it
  read if a commit came in between).

  Repeats: a commit is named by its token. A repeat of a commit that was
  applied (its reply was lost and redis-py sent it again) changes nothing and
  answers OK with the same finalized flag (the job keeps the finalizing
  token as finalized_by) and the job's summary: exactly one call across all
  workers ever reports the finalization. A repeat of a partial commit
  (recognised by h:<index>, the token that handed the batch back) answers OK,
  not finalized, even when the batch was claimed again since.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] records hash
    KEYS[4] batches hash
    KEYS[5] failed hash
    KEYS[6] events stream
    KEYS[7] unique hash (a unique value's digest -> index of its first record)
    KEYS[8] leases sorted set (batch index -> ms of its claim or last heartbeat)
    KEYS[9] workers sorted set (worker id -> ms it was last heard of: claim, heartbeat, commit)

    ARGV[1] consumer group name
    ARGV[2] batch index
    ARGV[3] fencing token from the claim
    ARGV[4] processed record count
    ARGV[5] failed record count
    ARGV[6] batch outcome: "COMPLETED" or "FAILED"
    ARGV[7] failed records (a length-prefixed msgpack part), or "" when none failed
    ARGV[8] retention in ms, or "" to keep the job forever
    ARGV[9] the remainder handed back (msgpack batch), or "" for a full commit
    ARGV[10] the remainder's record count
    ARGV[11] the remainder's duplicates (JSON, as storeBatch writes them), or ""
    ARGV[12] tolerated failed records, or "" for no limit
    ARGV[13] tolerated failed records in percent of total_records, or "" for no limit

  Output:
    {"OK", finalized (0|1), state, summary}  summary: the jobSummary include's figures
                                             (a partial commit finalizes only by
                                             crossing a failure threshold)
    {"STALE"}          the caller no longer holds the batch: nothing was written
    {"JOB_NOT_FOUND"}  the job was deleted
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local recordsKey = KEYS[3]
local batchesKey = KEYS[4]
local failedKey = KEYS[5]
local eventsKey = KEYS[6]
local leasesKey = KEYS[8]
local workersKey = KEYS[9]
local group = ARGV[1]
local idx = ARGV[2]
local token = ARGV[3]

--- @include "includes/applyRetention"
--- @include "includes/appendEvent"
--- @include "includes/finalizeIfDone"
--- @include "includes/finalizedBy"
--- @include "includes/jobSummary"
--- @include "includes/requeueBatch"
--- @include "includes/dropIdleConsumer"
--- @include "includes/forgetClaim"
--- @include "includes/failOverThreshold"
--- @include "includes/countSettled"
--- @include "includes/seenWorker"

if rcall("EXISTS", jobKey) == 0 then
  return {"JOB_NOT_FOUND"}
end
local batch = rcall("HMGET", batchesKey, "s:" .. idx, "t:" .. idx, "e:" .. idx, "o:" .. idx,
  "h:" .. idx)
local settled = batch[1] == "COMPLETED" or batch[1] == "FAILED" or batch[1] == "ENDED"
if (settled and batch[2] == token) or batch[5] == token then
  -- A repeat of a commit that was applied: answer as it did.
  return {"OK", finalizedBy(jobKey, token), rcall("HGET", jobKey, "state"), jobSummary(jobKey)}
end
if batch[1] ~= "PROCESSING" or batch[2] ~= token then
  return {"STALE"}
end

local state = rcall("HGET", jobKey, "state")
local ended = state == "ABORTED" or state == "FAILED" or state == "COMPLETED"

if ARGV[7] ~= "" then
  local earlier = rcall("HGET", failedKey, idx) or ""
  rcall("HSET", failedKey, idx, earlier .. ARGV[7])
end
rcall("HINCRBY", jobKey, "processed_records", ARGV[4])
rcall("HINCRBY", jobKey, "failed_records", ARGV[5])
rcall("HINCRBY", batchesKey, "p:" .. idx, ARGV[4])
rcall("HINCRBY", batchesKey, "f:" .. idx, ARGV[5])
rcall("HINCRBY", jobKey, "settle_seq", 1)
countSettled(jobKey, tonumber(ARGV[4]) + tonumber(ARGV[5]))
seenWorker(workersKey, batch[4])
local crossed = failOverThreshold(jobKey, KEYS, ARGV[8], token, ARGV[12], ARGV[13])
if crossed == 1 then
  state = "FAILED"
  ended = true
end

if ARGV[9] ~= "" and not ended then
  rcall("HSET", recordsKey, idx, ARGV[9])
  rcall("HSET", batchesKey, "n:" .. idx, ARGV[10], "h:" .. idx, token)
  if ARGV[11] ~= "" then
    rcall("HSET", batchesKey, "d:" .. idx, ARGV[11])
  else
    rcall("HDEL", batchesKey, "d:" .. idx)
  end
  requeueBatch(jobKey, queueKey, batchesKey, leasesKey, group, idx)
  rcall("HINCRBY", batchesKey, "a:" .. idx, -1)
  appendEvent(eventsKey, {"type", "batch:handed-back", "batch", idx,
    "processed", ARGV[4], "failed", ARGV[5], "remaining", ARGV[10]})
  return {"OK", 0, state, jobSummary(jobKey)}
end

rcall("XACK", queueKey, group, batch[3])
rcall("XDEL", queueKey, batch[3])
rcall("ZREM", leasesKey, idx)
rcall("HDEL", batchesKey, "o:" .. idx, "d:" .. idx)
if ARGV[9] ~= "" and state == "FAILED" then
  -- Kept for a redrive (an ABORTED job has none).
  rcall("HSET", recordsKey, idx, ARGV[9])
  rcall("HSET", batchesKey, "n:" .. idx, ARGV[10])
  if ARGV[11] ~= "" then
    rcall("HSET", batchesKey, "d:" .. idx, ARGV[11])
  end
else
  rcall("HDEL", recordsKey, idx)
end
forgetClaim(batchesKey, batch[4], idx)
dropIdleConsumer(queueKey, group, batch[4])

if ARGV[9] ~= "" then
  -- A hand-back into an ended job: settle what was done, queue nothing again.
  rcall("HSET", batchesKey, "s:" .. idx, "ENDED", "h:" .. idx, token)
  appendEvent(eventsKey, {"type", "batch:ended", "batch", idx,
    "processed", ARGV[4], "failed", ARGV[5], "skipped", ARGV[10]})
  applyRetention(KEYS, ARGV[8])
  return {"OK", crossed, state, jobSummary(jobKey)}
end

rcall("HSET", batchesKey, "s:" .. idx, ARGV[6])
if ARGV[6] == "FAILED" then
  rcall("HINCRBY", jobKey, "failed_batches", 1)
else
  rcall("HINCRBY", jobKey, "completed_batches", 1)
end
appendEvent(eventsKey, {"type", "batch:" .. string.lower(ARGV[6]), "batch", idx,
  "processed", ARGV[4], "failed", ARGV[5]})

local finalized = crossed
if finalized == 0 then
  finalized = finalizeIfDone(jobKey, KEYS, ARGV[8], token)
end
state = rcall("HGET", jobKey, "state")
if finalized == 0 and (state == "ABORTED" or state == "FAILED" or state == "COMPLETED") then
  -- A late commit into a job that already ended: keep its keys on the clock.
  applyRetention(KEYS, ARGV[8])
end
return {"OK", finalized, state, jobSummary(jobKey)}
