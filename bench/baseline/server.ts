/**
 * The baseline: the smallest server this runtime allows for tasklog's wire contract, on raw
 * `Bun.serve` + node-redis. It is the floor tasklog is measured against (issue 5), not a
 * product: no validation beyond what keeps it honest, tasks in a Map, no SSE, no filters.
 *
 * - POST /api/v1/tasks → 201 Task with one subtask (tasklog's Task shape).
 * - POST /api/v1/subtasks/:id/log and /logs (batch): ONE Redis round trip per request, a Lua
 *   script (EVALSHA) doing XADD (exact MAXLEN) per log and one PUBLISH of them all, then XTRIM MINID and
 *   PEXPIRE.
 * - Live delivery as the contract's "Several instances" requires, in its least costly correct
 *   form: a task with subscribers here is followed by SUBSCRIBE on its channel (never
 *   unsubscribed), and every log arriving there, this server's own included, becomes one
 *   native `server.publish` to the task's topic: one ordered source for every instance.
 * - WS /api/v1/ws/tasks/:task_id/logs[?since=<id>]: `subscribed`, then replay (XRANGE in one
 *   script), then live. Subscribe-before-read: live frames are buffered while history is
 *   read and until a PING on the subscriber connection shows that the channel has caught up,
 *   then flushed minus ids already replayed in the same tick the socket subscribes.
 *
 * BASELINE_STORE=multi makes it the plain-MULTI floor ("floor-multi" in run.ts), the least Redis
 * work per log: one `MULTI` of `XADD … MAXLEN ~` per log and `EXPIRE`, nothing published. It
 * delivers each log in-process from the reply (right for one instance only), so it is a floor for
 * Redis CPU per log, not for delivery.
 *
 * Env: PORT, REDIS_URL, LOG_TTL_SECONDS (3600), LOG_HISTORY_MAX (10000), BASELINE_STORE (script|multi).
 * WORKERS=N (N > 1): N processes of it on one port (`reusePort`), as tasklog's `WORKERS=N`, so
 * that what splitting the load over processes costs the floor can be measured beside tasklog's
 * (`bun bench/ab.ts baseline baseline,WORKERS=2`); their tasks are then shared through Redis.
 * BENCH_FAULT=drop|dup|reorder breaks every 100th live frame on purpose, to prove that the
 * load generator's counters catch it (`bun run bench --quick --fault dup` must fail).
 */
import { createClient } from 'redis'
// The same node-redis fix tasklog applies: the floor should not pay for tracing either.
import { defineTracingHasSubscribers } from '../../src/logs/redis/tracing'
import type { ServerWebSocket } from 'bun'

const WORKERS = Number(process.env.WORKERS ?? 1)
if (WORKERS > 1 && !process.env.BASELINE_WORKER) {
  const workers = Array.from({ length: WORKERS }, (_, i) =>
    Bun.spawn([process.execPath, import.meta.path], {
      env: { ...process.env, BASELINE_WORKER: String(i + 1) },
      stdio: ['ignore', 'inherit', 'inherit'],
    }),
  )
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => workers.forEach((w) => w.kill(sig)))
  await Promise.all(workers.map((w) => w.exited))
  process.exit(0)
}
/** Several processes: a task and its subtask are written to Redis too, and read from it by the others on first use. */
const SHARED = WORKERS > 1

// `bun run bench --floor-with-app`: tasklog's app loaded beside the floor, warmed and idle.
if (process.env.BENCH_FLOOR_WITH_APP) await (await import('../lib/idle-app')).startIdleApp()

const PORT = Number(process.env.PORT ?? 8001)
const TTL_MS = Number(process.env.LOG_TTL_SECONDS ?? 3600) * 1000
const MAX_LEN = String(Number(process.env.LOG_HISTORY_MAX ?? 10_000))
const TTL_ARG = String(TTL_MS)
const LEVELS = new Set(['debug', 'info', 'warning', 'error'])
const TTL_SECONDS_ARG = String(Math.ceil(TTL_MS / 1000))
const FAULT = process.env.BENCH_FAULT ?? ''
const MULTI = process.env.BASELINE_STORE === 'multi'
let published = 0
let heldBack: { topic: string; frame: string } | undefined

