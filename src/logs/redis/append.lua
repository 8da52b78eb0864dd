-- Appends the logs of one task, publishes them to the instances following it, and reports the
-- subscribers other instances announced. With an idempotency key, a repeat stores nothing; with a
-- rate limit, an append over it stores nothing.
--   KEYS[1]  the task's stream                 ARGV[1]  what the call asks, then the calling
--   KEYS[2]  its newest id [and rate state]             instance's id: '1' or '0' for housekeep
--   KEYS[3]  its announced subscriber counts            (trim by age, refresh expiry); '0' the
--   KEYS[4]  (with a key) an idempotency key's          instance does not follow the task, '1'
--            record: fingerprint .. first id            it does, '2' on the connection this call
--   KEYS[4|5] (archive on) the set of tasks             came on; '1' or '0' an idempotency key is
--            with logs to archive                       given; the logs' highest level rank (a digit)
--                                              ARGV[2]  (with a key) the request's fingerprint
--                                              ARGV[2|3], ...  the body of each log, which holds
--                                                       its level (entry.lua levelOf)
-- The instance's settings are constants before this text (scripts.ts appendScript): PUBLISH, the
-- command that publishes on the task's channel; TTL_MS, how long a log is kept; MAX_LEN, the
-- stream's length cap; SLACK_MS, the housekeeping slack (history.ts); INTERVAL_MS, ms per log of
-- the rate limit (0: none); TOLERANCE_MS, its burst in ms. Every argument is work for Redis on
-- every call: what does not change is not one.
-- Returns { first id, subscribers elsewhere, 1 when it published nothing for the caller to
-- deliver the logs itself, else 0 }; the other logs take the ids after the first. Or,
-- storing nothing: { 'replayed', first id of the first answer } for a repeated key;
-- { 'conflict' } for a key recorded with another fingerprint; { 'limited', ms until the append
-- fits, logs that fit now, ms until a whole burst fits } over the rate limit.
-- A few O(1) calls per log: this script's cost is most of an ingest round trip, and each
-- redis.call costs more than its command's own work.
local asks = ARGV[1]
-- Whether ARGV[1] asks for its i-th item ('1', byte 49).
local function asked(i) return string.byte(asks, i) == 49 end
local follows = string.byte(asks, 2) ~= 48
local followsHere = string.byte(asks, 2) == 50
local idemKey = asked(3) and KEYS[4] or nil
local fingerprint = idemKey and ARGV[2]
local FIRST_LOG = idemKey and 3 or 2
local pendingKey = KEYS[idemKey and 5 or 4]
local key = KEYS[1]
local newestKey = KEYS[2]
if idemKey then
  local recorded = redis.call('GET', idemKey)
  if recorded then
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
  local after = tat + (#ARGV - FIRST_LOG + 1) * INTERVAL_MS
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
-- The first XADD trims the stream to the cap less the batch's other logs, so that the batch ends
-- exactly at the cap: the same oldest entries go as by a trim after the last, in one trim that
-- removes whole nodes of the stream (a trim per XADD would mark one entry deleted inside a node
-- each time), and without a call of its own. A batch longer than the cap is trimmed again after
-- its last entry.
local others = #ARGV - FIRST_LOG
local firstCap = others < MAX_LEN and MAX_LEN - others or MAX_LEN
local first = redis.call('XADD', key, 'NOMKSTREAM', 'MAXLEN', '=', firstCap, '*', 'p', prev, 'd', ARGV[FIRST_LOG])
if not first then
  -- A new stream (or one deleted or evicted without its newest-id key) needs its expiry now,
  -- and its first entry names as predecessor what the task may have lost before it.
  housekeep = true
  if prev == '' then
    local before = lostBefore(key, TTL_MS)
    if before then prev = string.format('%.0f', before) .. '-0' end
  end
  first = redis.call('XADD', key, 'MAXLEN', '=', firstCap, '*', 'p', prev, 'd', ARGV[FIRST_LOG])
end
prev = first
-- The rest of a batch takes the ids after the first: `<ms>-*` has Redis give each the next seq
-- of the first one's ms, <ms>-<seq + 1>, ..., so the reply needs only the first, and Lua builds
-- no string per log. Their predecessor is the id before theirs, which they do not record
-- (entry.lua predecessor): an argument less per log for Redis.
if others > 0 then
  local following = string.sub(first, 1, string.find(first, '-', 1, true)) .. '*'
  for i = FIRST_LOG + 1, #ARGV do prev = redis.call('XADD', key, following, 'd', ARGV[i]) end
  if others >= MAX_LEN then redis.call('XTRIM', key, 'MAXLEN', '=', MAX_LEN) end
end
-- One message per append, '<first id>\n<body>\n<body>...' (a body has no raw newline): the
-- others' ids follow the first, and each body holds its level (feed.ts decodes it). A 100-line
-- batch is one message to every follower, not 100. The argument before the first body, read
-- already, takes the first id, so that one table.concat builds the message. PUBLISH is
-- 'SPUBLISH' on a cluster (scripts.ts).
-- A caller that follows the task on the connection this call came on subscribed to the channel
-- before sending it, and unsubscribes only after: when the channel has one subscriber, it is
-- that connection, and nobody else would read the message. The caller then delivers the logs
-- from this reply, which Redis sends on that connection in order with the channel's messages
-- (feed.ts), and the message is neither built nor sent.
local followers, delivered = 1, 1
if not (followsHere and redis.call('PUBSUB', 'NUMSUB', key)[2] == 1) then
  ARGV[FIRST_LOG - 1] = first
  followers = redis.call(PUBLISH, key, table.concat(ARGV, '\n', FIRST_LOG - 1))
  delivered = 0
end
-- Only an instance that follows the task (subscribes to its channel) has subscribers for it:
-- when this one is the only follower, there is nothing to read.
local elsewhere = 0
if followers > (follows and 1 or 0) then
  elsewhere = subscribersElsewhere(KEYS[3], string.sub(asks, 5), string.byte(asks, 4) - 48)
end
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
if idemKey then redis.call('SET', idemKey, fingerprint .. first, 'PX', TTL_MS + SLACK_MS) end
-- The archive's to-do list keeps the score of the task's oldest log not archived yet.
if pendingKey then
  redis.call('ZADD', pendingKey, 'NX', string.sub(first, 1, string.find(first, '-', 1, true) - 1), string.sub(key, 7, -2))
end
return { first, elsewhere, delivered }
