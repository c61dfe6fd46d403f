--[[
  Claims one batch for a worker, in one round trip: checks the job state,
  reclaims a batch idle past the stale timeout through XAUTOCLAIM (or, failing
  that, reads a new one with XREADGROUP), counts the delivery as an attempt,
  dead-letters a batch delivered more than max_attempts times instead of
  handing it out, issues a fresh fencing token and returns the batch's records.

  A dead-lettered batch is FAILED; its records count as failed and stay
  stored so that failed_records can list them. A batch whose records are gone
  from the records hash (evicted, or deleted by hand) is dead-lettered at
  once, as lost: it cannot be processed, and retrying it would only fail
  again. When nothing is claimable the job may be finalized here (its last
  batch was just dead-lettered).

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream (consumer group ARGV[1])
    KEYS[3] records hash
    KEYS[4] batches hash
    KEYS[5] failed hash
    KEYS[6] events stream
    KEYS[7] unique hash (a unique value's digest -> index of its first record)

    ARGV[1] consumer group name
    ARGV[2] worker id (consumer name)
    ARGV[3] stale timeout in ms
    ARGV[4] max attempts per batch
    ARGV[5] retention in ms, or "" to keep the job forever

  Output:
    {"OK", batch_index, token, attempt, payload, columns, total_records, dead_lettered,
     duplicates}  duplicates: the batch's d:<index> JSON from storeBatch, or ""
    {"NO_PENDING_BATCHES", state, finalized (0|1), dead_lettered, summary}
    {"JOB_NOT_FOUND"}
    {"JOB_NOT_PROCESSING", state}
  where dead_lettered is a flat list {batch_index, attempts, ...} of the
  batches this call dead-lettered (attempts 0: its records were missing), and
  summary the jobSummary include's figures (meaningful when finalized is 1).
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local recordsKey = KEYS[3]
local batchesKey = KEYS[4]
local eventsKey = KEYS[6]
local group = ARGV[1]
local worker = ARGV[2]
local staleMs = ARGV[3]
local maxAttempts = tonumber(ARGV[4])

--- @include "includes/serverTime"
--- @include "includes/firstStreamEntry"
--- @include "includes/entryField"
--- @include "includes/appendEvent"
--- @include "includes/finalizeIfDone"
--- @include "includes/jobSummary"

local state = rcall("HGET", jobKey, "state")
if not state then
  return {"JOB_NOT_FOUND"}
end
if state ~= "PREPARING" and state ~= "PROCESSING" then
  return {"JOB_NOT_PROCESSING", state}
end

local function nextEntry()
  local reclaimed = rcall("XAUTOCLAIM", queueKey, group, worker, staleMs, "0-0", "COUNT", 1)
  local entries = reclaimed[2]
  if type(entries) == "table" and #entries > 0 and type(entries[1]) == "table" then
    return entries[1]
  end
  return firstStreamEntry(rcall("XREADGROUP", "GROUP", group, worker, "COUNT", 1,
    "STREAMS", queueKey, ">"))
end

local deadLettered = {}
-- Bounded: each turn either returns a batch or dead-letters one.
for _ = 1, 50 do
  local entry = nextEntry()
  if not entry then
    break
  end
  local idx = entryField(entry, "b")
  local attempt = rcall("HINCRBY", batchesKey, "a:" .. idx, 1)
  local token = rcall("HINCRBY", jobKey, "token_seq", 1)
  local payload = rcall("HGET", recordsKey, idx)
  if attempt > maxAttempts or not payload then
    local count = tonumber(rcall("HGET", batchesKey, "n:" .. idx) or "0")
    rcall("XACK", queueKey, group, entry[1])
    rcall("XDEL", queueKey, entry[1])
    rcall("HSET", batchesKey, "s:" .. idx, "DEAD", "t:" .. idx, token)
    rcall("HINCRBY", batchesKey, "f:" .. idx, count)
    rcall("HDEL", batchesKey, "o:" .. idx)
    rcall("HINCRBY", jobKey, "failed_records", count)
    rcall("HINCRBY", jobKey, "failed_batches", 1)
    appendEvent(eventsKey, {"type", "batch:failed", "batch", idx, "failed", count})
    deadLettered[#deadLettered + 1] = tonumber(idx)
    deadLettered[#deadLettered + 1] = payload and attempt - 1 or 0
  else
    rcall("HSET", batchesKey, "s:" .. idx, "PROCESSING", "t:" .. idx, token,
      "o:" .. idx, worker, "e:" .. idx, entry[1])
    if rcall("HEXISTS", jobKey, "started_at") == 0 then
      rcall("HSET", jobKey, "started_at", serverTime())
    end
    local job = rcall("HMGET", jobKey, "columns", "total_records")
    return {"OK", tonumber(idx), token, attempt, payload, job[1] or "", tonumber(job[2]),
      deadLettered, rcall("HGET", batchesKey, "d:" .. idx) or ""}
  end
end

local finalized = finalizeIfDone(jobKey, KEYS, ARGV[5])
return {"NO_PENDING_BATCHES", rcall("HGET", jobKey, "state"), finalized, deadLettered,
  jobSummary(jobKey)}