// ARGV: minid, maxlen, ttlMs, then (level, body) per log. Returns the ids.
const APPEND = `
local key = KEYS[1]
local ids = {}
local published = {}
for i = 4, #ARGV, 2 do
  local id = redis.call('XADD', key, 'MAXLEN', ARGV[2], '*', 'l', ARGV[i], 'd', ARGV[i + 1])
  ids[#ids + 1] = id
  published[#published + 1] = id .. '\\n' .. ARGV[i] .. '\\n' .. ARGV[i + 1]
end
redis.call('PUBLISH', key, table.concat(published, '\\n'))
redis.call('XTRIM', key, 'MINID', ARGV[1])
redis.call('PEXPIRE', key, ARGV[3])
return ids
`
// ARGV: since, count. Returns { recovered, { id, body, ... } }.
// Trimming removes a prefix, so if an entry <= since is still there nothing after it is gone;
// otherwise entries-added == length means nothing was ever removed.
const REPLAY = `
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return { 0, {} } end
local out = {}
for _, e in ipairs(redis.call('XRANGE', key, '(' .. ARGV[1], '+', 'COUNT', ARGV[2])) do
  out[#out + 1] = e[1]
  out[#out + 1] = e[2][4]
end
local recovered = 1
if #redis.call('XRANGE', key, '-', ARGV[1], 'COUNT', 1) == 0 then
  local info = redis.call('XINFO', 'STREAM', key)
  local added, len
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then added = info[i + 1] elseif info[i] == 'length' then len = info[i + 1] end
  end
  if added ~= len then recovered = 0 end
end
return { recovered, out }
`

defineTracingHasSubscribers()
// No per-command AbortSignal either (node-redis' default 5 s command timeout makes one).
const redis = createClient({ url: process.env.REDIS_URL, commandOptions: { timeout: 0 } })
redis.on('error', (err: Error) => console.error('baseline: redis:', err.message))
await redis.connect()
const feed = redis.duplicate()
feed.on('error', (err: Error) => console.error('baseline: redis feed:', err.message))
await feed.connect()
const APPEND_SHA = String(await redis.sendCommand(['SCRIPT', 'LOAD', APPEND]))
const REPLAY_SHA = String(await redis.sendCommand(['SCRIPT', 'LOAD', REPLAY]))

interface Subtask {
  subtask_id: string
  task_id: string
  description: string
  status: string
  position: number
  worker_id: string | null
  worker_name: string | null
  created_at: string
  updated_at: string
}
const tasks = new Map<string, { subscribers: number; following?: Promise<void> }>()
const subtasks = new Map<string, Subtask>()

type Held = { id: string; frame: string }[]
interface SocketData {
  task: string
  since: string | null
  held?: Held
}
/** Per task: sockets whose history is being read, with the live frames held for them. */
const replaying = new Map<string, Set<ServerWebSocket<SocketData>>>()

const JSON_HEADERS = { 'content-type': 'application/json' }
const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: JSON_HEADERS })
const error = (status: number, code: string, message: string) => json(status, { error: code, message })
const logKey = (taskId: string) => `logs:{${taskId}}`
const logFrame = (id: string, body: string, ts: string) => `{"type":"log","data":{"id":"${id}",${body.slice(1)},"timestamp":"${ts}"}`

function compareIds(a: string, b: string): number {
  const da = a.indexOf('-')
  const db = b.indexOf('-')
  const ms = Number(a.slice(0, da)) - Number(b.slice(0, db))
  return ms !== 0 ? ms : Number(a.slice(da + 1)) - Number(b.slice(db + 1))
}

/** Delivers the logs of one append from a task's channel (`<id>\n<level>\n<body>` each, joined by `\n`). */
function deliver(message: string, channel: string): void {
  const taskId = channel.slice(6, -1)
  const ts = new Date().toISOString()
  const held = replaying.get(taskId)
  for (let at = 0; at < message.length; ) {
    const a = message.indexOf('\n', at)
    const b = message.indexOf('\n', a + 1)
    let end = message.indexOf('\n', b + 1)
    if (end < 0) end = message.length
    deliverLog(taskId, message.slice(at, a), message.slice(b + 1, end), ts, held)
    at = end + 1
  }
}

/** Sends one log to the task's sockets, and holds it for those whose history is being read. */
function deliverLog(taskId: string, id: string, body: string, ts: string, held: Set<ServerWebSocket<SocketData>> | undefined): void {
  const frame = logFrame(id, body, ts)
  if (FAULT && ++published % 100 === 0) {
    if (FAULT === 'dup') server.publish(taskId, frame)
    if (FAULT === 'reorder') heldBack = { topic: taskId, frame }
    if (FAULT !== 'dup') return
  }
  server.publish(taskId, frame)
  if (heldBack) {
    server.publish(heldBack.topic, heldBack.frame)
    heldBack = undefined
  }
  if (held) for (const ws of held) ws.data.held!.push({ id, frame })
}

