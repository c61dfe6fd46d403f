-- A fresh fencing token: the job's incarnation and its token sequence, bumped.
-- Tokens never repeat, not even across a job deleted and prepared again under
-- the same id.
--- @include "includes/fencingToken"
local function newToken(jobKey)
  return fencingToken(redis.call("HGET", jobKey, "incarnation"),
    redis.call("HINCRBY", jobKey, "token_seq", 1))
end
