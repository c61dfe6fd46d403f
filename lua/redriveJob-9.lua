--[[
  Redrives a finished job (COMPLETED or FAILED) within the same job id: a new
  attempt. In one atomic step it
    - takes the records chosen for another try out of the failed hash (the caller
      read that hash, chose, and sends what each batch keeps: ARGV[9...]),
    - publishes them as new batches of the job (ARGV after the rewritten
      entries); each new batch's x:<index> maps its positions to the records'
      indexes in the source,
    - queues again, in place, the dead-lettered batches and the batches handed
      back into the ended job (ARGV[6]; their records are still stored), with
      fresh attempts,
    - revokes and queues again every batch still claimed by a worker of the
      ended attempt (its commit is refused from now on: fencing),
    - subtracts what it took from failed_records (a record counts once, by its
      latest outcome; processed records are kept), and moves the job back to
      PROCESSING with attempt + 1. Batches that failed in earlier attempts are
      remembered (attempt_failed_base): the new attempt ends FAILED only if one
      of its own batches fails (or a failure threshold is crossed).
  The keys lose their retention TTL until the new attempt ends; the workers set
  starts empty (status counts the new attempt's workers). total_records never
  changes.

  The caller read the failed hash and the batch states at settle_seq ARGV[3];
  if any commit or dead-letter came in since, nothing is written and the reply
  is STALE (read again and retry). When nothing is left to run (no record
  chosen, no batch to queue again, none still queued), nothing is written and
  the count is 0.

  Repeats: the call is named by its request id (last_redrive on the job holds
  "<request>|<count>"); a repeat answers the same count and attempt.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] records hash
    KEYS[4] batches hash
    KEYS[5] failed hash
    KEYS[6] events stream
    KEYS[7] unique hash (a unique value's digest -> index of its first record)
    KEYS[8] leases sorted set (batch index -> ms of its claim or last heartbeat)
    KEYS[9] workers sorted set (worker id -> ms it was last heard of)

    ARGV[1] consumer group name
    ARGV[2] request id (unique per call; a retried send repeats it)
    ARGV[3] the job's settle_seq when the caller read it ("0" when it had none)
    ARGV[4] records in batches still queued (never claimed), counted by the caller
    ARGV[5] records taken out of the failed hash
    ARGV[6] indexes of batches to queue again in place, comma-separated (DEAD, ENDED)
    ARGV[7] R, the number of failed-hash entries rewritten
    ARGV[8] B, the number of new batches
    ARGV[9 ...] R triples: batch index, the failed records it keeps (length-
            prefixed msgpack parts, "" for none), records taken from it
    then B triples: payload (msgpack batch), record count, indexes (JSON list)

  Output:
    {"OK", records, attempt}  records: how many will run in the new attempt (0:
                              nothing changed); attempt: the job's attempt now
    {"STALE"}                 a commit came in since the caller read: retry
    {"JOB_NOT_FOUND"}
    {"JOB_NOT_PROCESSING", state}  the job has not finished, was ABORTED, or its
                                   prepare never completed (FAILED while preparing)
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local recordsKey = KEYS[3]
local batchesKey = KEYS[4]
local failedKey = KEYS[5]
local eventsKey = KEYS[6]
local leasesKey = KEYS[8]
local group = ARGV[1]

--- @include "includes/serverTime"
--- @include "includes/newToken"
--- @include "includes/requeueBatch"
--- @include "includes/appendEvent"

local job = rcall("HMGET", jobKey, "state", "settle_seq", "last_redrive", "attempt",
  "total_batches", "failed_batches", "attempt_batches", "sealed")
local state = job[1]
if not state then
  return {"JOB_NOT_FOUND"}
end
local attempt = tonumber(job[4] or "1")
if job[3] then
  local request, count = string.match(job[3], "^(.*)|(%d+)$")
  if request == ARGV[2] then
    return {"OK", tonumber(count), attempt}
  end
end
if (state ~= "COMPLETED" and state ~= "FAILED") or job[8] ~= "1" then
  return {"JOB_NOT_PROCESSING", state}
end
if (job[2] or "0") ~= ARGV[3] then
  return {"STALE"}
end

-- What will run: first counted without writing anything.
local count = tonumber(ARGV[4]) + tonumber(ARGV[5])
local inPlace = {}
for idx in string.gmatch(ARGV[6], "[^,]+") do
  local b = rcall("HMGET", batchesKey, "s:" .. idx, "n:" .. idx)
  if (b[1] == "DEAD" or b[1] == "ENDED") and rcall("HEXISTS", recordsKey, idx) == 1 then
    inPlace[#inPlace + 1] = {idx, b[1], tonumber(b[2] or "0")}
    count = count + tonumber(b[2] or "0")
  end
end
local held = rcall("ZRANGE", leasesKey, 0, -1)
for _, idx in ipairs(held) do
  count = count + tonumber(rcall("HGET", batchesKey, "n:" .. idx) or "0")
end
if count == 0 then
  return {"OK", 0, attempt}
end

for _, idx in ipairs(held) do
  requeueBatch(jobKey, queueKey, batchesKey, leasesKey, group, idx)
end

local rewritten, added = tonumber(ARGV[7]), tonumber(ARGV[8])
local pos = 9
for _ = 1, rewritten do
  local idx, kept, taken = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2]
  if kept == "" then
    rcall("HDEL", failedKey, idx)
  else
    rcall("HSET", failedKey, idx, kept)
  end
  rcall("HINCRBY", batchesKey, "f:" .. idx, -tonumber(taken))
  pos = pos + 3
end

local failedRecords = tonumber(ARGV[5])
local failedBatches = tonumber(job[6] or "0")
for _, entry in ipairs(inPlace) do
  local idx, was, n = entry[1], entry[2], entry[3]
  if was == "DEAD" then
    failedBatches = failedBatches - 1
    failedRecords = failedRecords + n
    rcall("HINCRBY", batchesKey, "f:" .. idx, -n)
  end
  local id = rcall("XADD", queueKey, "*", "b", idx)
  rcall("HSET", batchesKey, "s:" .. idx, "PENDING", "e:" .. idx, id, "a:" .. idx, 0,
    "t:" .. idx, newToken(jobKey))
end

local total = tonumber(job[5] or "0")
local starts = job[7]
if added > 0 then
  starts = (starts and (starts .. ",") or "") .. total
end
for _ = 1, added do
  local payload, n, indexes = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2]
  rcall("HSET", recordsKey, total, payload)
  local id = rcall("XADD", queueKey, "*", "b", total)
  rcall("HSET", batchesKey, "n:" .. total, n, "s:" .. total, "PENDING", "e:" .. total, id,
    "a:" .. total, 0, "x:" .. total, indexes)
  total = total + 1
  pos = pos + 3
end

attempt = attempt + 1
rcall("HINCRBY", jobKey, "failed_records", -failedRecords)
rcall("HSET", jobKey, "state", "PROCESSING", "attempt", attempt, "total_batches", total,
  "failed_batches", failedBatches, "attempt_failed_base", failedBatches,
  "attempt_started_at", serverTime(), "last_redrive", ARGV[2] .. "|" .. count)
if starts then
  rcall("HSET", jobKey, "attempt_batches", starts)
end
rcall("HDEL", jobKey, "completed_at", "error")
rcall("DEL", KEYS[9])  -- the workers of the ended attempt are gone: count the new ones
for i = 1, #KEYS do
  rcall("PERSIST", KEYS[i])
end
appendEvent(eventsKey, {"type", "job:redriven", "attempt", attempt, "records", count})
return {"OK", count, attempt}
