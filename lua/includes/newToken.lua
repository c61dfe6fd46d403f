-- A fresh fencing token: the job's incarnation (a nonce made by the client that
-- created it) and the job's token sequence. Tokens never repeat, not even
-- across a job deleted and prepared again under the same id.
local function newToken(jobKey)
  local incarnation = redis.call("HGET", jobKey, "incarnation") or ""
  return incarnation .. ":" .. redis.call("HINCRBY", jobKey, "token_seq", 1)
end
