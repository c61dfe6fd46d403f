-- The first entry of an XREADGROUP reply for one stream, or nil.
-- A real server replies {{key, entries}} or false; fakeredis replies
-- {key, entries} or {}: both shapes are accepted.
local function firstStreamEntry(reply)
  if type(reply) ~= "table" or #reply == 0 then
    return nil
  end
  local entries
  if type(reply[1]) == "string" then
    entries = reply[2]
  else
    entries = reply[1][2]
  end
  if type(entries) ~= "table" or #entries == 0 then
    return nil
  end
  return entries[1]
end
