-- A fencing token's text: the job's incarnation (a nonce made by the client
-- that created it) and a number of the job's token sequence.
local function fencingToken(incarnation, seq)
  return (incarnation or "") .. ":" .. seq
end
