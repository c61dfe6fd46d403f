--[[
  Stores one batch's records and publishes it on the queue, atomically, so a
  worker can claim it at once. Idempotent: storing an index that is already
  stored changes nothing (a retried pipeline or a resumed prepare is safe).
  Refused once the job is sealed (another prepare of it completed).

  The payload itself does not pass through this script (a Lua string costs the
  server time for every byte): the caller sends "HSETNX <records hash> <index>
  <payload>" just before this call, in the same pipeline on the same
  connection; a new batch whose payload is not there is not stored (an error
  reply: the caller did not send it). HSETNX never overwrites: a repeat
  cannot replace the remainder a partial commit left. When it wrote a payload
  where none belongs (this call refuses a new batch, or repeats one whose
  records a commit has deleted since: COMPLETED, FAILED, or ENDED in a job that
  is not FAILED), the script deletes it, so that no payload outlives its batch.

  Repeats: a repeat stores nothing more and answers OK with the state and the
  unclaimed count of its own time (what the first answered, give or take the
  claims made in between).

  Uniqueness: each (digest, position, field) entry of ARGV[5] is looked up
  in the unique hash; the first record to bring a digest owns it, and every
  later one is a duplicate of it. Batches are stored in source order, so
  "first" is first in the source whatever the workers do. The batch's
  duplicates are kept on the batches hash (d:<index>, JSON) for its claim.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] records hash (batch index -> msgpack rows; this batch's written by
            the HSETNX sent before the call)
    KEYS[4] batches hash (per-batch state)
    KEYS[5] unique hash (a unique value's digest -> index of its first record)

    ARGV[1] consumer group name
    ARGV[2] batch index
    ARGV[3] number of records in the batch
    ARGV[4] the job's column header (msgpack), or "" when unchanged
    ARGV[5] unique entries, 21 bytes each: a 16-byte digest, the record's
            position in the batch (4 bytes, big-endian), the field's number
            in unique_fields (1 byte); "" when the schema has none
    ARGV[6] the index of the batch's first record

  Output:
    {"OK", state, unclaimed}  unclaimed: stored batches no worker has claimed yet
    {"JOB_NOT_FOUND"}
    {"JOB_NOT_PROCESSING", state}  aborted or failed while preparing, or sealed
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local recordsKey = KEYS[3]
local batchesKey = KEYS[4]
local uniqueKey = KEYS[5]
local group = ARGV[1]
local idx = ARGV[2]

--- @include "includes/pendingCount"
--- @include "includes/preparingState"

-- Deletes the payload the HSETNX before this call wrote, unless the batch is
-- stored and still holds its records (queued, claimed, dead-lettered, or a
-- remainder kept for a redrive).
local function dropStrayPayload()
  local b = rcall("HMGET", batchesKey, "n:" .. idx, "s:" .. idx)
  local s = b[2]
  if not b[1] or s == "COMPLETED" or s == "FAILED"
    or (s == "ENDED" and rcall("HGET", jobKey, "state") ~= "FAILED") then
    rcall("HDEL", recordsKey, idx)
  end
end

local state, refusal = preparingState(jobKey)
if not refusal and rcall("HGET", jobKey, "sealed") == "1" then
  refusal = {"JOB_NOT_PROCESSING", state}
end
if refusal then
  dropStrayPayload()
  return refusal
end

if rcall("HEXISTS", batchesKey, "n:" .. idx) == 1 then
  dropStrayPayload()
elseif rcall("HEXISTS", recordsKey, idx) == 0 then
  return redis.error_reply("ERR batch " .. idx .. ": payload missing (send HSETNX first)")
else
  if ARGV[4] ~= "" then
    rcall("HSET", jobKey, "columns", ARGV[4])
  end
  local id = rcall("XADD", queueKey, "*", "b", idx)
  rcall("HSET", batchesKey, "n:" .. idx, ARGV[3], "s:" .. idx, "PENDING", "e:" .. idx, id,
    "a:" .. idx, 0)
  rcall("HINCRBY", jobKey, "total_records", ARGV[3])
  rcall("HINCRBY", jobKey, "total_batches", 1)
  local entries = ARGV[5]
  if entries ~= "" then
    local firstIndex = tonumber(ARGV[6])
    local duplicates = {}
    local ownedHere = {}  -- digests first seen in this batch
    -- In slices, so that unpack() stays far below Lua's stack limit.
    for sliceStart = 1, #entries, 21 * 500 do
      local sliceEnd = math.min(#entries, sliceStart + 21 * 500 - 1)
      local digests, positions, fields = {}, {}, {}
      for i = sliceStart, sliceEnd, 21 do
        local b1, b2, b3, b4, field = string.byte(entries, i + 16, i + 20)
        digests[#digests + 1] = string.sub(entries, i, i + 15)
        positions[#positions + 1] = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
        fields[#fields + 1] = field
      end
      local stored = rcall("HMGET", uniqueKey, unpack(digests))
      local owned = {}
      for j = 1, #digests do
        local first = stored[j] or ownedHere[digests[j]]
        if first then
          duplicates[#duplicates + 1] = {positions[j], fields[j], tonumber(first)}
        else
          local index = firstIndex + positions[j]
          ownedHere[digests[j]] = index
          owned[#owned + 1] = digests[j]
          owned[#owned + 1] = index
        end
      end
      if #owned > 0 then
        rcall("HSET", uniqueKey, unpack(owned))
      end
    end
    if #duplicates > 0 then
      rcall("HSET", batchesKey, "d:" .. idx, cjson.encode(duplicates))
    end
  end
end

local counts = rcall("HMGET", jobKey, "total_batches", "completed_batches", "failed_batches")
local unclaimed = tonumber(counts[1]) - tonumber(counts[2]) - tonumber(counts[3])
  - pendingCount(queueKey, group)
return {"OK", state, unclaimed}
