-- Subscribers that instances other than `self` announced for a task (presence.ts), in fields
-- that have not lapsed, and that accept a log of level rank `rank` (the highest of an append's).
-- Only called when another instance follows the task, so a single instance pays nothing for it.
local function subscribersElsewhere(key, self, rank)
  local fields = redis.call('HGETALL', key)
  local total = 0
  if #fields == 0 then return 0 end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local pattern = '^(%d+)' .. string.rep(' %d+', rank) .. ' (%d+)'
  for i = 1, #fields, 2 do
    if fields[i] ~= self then
      local expires, n = string.match(fields[i + 1], pattern)
      if expires and tonumber(expires) > now then total = total + tonumber(n)
      -- Left by an instance that died: gone, so that the hash of a task watched for long stays small.
      elseif expires then redis.call('HDEL', key, fields[i]) end
    end
  end
  return total
end
