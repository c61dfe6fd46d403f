-- The new value of a per-second count slot (r:<second mod 60> on the job hash,
-- "<second>:<count>") once ``count`` records settle in ``second``: added to the
-- slot's count when the slot (``earlier``, or nil) already holds that second,
-- else starting it afresh (the slot last held a second a minute or more ago).
local function settledSlot(earlier, second, count)
  if earlier then
    local at, n = string.match(earlier, "^(%d+):(%d+)$")
    if tonumber(at) == second then
      count = count + tonumber(n)
    end
  end
  return string.format("%d:%d", second, count)
end
