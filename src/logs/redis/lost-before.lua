-- For a task whose stream is missing (the rule of backend.ts Replay): the time (ms) before which
-- it may have lost logs, or nil when it cannot have lost any. Uptime counts whole clock seconds
-- since the second Redis started in, so whatever was written after that second's end is held;
-- a task id is a UUID v7, whose first 12 hex digits are its creation time in ms. `key` is the
-- task's stream, 'logs:{<task id>}' (keys.ts).
local function lostBefore(key, ttlMs)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ok, info = pcall(redis.call, 'INFO', 'server')
  local uptime = ok and tonumber(string.match(info, 'uptime_in_seconds:(%d+)'))
  -- Capped at now: nothing written from now on is lost, and a new stream's first entry is no older.
  local started = uptime and math.min((tonumber(t[1]) - uptime + 1) * 1000, now) or now
  local before = math.max(now - ttlMs, started)
  local task = string.sub(key, 7, 42)
  if string.sub(task, 15, 15) == '7' then
    local created = tonumber(string.sub(task, 1, 8) .. string.sub(task, 10, 13), 16)
    if created and created >= before then return nil end
  end
  return before
end
