-- Claims one batch for a worker and returns claimBatch's reply: the whole of
-- claimBatch (see its header for the guarantees, the repeats and the reply
-- shapes), callable from another script so that a commit can claim its
-- worker's next batch in the same call and round trip. keys is the nine-key job
-- layout (job, queue, records, batches, failed, events, unique, leases, workers).
--- @include "includes/firstStreamEntry"
--- @include "includes/entryField"
--- @include "includes/appendEvent"
--- @include "includes/finalizeIfDone"
--- @include "includes/finalizedBy"
--- @include "includes/jobSummary"
--- @include "includes/dropIdleConsumer"
--- @include "includes/failOverThreshold"
--- @include "includes/countSettled"
--- @include "includes/nowMs"
--- @include "includes/serverTime"
--- @include "includes/seenWorker"
--- @include "includes/fencingToken"
local function claimNext(keys, group, worker, staleText, maxAttempts, retention, request,
    tolCount, tolPct, inlineLimit)
  local rcall = redis.call
  local jobKey, queueKey, recordsKey, batchesKey = keys[1], keys[2], keys[3], keys[4]
  local eventsKey, leasesKey, workersKey = keys[6], keys[8], keys[9]
  local staleMs = tonumber(staleText)
  maxAttempts = tonumber(maxAttempts)
  local finalizer = "claim:" .. request

  -- A batch's records, their length when over inlineLimit, or false when the
  -- batch has none stored. A caller whose ACL refuses HSTRLEN (one written
  -- before the limit) gets the records whole.
  local function records(idx)
    local size = inlineLimit and redis.pcall("HSTRLEN", recordsKey, idx)
    if type(size) ~= "number" then
      return rcall("HGET", recordsKey, idx)
    end
    if size == 0 then
      return false
    end
    return size > inlineLimit and size or rcall("HGET", recordsKey, idx)
  end

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
      local payload = records(lastIdx)
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
  local now = nowMs(clock)
  rcall("ZREMRANGEBYSCORE", workersKey, "-inf", "(" .. (now - staleMs))
  if job[6] ~= staleText then
    rcall("HSET", jobKey, "stale_ms", staleText)
  end

  -- Fencing tokens (newToken's form: the job's incarnation and its token
  -- sequence), counted here and written back once.
  local tokenSeq = tonumber(job[5] or "0")
  local function nextToken()
    tokenSeq = tokenSeq + 1
    return fencingToken(job[4], tokenSeq)
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
    local payload = records(idx)
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
      crossed = failOverThreshold(jobKey, keys, retention, finalizer, tolCount, tolPct)
      if crossed == 1 then
        break
      end
    else
      rcall("HSET", batchesKey, "s:" .. idx, "PROCESSING", "t:" .. idx, token,
        "o:" .. idx, worker, "e:" .. idx, entryId, "a:" .. idx, attempt,
        "w:" .. worker, request .. "|" .. idx .. "|" .. token .. "|" .. table.concat(deadLettered, ","))
      rcall("ZADD", leasesKey, now, idx)
      seenWorker(workersKey, worker, now)
      if job[7] then
        rcall("HSET", jobKey, "token_seq", tokenSeq)
      else
        rcall("HSET", jobKey, "token_seq", tokenSeq, "started_at", serverTime(clock))
      end
      return claimed(idx, token, attempt, payload, deadLettered, {batch[3], batch[4]})
    end
  end

  dropIdleConsumer(queueKey, group, worker)
  local finalized = crossed
  if finalized == 0 then
    finalized = finalizeIfDone(jobKey, keys, retention, finalizer)
  end
  if finalized == 1 or #deadLettered > 0 then
    rcall("HSET", batchesKey, "w:" .. worker, request .. "|||" .. table.concat(deadLettered, ","))
  end
  return {"NO_PENDING_BATCHES", rcall("HGET", jobKey, "state"), finalized, deadLettered,
    jobSummary(jobKey)}
end
