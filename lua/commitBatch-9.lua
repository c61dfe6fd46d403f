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

  Claiming the next batch (ARGV[14] set, full commits only): after committing,
  the call claims the worker's next batch exactly as claimBatch does (with
  ARGV[15] as the claim's request id) and appends claimBatch's reply, so that a
  worker running batch after batch needs one round trip between two batches. A
  repeat of such a commit repeats the claim too, which answers as the first
  claim did (the same batch, while the worker still holds it). A STALE or
  JOB_NOT_FOUND commit, and a hand-back, claim nothing: the worker claims on its
  own. The holder's consumer is then kept (the claim reads with it at once).

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
    ARGV[14] worker id to claim the next batch for, or "" to claim nothing
    ARGV[15] that claim's request id (claimBatch's ARGV[6])
    ARGV[16] that claim's stale timeout in ms (claimBatch's ARGV[3])
    ARGV[17] that claim's max attempts per batch (claimBatch's ARGV[4])
    ARGV[18] that claim's longest records returned in the reply (claimBatch's ARGV[9])

  Output:
    {"OK", finalized (0|1), state, summary}  summary: the jobSummary include's figures
                                             when finalized is 1, else empty (a
                                             partial commit finalizes only by
                                             crossing a failure threshold)
    {"OK", finalized, state, summary, claim}  with ARGV[14]: claim is claimBatch's reply
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
--- @include "includes/failOverThreshold"
--- @include "includes/claimNext"
--- @include "includes/settledSlot"
--- @include "includes/claimRecordField"
--- @include "includes/nowMs"
--- @include "includes/seenWorker"

local claimFor = ARGV[14] or ""

-- A full commit's reply, with the next batch's claim appended when asked for.
local function answer(reply)
  if claimFor ~= "" then
    local claim = claimNext(KEYS, group, claimFor, ARGV[16], ARGV[17], ARGV[8], ARGV[15],
      ARGV[12], ARGV[13], tonumber(ARGV[18]))
    if claim[1] ~= "OK" then
      dropIdleConsumer(queueKey, group, claimFor)  -- kept by the commit for this claim
    end
    reply[#reply + 1] = claim
  end
  return reply
end

local clock = rcall("TIME")
local second = tonumber(clock[1])
local slot = "r:" .. (second % 60)
local full = ARGV[9] == ""
local outcome = full and (ARGV[6] == "FAILED" and "failed_batches" or "completed_batches") or nil
-- What this commit reads of the job, in one call; the counters it adds to are
-- written back in one HSET (the script is atomic: nothing changes in between).
local fields = {"state", "processed_records", "failed_records", "settle_seq", slot, "sealed",
  "tolerated_count", "tolerated_percentage", "total_batches", "completed_batches",
  "failed_batches"}
if outcome then
  fields[#fields + 1] = outcome
end
local job = rcall("HMGET", jobKey, unpack(fields))
if not job[1] then
  return {"JOB_NOT_FOUND"}
end
local batch = rcall("HMGET", batchesKey, "s:" .. idx, "t:" .. idx, "e:" .. idx, "o:" .. idx,
  "h:" .. idx, "p:" .. idx, "f:" .. idx)
local settled = batch[1] == "COMPLETED" or batch[1] == "FAILED" or batch[1] == "ENDED"
if (settled and batch[2] == token) or batch[5] == token then
  -- A repeat of a commit that was applied: answer as it did.
  local finalized = finalizedBy(jobKey, token)
  return answer({"OK", finalized, job[1], finalized == 1 and jobSummary(jobKey) or {}})
end
if batch[1] ~= "PROCESSING" or batch[2] ~= token then
  return {"STALE"}
end

local state = job[1]
local ended = state == "ABORTED" or state == "FAILED" or state == "COMPLETED"
local processed, failed = tonumber(ARGV[4]), tonumber(ARGV[5])
local holder = batch[4]

if ARGV[7] ~= "" then
  local earlier = rcall("HGET", failedKey, idx) or ""
  rcall("HSET", failedKey, idx, earlier .. ARGV[7])
end
-- The job's counters, the per-second count of settled records (countSettled's
-- r:<second mod 60> = "<second>:<count>") and, for a full commit, the batch outcome.
local counters = {"processed_records", tonumber(job[2] or "0") + processed,
  "failed_records", tonumber(job[3] or "0") + failed,
  "settle_seq", tonumber(job[4] or "0") + 1}
if processed + failed > 0 then
  counters[#counters + 1] = slot
  counters[#counters + 1] = settledSlot(job[5], second, processed + failed)
end
local settledBatches = 0
if outcome then
  counters[#counters + 1] = outcome
  counters[#counters + 1] = tonumber(job[12] or "0") + 1
  settledBatches = 1
end
rcall("HSET", jobKey, unpack(counters))
local done = {"p:" .. idx, tonumber(batch[6] or "0") + processed,
  "f:" .. idx, tonumber(batch[7] or "0") + failed}
seenWorker(workersKey, holder, nowMs(clock))
local crossed = 0
if ARGV[12] ~= "" or ARGV[13] ~= "" or job[7] or job[8] then
  crossed = failOverThreshold(jobKey, KEYS, ARGV[8], token, ARGV[12], ARGV[13])
end
if crossed == 1 then
  state = "FAILED"
  ended = true
end

if ARGV[9] ~= "" and not ended then
  rcall("HSET", recordsKey, idx, ARGV[9])
  rcall("HSET", batchesKey, "n:" .. idx, ARGV[10], "h:" .. idx, token, unpack(done))
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
local drop = {"o:" .. idx, "d:" .. idx}
-- The holder's claim record too, when it names this batch (forgetClaim, in the same HDEL).
drop[#drop + 1] = claimRecordField(batchesKey, holder, idx)
rcall("HDEL", batchesKey, unpack(drop))
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
if holder ~= claimFor then
  dropIdleConsumer(queueKey, group, holder)
end

if ARGV[9] ~= "" then
  -- A hand-back into an ended job: settle what was done, queue nothing again.
  rcall("HSET", batchesKey, "s:" .. idx, "ENDED", "h:" .. idx, token, unpack(done))
  appendEvent(eventsKey, {"type", "batch:ended", "batch", idx,
    "processed", ARGV[4], "failed", ARGV[5], "skipped", ARGV[10]})
  applyRetention(KEYS, ARGV[8])
  return {"OK", crossed, state, crossed == 1 and jobSummary(jobKey) or {}}
end

rcall("HSET", batchesKey, "s:" .. idx, ARGV[6], unpack(done))
appendEvent(eventsKey, {"type", "batch:" .. string.lower(ARGV[6]), "batch", idx,
  "processed", ARGV[4], "failed", ARGV[5]})

local finalized = crossed
if finalized == 0 and state == "PROCESSING" and job[6] == "1"
  and tonumber(job[10] or "0") + tonumber(job[11] or "0") + settledBatches
    >= tonumber(job[9] or "0") then
  -- Every batch may be settled now: finalizeIfDone decides (and reads again).
  finalized = finalizeIfDone(jobKey, KEYS, ARGV[8], token)
end
if finalized == 1 then
  state = rcall("HGET", jobKey, "state")
elseif state == "ABORTED" or state == "FAILED" or state == "COMPLETED" then
  -- A late commit into a job that already ended: keep its keys on the clock.
  applyRetention(KEYS, ARGV[8])
end
return answer({"OK", finalized, state, finalized == 1 and jobSummary(jobKey) or {}})
