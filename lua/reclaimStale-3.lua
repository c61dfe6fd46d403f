--[[
  Makes every claimed batch idle longer than the timeout claimable again:
  each one's holder loses its fencing token and the batch goes back to the
  queue. The next claim of each counts as a new attempt.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream
    KEYS[3] batches hash

    ARGV[1] consumer group name
    ARGV[2] idle timeout in ms

  Output:
    the number of batches made claimable again
]]
local rcall = redis.call
local jobKey = KEYS[1]
local queueKey = KEYS[2]
local batchesKey = KEYS[3]
local group = ARGV[1]

--- @include "includes/entryField"
--- @include "includes/requeueBatch"

if rcall("EXISTS", jobKey) == 0 then
  return 0
end
local reclaimed = 0
local cursor = "0-0"
repeat
  local reply = rcall("XAUTOCLAIM", queueKey, group, "reclaimer", ARGV[2], cursor, "COUNT", 100)
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do
    if type(entry) == "table" then
      requeueBatch(jobKey, queueKey, batchesKey, group, entryField(entry, "b"))
      reclaimed = reclaimed + 1
    end
  end
until cursor == "0-0"
rcall("XGROUP", "DELCONSUMER", queueKey, group, "reclaimer")
return reclaimed
