-- Sets the retention TTL (ms) on every key of the job; an empty string keeps them forever.
local function applyRetention(keys, retentionMs)
  if retentionMs == nil or retentionMs == "" then
    return
  end
  for i = 1, #keys do
    redis.call("PEXPIRE", keys[i], retentionMs)
  end
end
