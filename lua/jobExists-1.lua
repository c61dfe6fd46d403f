--[[
  Whether a job's hash still exists (its keys may have expired after their
  retention). A script only so that many of these checks, each on its own
  job's hash tag, go out in one pipeline, also on a cluster. Read only.

  Input:
    KEYS[1] job hash

  Output:
    1 the job exists, 0 it does not
]]
local rcall = redis.call
return rcall("EXISTS", KEYS[1])