/** BASELINE_STORE=multi: stores the logs in one MULTI and delivers them here; returns their ids. */
async function storeMulti(taskId: string, logs: string[]): Promise<string[]> {
  const key = logKey(taskId)
  const multi = redis.multi()
  for (let i = 0; i < logs.length; i += 2) multi.addCommand(['XADD', key, 'MAXLEN', '~', MAX_LEN, '*', 'l', logs[i]!, 'd', logs[i + 1]!])
  multi.addCommand(['EXPIRE', key, TTL_SECONDS_ARG])
  const ids = ((await multi.exec()) as unknown[]).slice(0, -1) as string[]
  const ts = new Date().toISOString()
  const held = replaying.get(taskId)
  for (let i = 0; i < ids.length; i++) deliverLog(taskId, ids[i]!, logs[2 * i + 1]!, ts, held)
  return ids
}

/** Stores the logs of one subtask (the task's channel brings them back); returns ids or an error Response. */
async function ingest(subtaskId: string, entries: unknown[]): Promise<{ ids: string[]; subscribers: number } | Response> {
  const subtask = subtasks.get(subtaskId) ?? (SHARED ? await sharedSubtask(subtaskId) : undefined)
  if (!subtask) return error(404, 'not_found', `Subtask ${subtaskId} not found`)
  const taskId = subtask.task_id
  const now = new Date().toISOString()
  const args = MULTI ? [] : ['EVALSHA', APPEND_SHA, '1', logKey(taskId), `${Date.now() - TTL_MS}-0`, MAX_LEN, TTL_ARG]
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as { level?: unknown; message?: unknown; metadata?: unknown; timestamp?: unknown } | null
    if (!e || typeof e.message !== 'string' || typeof e.level !== 'string' || !LEVELS.has(e.level))
      return error(422, 'validation', `Log ${i}: level and message are required`)
    const body = JSON.stringify({
      task_id: taskId,
      subtask_id: subtaskId,
      level: e.level,
      message: e.message,
      metadata: e.metadata ?? null,
      worker_id: subtask.worker_id,
      worker_name: subtask.worker_name,
      timestamp: typeof e.timestamp === 'string' ? new Date(e.timestamp).toISOString() : now,
    })
    args.push(e.level, body)
  }
  let ids: string[]
  try {
    ids = MULTI ? await storeMulti(taskId, args) : ((await redis.sendCommand(args)) as string[])
  } catch (err) {
    return error(503, 'unavailable', `Redis: ${(err as Error).message}`)
  }
  return { ids, subscribers: tasks.get(taskId)!.subscribers }
}

/** A subtask another process created (WORKERS > 1), remembered with its task. */
async function sharedSubtask(subtaskId: string): Promise<Subtask | undefined> {
  const stored = await redis.sendCommand(['GET', `baseline:subtask:${subtaskId}`])
  if (typeof stored !== 'string') return undefined
  const subtask = JSON.parse(stored) as Subtask
  subtasks.set(subtaskId, subtask)
  if (!tasks.has(subtask.task_id)) tasks.set(subtask.task_id, { subscribers: 0 })
  return subtask
}

function upgrade(req: Bun.BunRequest<'/api/v1/ws/tasks/:task_id/logs'>, srv: Bun.Server<SocketData>) {
  const since = new URL(req.url).searchParams.get('since')
  if (srv.upgrade(req, { data: { task: req.params.task_id!, since } })) return undefined
  return error(426, 'validation', 'WebSocket upgrade expected')
}

async function readJson(req: Request): Promise<unknown> {
  try {
    return await req.json()
  } catch {
    return undefined
  }
}

