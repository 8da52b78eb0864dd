-- Leases a task for this instance and takes the logs after its archive cursor.
--   KEYS[1]  the task's stream          ARGV[1]  the calling instance's id
--   KEYS[2]  its archive cursor         ARGV[2]  leaseMs
--   KEYS[3]  its archive lease          ARGV[3]  count
-- Returns nil while another instance holds the lease, else { gap (0 or 1), { id, level, body, ... } }.
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return false end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
local cursor = redis.call('GET', KEYS[2])
local lo = '-'
if cursor then lo = '(' .. cursor end
local batch = redis.call('XRANGE', KEYS[1], lo, '+', 'COUNT', tonumber(ARGV[3]))
local out = {}
local gap = 0
for i, e in ipairs(batch) do
  local l, d, p = fields(e)
  -- Each entry names its predecessor: after the cursor comes the cursor's successor, or a gap.
  if i == 1 and cursor and p and p ~= '' and lt(cursor, p) then gap = 1 end
  out[#out + 1] = e[1]
  out[#out + 1] = l
  out[#out + 1] = d
end
return { gap, out }
