-- Leases a task for this instance and takes the logs after its archive cursor (or after ARGV[4]).
--   KEYS[1]  the task's stream          ARGV[1]  the calling instance's id
--   KEYS[2]  its archive cursor         ARGV[2]  leaseMs
--   KEYS[3]  its archive lease          ARGV[3]  count
--                                       ARGV[4]  the id to read after, '' for the cursor
-- Returns nil while another instance holds the lease, else { gap (0 or 1), count, last id or '',
-- rows }: rows is the stream's entries as XRANGE gives them, encoded as one JSON array by cjson
-- (in C), which backend.ts ArchiveBatch describes. No Lua runs per log: the archiver hands
-- those bytes to the database as one string, which takes each log's columns apart.
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return false end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
local after = ARGV[4]
if after == '' then after = redis.call('GET', KEYS[2]) end
local lo = '-'
if after then lo = '(' .. after end
local batch = redis.call('XRANGE', KEYS[1], lo, '+', 'COUNT', tonumber(ARGV[3]))
if #batch == 0 then return { 0, 0, '', '[]' } end
-- Each entry names its predecessor: after the last archived log comes its successor, or a gap.
local gap = 0
if after then
  local p = predecessor(batch[1])
  if p and p ~= '' and lt(after, p) then gap = 1 end
end
return { gap, #batch, batch[#batch][1], cjson.encode(batch) }
