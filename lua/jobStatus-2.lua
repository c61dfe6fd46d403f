--[[
  A consistent snapshot of a job: its hash and the number of batches claimed
  right now (the consumer group's pending entries), read in one atomic step.

  Repeats: read only; a repeat answers the job as it is at its own time.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream

    ARGV[1] consumer group name

  Output:
    {} unknown job
    {claimed_batches, field1, value1, field2, value2, ...}
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]

--- @include "includes/pendingCount"

local fields = rcall("HGETALL", jobKey)
if #fields == 0 then
  return {}
end
local claimed = 0
if rcall("EXISTS", queueKey) == 1 then
  claimed = pendingCount(queueKey, ARGV[1])
end
table.insert(fields, 1, claimed)
return fields
