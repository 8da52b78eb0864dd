-- A stream entry's fields: 'l' = level, 'd' = the log's JSON body, 'p' = the id of the entry
-- before it (empty for a stream's first). Streams written by older versions may hold an 's'
-- field, which is ignored.
local function fields(e)
  local f = e[2]
  local l, d, p
  for j = 1, #f, 2 do
    local k = f[j]
    if k == 'l' then l = f[j + 1] elseif k == 'd' then d = f[j + 1] elseif k == 'p' then p = f[j + 1] end
  end
  return l, d, p
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
