#!lua flags=allow-cross-slot-keys,no-writes
-- The sets of tasks with logs to archive of some of this node's slots (keys.ts
-- archivePendingCopy), with what each holds first. Sent to one node, it reads keys of every slot
-- the node serves (the flag above).
--   ARGV[1]  tasks to return of each set, oldest first
--   ARGV[2], ...  the sets, one per slot
-- Returns, for each set that is not empty, { set, its size, { task, ms, task, ms, ... } }; and
-- { set } for each set whose slot this node does not serve (any more).
local last = tonumber(ARGV[1]) - 1
local sets = {}
for i = 2, #ARGV do
  local key = ARGV[i]
  local size = redis.pcall('ZCARD', key)
  if type(size) ~= 'number' then
    sets[#sets + 1] = { key }
  elseif size > 0 then
    sets[#sets + 1] = { key, size, redis.call('ZRANGE', key, 0, last, 'WITHSCORES') }
  end
end
return sets
