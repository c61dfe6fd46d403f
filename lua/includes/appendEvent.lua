-- Appends one entry to the job's capped cross-worker event stream.
local function appendEvent(eventsKey, fields)
  redis.call("XADD", eventsKey, "MAXLEN", "~", 10000, "*", unpack(fields))
end
