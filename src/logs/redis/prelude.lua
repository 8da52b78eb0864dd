-- Log id helpers shared by the read and replay scripts.
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function lt(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
-- Smallest id that is not expired ("<now - ttl>-0"), or nil when nothing can be expired yet.
local function cutoff(ttlMs)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - ttlMs
  if ms <= 0 then return nil end
  return string.format('%.0f', ms) .. '-0'
end
