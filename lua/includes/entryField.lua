-- The value of one field of a stream entry {id, {f1, v1, f2, v2, ...}}, or nil.
local function entryField(entry, name)
  local fields = entry[2]
  if type(fields) ~= "table" then
    return nil
  end
  for i = 1, #fields, 2 do
    if fields[i] == name then
      return fields[i + 1]
    end
  end
  return nil
end
