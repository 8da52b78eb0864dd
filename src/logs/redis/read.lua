-- Reads a task's logs for the history endpoint, paging through the stream and applying the
-- filters here, so that `limit` matches come back whenever they exist, never one past its TTL.
--   KEYS[1]  the task's stream     ARGV[1]  ttlMs
--                                  ARGV[2]  order: 'asc' or 'desc'
--                                  ARGV[3]  since: only ids after it, or ''
--                                  ARGV[4]  minRank: the lowest level rank kept
--                                  ARGV[5]  subtask: only this subtask's logs, or ''
--                                  ARGV[6]  limit
-- Returns id, level, body, id, level, body, ...
local key = KEYS[1]
local ttlMs = tonumber(ARGV[1])
local asc = ARGV[2] == 'asc'
local since = ARGV[3]
local minRank = tonumber(ARGV[4])
local subtask = ARGV[5]
local limit = tonumber(ARGV[6])
local c = cutoff(ttlMs)
local lo = c or '-'
if since ~= '' and (c == nil or not lt(since, c)) then lo = '(' .. since end
local page = limit
if (minRank > 0 or subtask ~= '') and page < 256 then page = 256 end
local out = {}
local n = 0
local bound = asc and lo or '+'
while n < limit do
  local batch
  if asc then
    batch = redis.call('XRANGE', key, bound, '+', 'COUNT', page)
  else
    batch = redis.call('XREVRANGE', key, bound, lo, 'COUNT', page)
  end
  for _, e in ipairs(batch) do
    local l, d = fields(e)
    if (minRank == 0 or (LEVEL_RANK[l] or 0) >= minRank) and (subtask == '' or subtaskOf(d) == subtask) then
      out[#out + 1] = e[1]
      out[#out + 1] = l
      out[#out + 1] = d
      n = n + 1
      if n >= limit then break end
    end
  end
  if #batch < page then break end
  bound = '(' .. batch[#batch][1]
end
return out
