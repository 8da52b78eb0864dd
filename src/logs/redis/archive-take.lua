-- Leases a task for this instance and says where its next batch starts: the archiver then reads
-- the batch with a plain XRANGE, which Redis answers without running Lua per log (a script
-- reading and encoding thousands of entries would hold Redis up for as long).
--   KEYS[1]  its archive cursor         ARGV[1]  the calling instance's id
--   KEYS[2]  its archive lease          ARGV[2]  leaseMs
--                                       ARGV[3]  the id to read after, '' for the cursor
-- Returns nil while another instance holds the lease, else the id to read after ('' for the
-- stream's start).
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return false end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' then return ARGV[3] end
return redis.call('GET', KEYS[1]) or ''
