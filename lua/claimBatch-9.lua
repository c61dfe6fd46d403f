--[[
  Claims one batch for a worker, in one round trip: checks the job state,
  reclaims the batch whose lease ran out longest ago (or, if none has, reads a
  new one with XREADGROUP), counts the delivery as an attempt, dead-letters a
  batch delivered more than max_attempts times instead of handing it out,
  issues a fresh fencing token and returns the batch's records.

  Leases: every claimed batch has an entry in the leases sorted set, scored by
  the server time (ms) of its claim or last heartbeat. The entry with the
  lowest score is the one that went stale first, so a claim looks at that one
  entry only (ZRANGE 0 0, O(log N)) and, when it is older than the stale
  timeout, moves that exact queue entry to the caller (XCLAIM by id, min idle
  0: the lease already decided). A dead batch is therefore reclaimed by the
  first claim after its timeout, however many live batches are pending ahead
  of it (XAUTOCLAIM from 0-0 scans a bounded slice of the pending list and,
  with its cursor thrown away, never reaches entries behind live ones).
  Attempts are counted on the batches hash (a:<index>), not by the stream's
  delivery count.

  A dead-lettered batch is FAILED; its records count as failed and stay
  stored so that failed_records can list them. A batch whose records are gone
  from the records hash (evicted, or deleted by hand) is dead-lettered at
  once, as lost: it cannot be processed, and retrying it would only fail
  again. When nothing is claimable the job may be finalized here (its last
  batch was just dead-lettered), and the caller's consumer is dropped from
  the group if it holds nothing.

  Failure thresholds: dead-lettered records count as failed; when they make the
  job's failed records exceed a tolerated count or percentage (the job's own or
  the caller's, ARGV[7] and ARGV[8]), the job moves to FAILED here and the reply
  says finalized. A claim also notes its worker in the workers set (dropping the
  ones not heard of within the stale timeout) and keeps the stale timeout on
  the job (stale_ms) for status readers.

  Redriven batches (retry_failed) hold records from anywhere in the source: their
  x:<index> (JSON list) maps each position, counted from the batch's first index,
  to the record's index in the source; it travels with the claim.

  Repeats: a call is named by its request id (ARGV[6]). A repeat of a call
  whose reply was lost answers as the first did: the same batch, token and
  attempt while the caller still holds that batch (no second batch is taken),
  or the same NO_PENDING_BATCHES reply (dead-lettered batches, finalized flag)
  when the first dead-lettered or finalized. The record of the last such call
  is kept per worker (w:<worker> on the batches hash) until the batch is
  committed, handed back or released.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream (consumer group ARGV[1])
    KEYS[3] records hash
    KEYS[4] batches hash
    KEYS[5] failed hash
    KEYS[6] events stream
    KEYS[7] unique hash (a unique value's digest -> index of its first record)
    KEYS[8] leases sorted set (batch index -> ms of its claim or last heartbeat)
    KEYS[9] workers sorted set (worker id -> ms it was last heard of: claim, heartbeat, commit)

    ARGV[1] consumer group name
    ARGV[2] worker id (consumer name)
    ARGV[3] stale timeout in ms
    ARGV[4] max attempts per batch
    ARGV[5] retention in ms, or "" to keep the job forever
    ARGV[6] request id (unique per call; a retried send repeats it)
    ARGV[7] tolerated failed records, or "" for no limit
    ARGV[8] tolerated failed records in percent of total_records, or "" for no limit

  Output:
    {"OK", batch_index, token, attempt, payload, columns, total_records, dead_lettered,
     duplicates, indexes}  duplicates: the batch's d:<index> JSON from storeBatch, or "";
                           indexes: its x:<index> JSON (a redriven batch), or ""
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
local leasesKey = KEYS[8]
local workersKey = KEYS[9]
local group = ARGV[1]
local worker = ARGV[2]
local staleMs = tonumber(ARGV[3])
local maxAttempts = tonumber(ARGV[4])
local request = ARGV[6]
local finalizer = "claim:" .. request

--- @include "includes/serverTime"
--- @include "includes/firstStreamEntry"
--- @include "includes/entryField"
--- @include "includes/appendEvent"
--- @include "includes/finalizeIfDone"
--- @include "includes/finalizedBy"
--- @include "includes/jobSummary"
--- @include "includes/dropIdleConsumer"
--- @include "includes/failOverThreshold"
--- @include "includes/countSettled"

local function splitList(text)
  local list = {}
  for n in string.gmatch(text, "[^,]+") do
    list[#list + 1] = tonumber(n)
  end
  return list
end

-- What a claim reads of the job, in one call (the script is atomic: a field
-- this call does not write keeps its value until the end).
local job = rcall("HMGET", jobKey, "state", "columns", "total_records", "incarnation",
  "token_seq", "stale_ms", "started_at")
local state = job[1]
if not state then
  return {"JOB_NOT_FOUND"}
end

local function claimed(idx, token, attempt, payload, dead, extra)
  extra = extra or rcall("HMGET", batchesKey, "d:" .. idx, "x:" .. idx)
  return {"OK", tonumber(idx), token, attempt, payload, job[2] or "", tonumber(job[3]),
    dead, extra[1] or "", extra[2] or ""}
end

local last = rcall("HGET", batchesKey, "w:" .. worker)
if last then
  local lastRequest, lastIdx, lastToken, lastDead = string.match(last, "^([^|]*)|([^|]*)|([^|]*)|(.*)$")
  if lastRequest == request then
    if lastIdx == "" then
      return {"NO_PENDING_BATCHES", state, finalizedBy(jobKey, finalizer), splitList(lastDead),
        jobSummary(jobKey)}
    end
    local held = rcall("HMGET", batchesKey, "s:" .. lastIdx, "t:" .. lastIdx, "a:" .. lastIdx)
    local payload = rcall("HGET", recordsKey, lastIdx)
    if held[1] == "PROCESSING" and held[2] == lastToken and payload then
      return claimed(lastIdx, lastToken, tonumber(held[3]), payload, splitList(lastDead))
    end
    -- The batch the first call took is gone from the caller meanwhile: claim anew.
  end
end

if state ~= "PREPARING" and state ~= "PROCESSING" then
  return {"JOB_NOT_PROCESSING", state}
end

local clock = rcall("TIME")
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
rcall("ZREMRANGEBYSCORE", workersKey, "-inf", "(" .. (now - staleMs))
if job[6] ~= ARGV[3] then
  rcall("HSET", jobKey, "stale_ms", ARGV[3])
end

-- Fencing tokens (newToken's form: the job's incarnation and its token
-- sequence), counted here and written back once.
local tokenSeq = tonumber(job[5] or "0")
local function nextToken()
  tokenSeq = tokenSeq + 1
  return (job[4] or "") .. ":" .. tokenSeq
end

-- The next batch to hand out: the stalest lease if it ran out, else a new entry.
-- Returns {entry id, batch index}, or nil when nothing is claimable.
local function nextBatch()
  while true do
    local head = rcall("ZRANGE", leasesKey, 0, 0, "WITHSCORES")
    if #head == 0 or now - tonumber(head[2]) < staleMs then
      break
    end
    local idx = head[1]
    local held = rcall("HMGET", batchesKey, "e:" .. idx, "o:" .. idx)
    rcall("ZREM", leasesKey, idx)
    local moved = {}
    if held[1] then
      moved = rcall("XCLAIM", queueKey, group, worker, 0, held[1], "JUSTID")
    end
    if held[2] and held[2] ~= worker then
      dropIdleConsumer(queueKey, group, held[2])
    end
    if #moved > 0 then
      return {held[1], idx}
    end
    -- A lease without a pending entry (cannot happen through these scripts): drop it.
  end
  local entry = firstStreamEntry(rcall("XREADGROUP", "GROUP", group, worker, "COUNT", 1,
    "STREAMS", queueKey, ">"))
  if entry then
    return {entry[1], entryField(entry, "b")}
  end
  return nil
end

local deadLettered = {}
local crossed = 0
-- Bounded: each turn either returns a batch or dead-letters one.
for _ = 1, 50 do
  local next = nextBatch()
  if not next then
    break
  end
  local entryId, idx = next[1], next[2]
  local batch = rcall("HMGET", batchesKey, "a:" .. idx, "n:" .. idx, "d:" .. idx, "x:" .. idx)
  local attempt = tonumber(batch[1] or "0") + 1
  local token = nextToken()
  local payload = rcall("HGET", recordsKey, idx)
  if attempt > maxAttempts or not payload then
    local count = tonumber(batch[2] or "0")
    rcall("XACK", queueKey, group, entryId)
    rcall("XDEL", queueKey, entryId)
    rcall("HSET", batchesKey, "s:" .. idx, "DEAD", "t:" .. idx, token, "a:" .. idx, attempt)
    rcall("HSET", jobKey, "token_seq", tokenSeq)
    rcall("HINCRBY", batchesKey, "f:" .. idx, count)
    rcall("HDEL", batchesKey, "o:" .. idx)
    rcall("HINCRBY", jobKey, "failed_records", count)
    rcall("HINCRBY", jobKey, "failed_batches", 1)
    appendEvent(eventsKey, {"type", "batch:failed", "batch", idx, "failed", count})
    deadLettered[#deadLettered + 1] = tonumber(idx)
    deadLettered[#deadLettered + 1] = payload and attempt - 1 or 0
    rcall("HINCRBY", jobKey, "settle_seq", 1)
    countSettled(jobKey, count)
    crossed = failOverThreshold(jobKey, KEYS, ARGV[5], finalizer, ARGV[7], ARGV[8])
    if crossed == 1 then
      break
    end
  else
    rcall("HSET", batchesKey, "s:" .. idx, "PROCESSING", "t:" .. idx, token,
      "o:" .. idx, worker, "e:" .. idx, entryId, "a:" .. idx, attempt,
      "w:" .. worker, request .. "|" .. idx .. "|" .. token .. "|" .. table.concat(deadLettered, ","))
    rcall("ZADD", leasesKey, now, idx)
    rcall("ZADD", workersKey, now, worker)  -- seenWorker
    if job[7] then
      rcall("HSET", jobKey, "token_seq", tokenSeq)
    else
      rcall("HSET", jobKey, "token_seq", tokenSeq, "started_at",
        string.format("%d.%06d", clock[1], clock[2]))  -- serverTime
    end
    return claimed(idx, token, attempt, payload, deadLettered, {batch[3], batch[4]})
  end
end

dropIdleConsumer(queueKey, group, worker)
local finalized = crossed
if finalized == 0 then
  finalized = finalizeIfDone(jobKey, KEYS, ARGV[5], finalizer)
end
if finalized == 1 or #deadLettered > 0 then
  rcall("HSET", batchesKey, "w:" .. worker, request .. "|||" .. table.concat(deadLettered, ","))
end
return {"NO_PENDING_BATCHES", rcall("HGET", jobKey, "state"), finalized, deadLettered,
  jobSummary(jobKey)}
