-- Replays a task's logs to a watcher, and says whether none after `since` is gone.
--   KEYS[1]  the task's stream     ARGV[1]  ttlMs
--                                  ARGV[2]  since: the logs after it, or '' for the newest `limit`
--                                  ARGV[3]  limit
-- Returns { recovered (0 or 1), { id, level, body, id, level, body, ... } }.
local key = KEYS[1]
local ttlMs = tonumber(ARGV[1])
local since = ARGV[2]
local limit = tonumber(ARGV[3])
if redis.call('EXISTS', key) == 0 then
  if since == '' then return { 1, {} } end
  local before = lostBefore(key, ttlMs)
  if not before or parse(since) >= before then return { 1, {} } end
  return { 0, {} }
end
local c = cutoff(ttlMs)
local batch = {}
if limit > 0 then
  if since == '' then
    local rev = redis.call('XREVRANGE', key, '+', c or '-', 'COUNT', limit)
    for i = #rev, 1, -1 do batch[#batch + 1] = rev[i] end
  else
    local lo = '(' .. since
    if c and lt(since, c) then lo = c end
    batch = redis.call('XRANGE', key, lo, '+', 'COUNT', limit)
  end
end
local out = {}
for _, e in ipairs(batch) do
  local l, d = fields(e)
  out[#out + 1] = e[1]
  out[#out + 1] = l
  out[#out + 1] = d
end
local recovered = 1
if since ~= '' then
  -- The first entry not past its TTL names its predecessor, the newest entry gone (trimmed, or
  -- expired and not trimmed yet): nothing after since is gone iff since is not before it.
  local kept = redis.call('XRANGE', key, c or '-', '+', 'COUNT', 1)[1]
  if kept then
    local p = predecessor(kept)
    if p and p ~= '' and lt(since, p) then recovered = 0 end
  else
    -- Every entry is past its TTL: a gap unless since is the newest of them, or later.
    local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
    if newest and lt(since, newest[1]) then recovered = 0 end
  end
end
return { recovered, out }