const server = Bun.serve<SocketData, any>({
  reusePort: SHARED,
  hostname: process.env.HOST ?? '127.0.0.1',
  port: PORT,
  routes: {
    // A worker says which it is, as tasklog's do, so that ab.ts can wait until every one listens.
    '/health': () =>
      new Response('{"status":"ok"}', {
        headers: process.env.BASELINE_WORKER ? { ...JSON_HEADERS, 'x-tasklog-worker': process.env.BASELINE_WORKER } : JSON_HEADERS,
      }),
    '/api/v1/tasks': {
      POST: async (req) => {
        const body = (await readJson(req)) as { description?: unknown } | undefined
        if (!body || typeof body.description !== 'string' || !body.description)
          return error(422, 'validation', 'description is required')
        const now = new Date().toISOString()
        const taskId = Bun.randomUUIDv7()
        const subtask: Subtask = {
          subtask_id: Bun.randomUUIDv7(),
          task_id: taskId,
          description: body.description,
          status: 'pending',
          position: 0,
          worker_id: null,
          worker_name: null,
          created_at: now,
          updated_at: now,
        }
        tasks.set(taskId, { subscribers: 0 })
        subtasks.set(subtask.subtask_id, subtask)
        if (SHARED) {
          await redis.sendCommand(['SET', `baseline:subtask:${subtask.subtask_id}`, JSON.stringify(subtask)])
          await redis.sendCommand(['SET', `baseline:task:${taskId}`, subtask.subtask_id])
        }
        return json(201, {
          task_id: taskId,
          description: body.description,
          status: 'pending',
          created_at: now,
          updated_at: now,
          subtasks: [subtask],
        })
      },
    },
    '/api/v1/subtasks/:id/log': {
      POST: async (req) => {
        const result = await ingest(req.params.id!, [await readJson(req)])
        if (result instanceof Response) return result
        return json(201, { success: true, message: 'Log stored and broadcast', broadcasted: result.subscribers, id: result.ids[0] })
      },
    },
    '/api/v1/subtasks/:id/logs': {
      POST: async (req) => {
        const body = (await readJson(req)) as { logs?: unknown } | undefined
        if (!body || !Array.isArray(body.logs) || body.logs.length === 0 || body.logs.length > 1000)
          return error(422, 'validation', 'logs must hold 1 to 1000 entries')
        const result = await ingest(req.params.id!, body.logs)
        if (result instanceof Response) return result
        return json(201, {
          success: true,
          accepted: result.ids.length,
          broadcasted: result.subscribers,
          first_id: result.ids[0],
          last_id: result.ids[result.ids.length - 1],
        })
      },
    },
    '/api/v1/ws/tasks/:task_id/logs': SHARED
      ? async (req, srv) => {
          const taskId = req.params.task_id!
          if (!tasks.has(taskId)) {
            const subtaskId = await redis.sendCommand(['GET', `baseline:task:${taskId}`])
            if (typeof subtaskId === 'string') await sharedSubtask(subtaskId)
          }
          return upgrade(req, srv)
        }
      : upgrade,
  },
  fetch: () => error(404, 'not_found', 'No such route'),
  websocket: {
    idleTimeout: 60,
    sendPings: true,
    backpressureLimit: 4 * 1024 * 1024,
    closeOnBackpressureLimit: true,
    open(ws) {
      const { task: taskId, since } = ws.data
      const task = tasks.get(taskId)
      if (!task) return ws.close(1008, `Task ${taskId} not found`)
      task.subscribers++
      task.following ??= MULTI ? Promise.resolve() : feed.subscribe(logKey(taskId), deliver)
      if (since === null) {
        void task.following.then(() => {
          if (ws.readyState !== 1) return
          ws.send(`{"type":"subscribed","data":{"task_id":"${taskId}"},"timestamp":"${new Date().toISOString()}"}`)
          ws.subscribe(taskId)
        })
        return
      }
      // Subscribe before reading: hold live frames until history is sent.
      ws.data.held = []
      let set = replaying.get(taskId)
      if (!set) replaying.set(taskId, (set = new Set()))
      set.add(ws)
      let reply: unknown
      task.following
        .then(() => redis.sendCommand(['EVALSHA', REPLAY_SHA, '1', logKey(taskId), since, MAX_LEN]))
        .then((r) => {
          reply = r
          return feed.ping()
        })
        .then(() => {
          const [recovered, flat] = reply as unknown as [number, string[]]
          const held = ws.data.held!
          set.delete(ws)
          if (set.size === 0 && replaying.get(taskId) === set) replaying.delete(taskId)
          ws.data.held = undefined
          if (ws.readyState !== 1) return
          const ts = new Date().toISOString()
          ws.send(
            `{"type":"subscribed","data":{"task_id":"${taskId}","recovered":${recovered === 1}},"timestamp":"${ts}"}`,
          )
          let last = since
          for (let i = 0; i < flat.length; i += 2) ws.send(logFrame((last = flat[i]!), flat[i + 1]!, ts))
          for (const item of held) if (compareIds(item.id, last) > 0) ws.send(item.frame)
          ws.subscribe(taskId)
        })
        .catch(() => ws.close(1011, 'History unavailable'))
    },
    message(ws, message) {
      if (typeof message === 'string' && message.includes('"ping"'))
        ws.send(`{"type":"pong","timestamp":"${new Date().toISOString()}"}`)
    },
    close(ws) {
      const task = tasks.get(ws.data.task)
      if (!task) return
      task.subscribers--
      if (ws.data.held) replaying.get(ws.data.task)?.delete(ws)
    },
  },
})

console.log(`baseline listening on http://127.0.0.1:${server.port}`)
const stop = () => {
  server.stop(true)
  redis.destroy()
  feed.destroy()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
