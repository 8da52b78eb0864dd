-- Leases a task for this instance and takes the logs after its archive cursor (or after ARGV[4]).
--   KEYS[1]  the task's stream          ARGV[1]  the calling instance's id
--   KEYS[2]  its archive cursor         ARGV[2]  leaseMs
--   KEYS[3]  its archive lease          ARGV[3]  count
--                                       ARGV[4]  the id to read after, '' for the cursor
-- Returns nil while another instance holds the lease, else { gap (0 or 1), count, last id or '',
-- rows }: rows is the JSON array of [ms, seq, level, subtask_id, body] that backend.ts
-- ArchiveBatch describes, encoded here by cjson (in C) so that the archiver hands it to the
-- database as one string instead of decoding and re-encoding every log.
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return false end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
local after = ARGV[4]
if after == '' then after = redis.call('GET', KEYS[2]) end
local lo = '-'
if after then lo = '(' .. after end
local batch = redis.call('XRANGE', KEYS[1], lo, '+', 'COUNT', tonumber(ARGV[3]))
if #batch == 0 then return { 0, 0, '', '[]' } end
local rows = {}
local gap = 0
for i, e in ipairs(batch) do
  local l, d = fields(e)
  -- Each entry names its predecessor: after the last archived log comes its successor, or a gap.
  if i == 1 and after then
    local p = predecessor(e)
    if p and p ~= '' and lt(after, p) then gap = 1 end
  end
  local id = e[1]
  local dash = string.find(id, '-', 1, true)
  rows[i] = { string.sub(id, 1, dash - 1), string.sub(id, dash + 1), l, subtaskOf(d) or '', d }
end
return { gap, #batch, batch[#batch][1], cjson.encode(rows) }
