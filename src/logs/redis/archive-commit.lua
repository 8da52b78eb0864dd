-- Moves a task's archive cursor forward once its logs are stored, and keeps the set of tasks
-- with logs to archive exact: atomic with the append script, so no append slips between.
--   KEYS[1]  the task's stream          ARGV[1]  the calling instance's id
--   KEYS[2]  its archive cursor         ARGV[2]  the last id stored, or ''
--   KEYS[3]  its archive lease          ARGV[3]  the cursor's expiry in ms
--   KEYS[4]  the set of pending tasks   ARGV[4]  '1' to let go of the lease
--            (of the task's slot)
--                                       ARGV[5]  the task id
local cursor = redis.call('GET', KEYS[2])
if ARGV[2] ~= '' and (not cursor or lt(cursor, ARGV[2])) then cursor = ARGV[2] end
local lo = '-'
if cursor then
  redis.call('SET', KEYS[2], cursor, 'PX', ARGV[3])
  lo = '(' .. cursor
end
local nextEntry = redis.call('XRANGE', KEYS[1], lo, '+', 'COUNT', 1)[1]
if nextEntry then
  local ms = parse(nextEntry[1])
  redis.call('ZADD', KEYS[4], string.format('%.0f', ms), ARGV[5])
else
  redis.call('ZREM', KEYS[4], ARGV[5])
end
if ARGV[4] == '1' and redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 1
