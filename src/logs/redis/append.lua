-- Appends the logs of one task, publishes them to the instances following it, and reports the
-- subscribers other instances announced.
--   KEYS[1]  the task's stream                 ARGV[1]  ttlMs: how long a log is kept
--   KEYS[2]  its newest id                     ARGV[2]  maxPerTask: the stream's length cap
--   KEYS[3]  its announced subscriber counts   ARGV[3]  slackMs: housekeeping slack (history.ts)
--                                              ARGV[4]  housekeep: '1' to trim by age and refresh expiry
--                                              ARGV[5]  '1' when the calling instance follows the task
--                                              ARGV[6]  the calling instance's id
--                                              ARGV[7], ARGV[8], ...  level, body of each log
-- Returns { first id, subscribers elsewhere }; the other logs take the ids after the first.
-- A few O(1) calls per log: this script's cost is most of an ingest round trip, and each
-- redis.call costs more than its command's own work.
local key = KEYS[1]
local newestKey = KEYS[2]
local maxLen = ARGV[2]
-- Each entry records its predecessor ('p'). Trims only ever remove a prefix, so the first entry
-- left names the newest one removed, which replay needs for 'recovered' (Redis 7.0 does not
-- track it on trims) without this script reading what it trims. The predecessor is the
-- stream's newest entry, whose id this script keeps beside the stream (with the same expiry),
-- which is cheaper than reading the entry. A stream without that key has its newest entry read.
local prev = redis.call('GET', newestKey)
local housekeep = ARGV[4] == '1' or not prev
if not prev then
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  prev = last and last[1] or ''
end
local first = redis.call('XADD', key, 'NOMKSTREAM', 'MAXLEN', '=', maxLen, '*', 'l', ARGV[7], 'p', prev, 'd', ARGV[8])
if not first then
  -- A new stream (or one deleted or evicted without its newest-id key) needs its expiry now,
  -- and its first entry names as predecessor what the task may have lost before it.
  housekeep = true
  if prev == '' then
    local before = lostBefore(key, tonumber(ARGV[1]))
    if before then prev = string.format('%.0f', before) .. '-0' end
  end
  first = redis.call('XADD', key, 'MAXLEN', '=', maxLen, '*', 'l', ARGV[7], 'p', prev, 'd', ARGV[8])
end
prev = first
local published = { first .. '\n' .. ARGV[7] .. '\n' .. ARGV[8] }
-- The rest of a batch takes the ids after the first, <ms>-<seq + 1>, ...: the reply then needs
-- only the first. seq counts the logs of one millisecond, far below 1e14, up to which Lua writes
-- a number as an integer.
if #ARGV > 8 then
  local dash = string.find(first, '-', 1, true)
  local ms = string.sub(first, 1, dash)
  local seq = tonumber(string.sub(first, dash + 1))
  for i = 9, #ARGV, 2 do
    seq = seq + 1
    local id = ms .. seq
    redis.call('XADD', key, 'MAXLEN', '=', maxLen, id, 'l', ARGV[i], 'p', prev, 'd', ARGV[i + 1])
    prev = id
    published[#published + 1] = id .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 1]
  end
end
-- One message per append, each log '<id>\n<level>\n<body>' joined by '\n' (feed.ts decodes it):
-- a 100-line batch is one message to every follower, not 100.
local followers = redis.call('PUBLISH', key, table.concat(published, '\n'))
-- Only an instance that follows the task (subscribes to its channel) has subscribers for it:
-- when this one is the only follower, there is nothing to read.
local elsewhere = 0
if followers > tonumber(ARGV[5]) then elsewhere = subscribersElsewhere(KEYS[3], ARGV[6], 7) end
-- Housekeeping, when the caller asks for it (at most every slackMs / 2 per task and instance):
-- reads ignore entries past their TTL anyway, so trimming them up to slackMs late changes nothing
-- a client sees, and an expiry of TTL + slack outlives by its TTL every log appended until the
-- next housekeeping. Both keys get the same expiry, so the newest-id key never outlives its
-- stream. The age cutoff comes from the id just added, which spares a TIME call.
if housekeep then
  local ttlMs = tonumber(ARGV[1])
  local slackMs = tonumber(ARGV[3])
  local c = tonumber(string.sub(prev, 1, string.find(prev, '-', 1, true) - 1)) - ttlMs
  if c > 0 then redis.call('XTRIM', key, 'MINID', string.format('%.0f', c) .. '-0') end
  redis.call('PEXPIRE', key, ttlMs + slackMs)
  redis.call('SET', newestKey, prev, 'PX', ttlMs + slackMs)
else
  redis.call('SET', newestKey, prev, 'KEEPTTL')
end
return { first, elsewhere }
