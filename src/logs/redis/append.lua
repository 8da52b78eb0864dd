-- Appends the logs of one task, publishes them to the instances following it, and reports the
-- subscribers other instances announced. With an idempotency key, a repeat stores nothing; with a
-- rate limit, an append over it stores nothing.
--   KEYS[1]  the task's stream                 ARGV[1]  what the call asks, then the calling
--   KEYS[2]  its newest id [and rate state]             instance's id: '1' or '0' for each of
--   KEYS[3]  its announced subscriber counts            housekeep (trim by age, refresh expiry),
--   KEYS[4]  (with a key) an idempotency key's          the instance follows the task, an
--            record: fingerprint .. first id            idempotency key is given
--   KEYS[4|5] (archive on) the set of tasks    ARGV[2]  (with a key) the request's fingerprint
--            with logs to archive              ARGV[2|3], ...  level, body of each log
-- The instance's settings are constants before this text (scripts.ts appendScript): PUBLISH, the
-- command that publishes on the task's channel; TTL_MS, how long a log is kept; MAX_LEN, the
-- stream's length cap; SLACK_MS, the housekeeping slack (history.ts); INTERVAL_MS, ms per log of
-- the rate limit (0: none); TOLERANCE_MS, its burst in ms. Every argument is work for Redis on
-- every call: what does not change is not one.
-- Returns { first id, subscribers elsewhere }; the other logs take the ids after the first. Or,
-- storing nothing: { 'replayed', first id of the first answer } for a repeated key;
-- { 'conflict' } for a key recorded with another fingerprint; { 'limited', ms until the append
-- fits, logs that fit now, ms until a whole burst fits } over the rate limit.
-- A few O(1) calls per log: this script's cost is most of an ingest round trip, and each
-- redis.call costs more than its command's own work.
local asks = ARGV[1]
-- Whether ARGV[1] asks for its i-th item ('1', byte 49).
local function asked(i) return string.byte(asks, i) == 49 end
local idemKey = asked(3) and KEYS[4] or nil
local FIRST_LOG = idemKey and 3 or 2
local pendingKey = KEYS[idemKey and 5 or 4]
local key = KEYS[1]
local newestKey = KEYS[2]
if idemKey then
  local recorded = redis.call('GET', idemKey)
  if recorded then
    local fingerprint = ARGV[2]
    if string.sub(recorded, 1, #fingerprint) ~= fingerprint then return { 'conflict' } end
    return { 'replayed', string.sub(recorded, #fingerprint + 1) }
  end
end
-- Each entry names its predecessor: an append's first records it ('p'), the others' is the id
-- before theirs. Trims only ever remove a prefix, so the first entry left names the newest one
-- removed, which replay needs for 'recovered' (Redis 7.0 does not track it on trims) without
-- this script reading what it trims. The first entry's predecessor is the
-- stream's newest entry, whose id this script keeps beside the stream (with the same expiry),
-- which is cheaper than reading the entry. A stream without that key has its newest entry read.
local prev = redis.call('GET', newestKey)
-- The rate limit is a GCRA (a token bucket kept as one number): `tat`, the time at which the task's
-- bucket is full again, in ms, kept after the newest id in the same key. An append of n logs moves
-- it n intervals on, unless that puts it more than the burst ahead of now.
-- An instance without the limit drops it (instances configured alike never do).
local tat
if prev then
  local space = string.find(prev, ' ', 1, true)
  if space then
    tat = tonumber(string.sub(prev, space + 1))
    prev = string.sub(prev, 1, space - 1)
  end
end
if INTERVAL_MS == 0 then
  tat = nil
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
  if not tat or tat < now then tat = now end
  local after = tat + (#ARGV - FIRST_LOG + 1) / 2 * INTERVAL_MS
  if after - now > TOLERANCE_MS + 1e-6 then
    local remaining = math.max(0, math.floor((TOLERANCE_MS - (tat - now)) / INTERVAL_MS + 1e-6))
    return { 'limited', math.ceil(after - TOLERANCE_MS - now), remaining, math.ceil(tat - now) }
  end
  tat = after
end
local housekeep = asked(1) or not prev
if not prev then
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  prev = last and last[1] or ''
end
local first = redis.call('XADD', key, 'NOMKSTREAM', 'MAXLEN', '=', MAX_LEN, '*', 'l', ARGV[FIRST_LOG], 'p', prev, 'd', ARGV[FIRST_LOG + 1])
if not first then
  -- A new stream (or one deleted or evicted without its newest-id key) needs its expiry now,
  -- and its first entry names as predecessor what the task may have lost before it.
  housekeep = true
  if prev == '' then
    local before = lostBefore(key, TTL_MS)
    if before then prev = string.format('%.0f', before) .. '-0' end
  end
  first = redis.call('XADD', key, 'MAXLEN', '=', MAX_LEN, '*', 'l', ARGV[FIRST_LOG], 'p', prev, 'd', ARGV[FIRST_LOG + 1])
end
prev = first
local message
-- The rest of a batch takes the ids after the first, <ms>-<seq + 1>, ...: the reply then needs
-- only the first. seq counts the logs of one millisecond, far below 1e14, up to which Lua writes
-- a number as an integer. Their predecessor is the id before theirs, which they do not record
-- (entry.lua predecessor): an argument less per log for Redis. The batch is trimmed to the cap
-- once, after its last entry: a trim that removes whole nodes of the stream costs less than one
-- entry per XADD, and no one sees the stream in between.
if #ARGV > FIRST_LOG + 1 then
  -- The message's parts, which '\n' joins; Lua makes each string it builds a new object, so
  -- none is built per log.
  local parts = { first, ARGV[FIRST_LOG], ARGV[FIRST_LOG + 1] }
  local dash = string.find(first, '-', 1, true)
  local ms = string.sub(first, 1, dash)
  local seq = tonumber(string.sub(first, dash + 1))
  for i = FIRST_LOG + 2, #ARGV, 2 do
    seq = seq + 1
    local id = ms .. seq
    redis.call('XADD', key, id, 'l', ARGV[i], 'd', ARGV[i + 1])
    prev = id
    parts[#parts + 1] = id
    parts[#parts + 1] = ARGV[i]
    parts[#parts + 1] = ARGV[i + 1]
  end
  redis.call('XTRIM', key, 'MAXLEN', '=', MAX_LEN)
  message = table.concat(parts, '\n')
else
  message = first .. '\n' .. ARGV[FIRST_LOG] .. '\n' .. ARGV[FIRST_LOG + 1]
end
-- One message per append, each log '<id>\n<level>\n<body>' joined by '\n' (feed.ts decodes it):
-- a 100-line batch is one message to every follower, not 100. PUBLISH is 'SPUBLISH' on a cluster (scripts.ts).
local followers = redis.call(PUBLISH, key, message)
-- Only an instance that follows the task (subscribes to its channel) has subscribers for it:
-- when this one is the only follower, there is nothing to read.
local elsewhere = 0
if followers > (asked(2) and 1 or 0) then elsewhere = subscribersElsewhere(KEYS[3], string.sub(asks, 4), FIRST_LOG) end
-- Housekeeping, when the caller asks for it (at most every slackMs / 2 per task and instance):
-- reads ignore entries past their TTL anyway, so trimming them up to slackMs late changes nothing
-- a client sees, and an expiry of TTL + slack outlives by its TTL every log appended until the
-- next housekeeping. Both keys get the same expiry, so the newest-id key never outlives its
-- stream. The age cutoff comes from the id just added, which spares a TIME call.
local newest = prev
if tat then newest = prev .. ' ' .. string.format('%.3f', tat) end
if housekeep then
  local c = tonumber(string.sub(prev, 1, string.find(prev, '-', 1, true) - 1)) - TTL_MS
  if c > 0 then redis.call('XTRIM', key, 'MINID', string.format('%.0f', c) .. '-0') end
  redis.call('PEXPIRE', key, TTL_MS + SLACK_MS)
  redis.call('SET', newestKey, newest, 'PX', TTL_MS + SLACK_MS)
else
  redis.call('SET', newestKey, newest, 'KEEPTTL')
end
-- The key's record lives as long as the logs it answers for.
if idemKey then redis.call('SET', idemKey, ARGV[2] .. first, 'PX', TTL_MS + SLACK_MS) end
-- The archive's to-do list keeps the score of the task's oldest log not archived yet.
if pendingKey then
  redis.call('ZADD', pendingKey, 'NX', string.sub(first, 1, string.find(first, '-', 1, true) - 1), string.sub(key, 7, -2))
end
return { first, elsewhere }
