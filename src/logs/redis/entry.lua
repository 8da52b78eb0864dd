-- Every body starts {"task_id":"<uuid>","subtask_id":"<uuid>","level":"<level>",... (encode.ts):
-- the first "level" key is the log's own, whatever its message or metadata hold.
local function levelOf(d)
  local i = string.find(d, '"level":"', 1, true)
  if not i then return nil end
  return string.sub(d, i + 9, string.find(d, '"', i + 9, true) - 1)
end
-- A stream entry's level, body and predecessor. Its fields: 'd' = the log's JSON body, which
-- holds its level, 'p' = the id of the entry before it (empty for a stream's first; left out
-- where predecessor() knows it). Streams written by older versions hold the level in an 'l'
-- field too, and may hold an 's' field, which is ignored.
local function fields(e)
  local f = e[2]
  local l, d, p
  for j = 1, #f, 2 do
    local k = f[j]
    if k == 'd' then d = f[j + 1] elseif k == 'p' then p = f[j + 1] elseif k == 'l' then l = f[j + 1] end
  end
  if not l and d then l = levelOf(d) end
  return l, d, p
end
-- The id of the entry before e: its 'p', or, for an entry without one, <ms>-<seq - 1>. Only the
-- first log of an append records it: the others take the ids right after it (append.lua). nil
-- when unknown (an entry of an older version with seq 0).
local function predecessor(e)
  local _, _, p = fields(e)
  if p then return p end
  local d = string.find(e[1], '-', 1, true)
  local seq = tonumber(string.sub(e[1], d + 1))
  if seq > 0 then return string.sub(e[1], 1, d) .. (seq - 1) end
  return nil
end
-- Every body starts {"task_id":"<uuid>","subtask_id":"<uuid>",... (encode.ts): the first
-- "subtask_id" key is the log's own, whatever its metadata holds.
local function subtaskOf(d)
  local i = string.find(d, '"subtask_id":"', 1, true)
  if not i then return nil end
  local j = string.find(d, '"', i + 14, true)
  if not j then return nil end
  return string.sub(d, i + 14, j - 1)
end
