/**
 * Log history in Redis: one stream per task under `logs:{<task_id>}` (literal braces: a
 * Redis Cluster hash tag, so the stream and the pub/sub channel of a task share a slot).
 *
 * Entry fields: `l` = level, `p` = the id of the entry before it (empty for a stream's first),
 * `d` = the log's JSON body (StoredLog.body). The subtask filter reads the subtask from the body:
 * a field for it cost 13-20% of the append script's Redis CPU. (Streams written before kept it
 * in an `s` field, which is ignored.)
 *
 * Every operation is ONE round trip: a Lua script run with EVALSHA (loaded once with
 * SCRIPT LOAD; after a Redis restart emptied the script cache, the NOSCRIPT reply falls back
 * to EVAL, which runs the script and caches it again).
 *
 * - append: per log XADD (`*` for the first, the ids after it for the rest) with exact count
 *   trimming (MAXLEN =), then ONE PUBLISH of every log as `<id>\n<level>\n<body>`, joined by
 *   `\n`, on channel `logs:{<task_id>}` (redis-feed.ts reads it; a body is JSON.stringify's
 *   output, which has no raw newline). A batch's ids are consecutive (`<ms>-<seq>`,
 *   `<ms>-<seq + 1>`, ...), so the script returns only the first and, when another instance
 *   also follows the channel, the subscribers other instances announced
 *   (redis-subscribers.ts). Trimming by age
 *   (XTRIM MINID at the newest id's time - TTL) and the key's expiry (PEXPIRE to TTL + slack)
 *   happen on an instance's first append to a task, then at most every half slack window (see
 *   `housekeepingMs`), not on every append.
 *   Redis 7.0 does NOT update the stream's `max-deleted-entry-id` when XADD/XTRIM trim (verified in
 *   tests/history-store.test.ts), so each entry records its predecessor instead.
 * - read: pages through the stream inside the script applying the level/subtask filters, so
 *   `limit` matches come back whenever they exist, and never a log older than the TTL (logs
 *   are only physically trimmed on append).
 * - replay: the range plus `recovered`, from the predecessor recorded in the first entry not
 *   past its TTL, or, when the stream is gone, from `lostBefore` (the TTL, Redis' uptime and the
 *   task's creation time; see the rule in memory-history.ts, which both stores share). FLUSHALL,
 *   DEL or eviction of a stream within its TTL are losses this cannot see: run Redis with
 *   `maxmemory-policy noeviction`.
 *
 * Outages: the client never queues commands while disconnected (`disableOfflineQueue`); when
 * calls are pending and Redis answers none of them for `timeoutMs` (default 2 s), all of them
 * fail and the connection is reset (Watchdog; node-redis' per-command timeout costs an
 * AbortSignal per command); every failure is a StoreUnavailableError, and the client
 * reconnects forever in the background.
 * Caveat: an append Redis had received before such a reset may still be applied.
 */
import { StoreFullError, StoreTimeoutError, StoreUnavailableError } from '../errors'
import { withTimeout } from '../timeout'
import { levelRank, type Level } from '../schemas/common'
import type { EncodedLog } from './encode'
import type { Appended, HistoryQuery, HistoryStore, Replay, StoredLog } from './history-store'
import { requireLogId } from './log-id'
import { LUA_LEVEL_RANKS, createRedisClient, redactRedisUrl, type RedisClient } from './redis-connection'
import { SUBSCRIBERS_ELSEWHERE, subscribersKey, type Follower } from './redis-subscribers'
import { defineTracingHasSubscribers } from './redis-tracing'

defineTracingHasSubscribers()

export interface RedisHistoryOptions {
  url: string
  ttlSeconds: number
  maxPerTask: number
  /** Upper bound for every call, in ms (default 2000). */
  timeoutMs?: number
  /** How long connect() waits for the first connection, in ms (default 5000). */
  startupTimeoutMs?: number
  /** Where outage/reconnect messages go (default console). */
  logger?: Pick<Console, 'warn' | 'info'>
  /** This instance as its feed knows it (redis-subscribers.ts); default: one that follows nothing. */
  follower?: Follower
}

/**
 * Stream key of a task's logs, and also the name of its pub/sub channel (channels and keys
 * are separate namespaces).
 */
export const logKey = (taskId: string): string => `logs:{${taskId}}`

/** The id of the newest entry of a task's stream, kept beside it by the append script. */
export const newestIdKey = (taskId: string): string => `logs:{${taskId}}:newest`

/**
 * The slack (ms) of trimming a task's stream by age and of its expiry: doing both on every
 * append cost a fifth of the script, so an instance asks for them every half slack per task.
 * Entries stay up to this long past their TTL (invisible to reads) and keys up to this long
 * after it: 1 s, or TTL / 20 when shorter. Half of it is the margin for replies delayed in Redis;
 * a reply later than that housekeeps again (RedisHistory.#housekeepLate).
 */
export const housekeepingMs = (ttlMs: number): number => Math.max(1, Math.min(1000, Math.floor(ttlMs / 20)))

const PRELUDE = `
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function lt(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
-- Smallest id that is not expired ("<now - ttl>-0"), or nil when nothing can be expired yet.
local function cutoff(ttlMs)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - ttlMs
  if ms <= 0 then return nil end
  return string.format('%.0f', ms) .. '-0'
end
`

/**
 * For a task whose stream is missing (memory-history.ts has the rule): the time (ms) before which
 * it may have lost logs, or nil when it cannot have lost any. Uptime counts whole clock seconds
 * since the second Redis started in, so whatever was written after that second's end is held;
 * a task id is a UUID v7, whose first 12 hex digits are its creation time in ms.
 */
const LOST_BEFORE = `
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
`

/**
 * KEYS[1] stream, KEYS[2] its newest id, KEYS[3] its announced subscribers; ARGV: ttlMs,
 * maxPerTask, slackMs, housekeep (1 or 0), whether this instance follows the task (1 or 0), its
 * id, then (level, body) per log. Returns the first log's id (the others follow it, see below),
 * then the subscribers elsewhere.
 * A few O(1) calls per log: this script's cost is most of an ingest round trip, and each
 * redis.call costs 1-3 µs beyond its command's own work.
 */
const APPEND = `${LOST_BEFORE}${SUBSCRIBERS_ELSEWHERE}
local key = KEYS[1]
local newestKey = KEYS[2]
local maxLen = ARGV[2]
-- Each entry records its predecessor ('p'). Trims only ever remove a prefix, so the first entry
-- left names the newest one removed, which replay needs for 'recovered' (Redis 7.0 does not
-- track it on trims) without this script reading what it trims. The predecessor is the
-- stream's newest entry, whose id this script keeps beside the stream (with the same expiry):
-- reading the entry itself cost a third of the script. Streams written before that are read.
local prev = redis.call('GET', newestKey)
local housekeep = ARGV[4] == '1' or not prev
if not prev then
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  prev = last and last[1] or ''
end
local first = redis.call('XADD', key, 'NOMKSTREAM', 'MAXLEN', '=', maxLen, '*', 'l', ARGV[7], 'p', prev, 'd', ARGV[8])
if not first then
  -- A new stream (or one deleted or evicted without its newest-id key) needs its expiry now,
  -- and its first entry names as predecessor what the task may have lost before it.
  housekeep = true
  if prev == '' then
    local before = lostBefore(key, tonumber(ARGV[1]))
    if before then prev = string.format('%.0f', before) .. '-0' end
  end
  first = redis.call('XADD', key, 'MAXLEN', '=', maxLen, '*', 'l', ARGV[7], 'p', prev, 'd', ARGV[8])
end
prev = first
local published = { first .. '\\n' .. ARGV[7] .. '\\n' .. ARGV[8] }
-- The rest of a batch takes the ids after the first, <ms>-<seq + 1>, ...: the reply then needs
-- only the first (decoding an id per log cost 7% of a batch's CPU in the instance). seq counts
-- the logs of one millisecond, far below 1e14, up to which Lua writes a number as an integer.
if #ARGV > 8 then
  local dash = string.find(first, '-', 1, true)
  local ms = string.sub(first, 1, dash)
  local seq = tonumber(string.sub(first, dash + 1))
  for i = 9, #ARGV, 2 do
    seq = seq + 1
    local id = ms .. seq
    redis.call('XADD', key, 'MAXLEN', '=', maxLen, id, 'l', ARGV[i], 'p', prev, 'd', ARGV[i + 1])
    prev = id
    published[#published + 1] = id .. '\\n' .. ARGV[i] .. '\\n' .. ARGV[i + 1]
  end
end
-- One message per append: a 100-line batch is one message to every follower, not 100.
local followers = redis.call('PUBLISH', key, table.concat(published, '\\n'))
-- Only an instance that follows the task (subscribes to its channel) has subscribers for it:
-- when this one is the only follower, there is nothing to read.
local elsewhere = 0
if followers > tonumber(ARGV[5]) then elsewhere = subscribersElsewhere(KEYS[3], ARGV[6], 7) end
-- Housekeeping, when the caller asks for it (RedisHistory.append: at most every slackMs / 2 per
-- task and instance): reads ignore entries past their TTL anyway, so trimming them up to slackMs
-- late changes nothing a client sees, and an expiry of TTL + slack outlives by its TTL every log
-- appended until the next housekeeping. Both keys get the same expiry, so the newest-id key never
-- outlives its stream. The age cutoff comes from the id just added, which spares a TIME call.
if housekeep then
  local ttlMs = tonumber(ARGV[1])
  local slackMs = tonumber(ARGV[3])
  local c = tonumber(string.sub(prev, 1, string.find(prev, '-', 1, true) - 1)) - ttlMs
  if c > 0 then redis.call('XTRIM', key, 'MINID', string.format('%.0f', c) .. '-0') end
  redis.call('PEXPIRE', key, ttlMs + slackMs)
  redis.call('SET', newestKey, prev, 'PX', ttlMs + slackMs)
else
  redis.call('SET', newestKey, prev, 'KEEPTTL')
end
return { first, elsewhere }
`

/** An entry's fields, and the subtask a body names. */
const ENTRY = `
local rank = ${LUA_LEVEL_RANKS}
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
`

/** KEYS[1] stream; ARGV: ttlMs, order, since|'', minRank, subtask|'', limit. Returns id, level, body, ... */
const READ = `${PRELUDE}${ENTRY}
local key = KEYS[1]
local ttlMs = tonumber(ARGV[1])
local asc = ARGV[2] == 'asc'
local since = ARGV[3]
local minRank = tonumber(ARGV[4])
local subtask = ARGV[5]
local limit = tonumber(ARGV[6])
local c = cutoff(ttlMs)
local lo = c or '-'
if since ~= '' and (c == nil or not lt(since, c)) then lo = '(' .. since end
local page = limit
if (minRank > 0 or subtask ~= '') and page < 256 then page = 256 end
local out = {}
local n = 0
local bound = asc and lo or '+'
while n < limit do
  local batch
  if asc then
    batch = redis.call('XRANGE', key, bound, '+', 'COUNT', page)
  else
    batch = redis.call('XREVRANGE', key, bound, lo, 'COUNT', page)
  end
  for _, e in ipairs(batch) do
    local l, d = fields(e)
    if (minRank == 0 or (rank[l] or 0) >= minRank) and (subtask == '' or subtaskOf(d) == subtask) then
      out[#out + 1] = e[1]
      out[#out + 1] = l
      out[#out + 1] = d
      n = n + 1
      if n >= limit then break end
    end
  end
  if #batch < page then break end
  bound = '(' .. batch[#batch][1]
end
return out
`

/** KEYS[1] stream; ARGV: ttlMs, since|'', limit. Returns { recovered 0|1, { id, level, body, ... } }. */
const REPLAY = `${PRELUDE}${ENTRY}${LOST_BEFORE}
local key = KEYS[1]
local ttlMs = tonumber(ARGV[1])
local since = ARGV[2]
local limit = tonumber(ARGV[3])
if redis.call('EXISTS', key) == 0 then
  if since == '' then return { 1, {} } end
  local before = lostBefore(key, ttlMs)
  if not before or parse(since) >= before then return { 1, {} } end
  return { 0, {} }
end
local c = cutoff(ttlMs)
local batch = {}
if limit > 0 then
  if since == '' then
    local rev = redis.call('XREVRANGE', key, '+', c or '-', 'COUNT', limit)
    for i = #rev, 1, -1 do batch[#batch + 1] = rev[i] end
  else
    local lo = '(' .. since
    if c and lt(since, c) then lo = c end
    batch = redis.call('XRANGE', key, lo, '+', 'COUNT', limit)
  end
end
local out = {}
for _, e in ipairs(batch) do
  local l, d = fields(e)
  out[#out + 1] = e[1]
  out[#out + 1] = l
  out[#out + 1] = d
end
local recovered = 1
if since ~= '' then
  -- The first entry not past its TTL names its predecessor, the newest entry gone (trimmed, or
  -- expired and not trimmed yet): nothing after since is gone iff since is not before it.
  local kept = redis.call('XRANGE', key, c or '-', '+', 'COUNT', 1)[1]
  if kept then
    local _, _, p = fields(kept)
    if p and p ~= '' and lt(since, p) then recovered = 0 end
  else
    -- Every entry is past its TTL: a gap unless since is the newest of them, or later.
    local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
    if newest and lt(since, newest[1]) then recovered = 0 end
  end
end
return { recovered, out }
`

interface Script {
  name: string
  source: string
  sha: string
}

const script = (name: string, source: string): Script => ({
  name,
  source,
  sha: new Bun.CryptoHasher('sha1').update(source).digest('hex'),
})

const SCRIPTS = {
  append: script('append', APPEND),
  read: script('read', READ),
  replay: script('replay', REPLAY),
}

const STORE_NAME = 'Log history (Redis)'

function toStoredLogs(flat: unknown): StoredLog[] {
  if (!Array.isArray(flat)) throw new TypeError('unexpected reply from Redis')
  const out: StoredLog[] = []
  for (let i = 0; i + 2 < flat.length; i += 3) {
    out.push({ id: String(flat[i]), level: String(flat[i + 1]) as Level, body: String(flat[i + 2]) })
  }
  return out
}

/** Tasks whose last housekeeping an instance remembers (RedisHistory.#housekeptAt). */
const HOUSEKEPT_MAX = 10_000

export class RedisHistory implements HistoryStore {
  readonly description: string
  readonly #client: RedisClient
  readonly #ttlMs: number
  readonly #maxPerTask: number
  readonly #timeoutMs: number
  readonly #logger: Pick<Console, 'warn' | 'info'>
  readonly #watchdog: Watchdog
  readonly #follower: Follower
  /** The append script's fixed arguments: ttl ms, cap and housekeeping slack. */
  readonly #appendArgs: string[]
  readonly #housekeepEveryMs: number
  /**
   * When this instance last asked for each task's housekeeping (performance.now()). Deciding
   * here spared the script reading the time from ids: 10% of its Redis CPU. Past HOUSEKEPT_MAX
   * tasks the one housekept longest ago is forgotten, which only brings its next one forward.
   */
  readonly #housekeptAt = new Map<string, number>()
  #healthy = false
  #started = false
  #closed = false
  /** An append was refused for memory (OOM) and none has succeeded since. */
  #full = false
  /** How many times the watchdog reset the connection: a call pending across one timed out. */
  #resets = 0

  private constructor(opts: RedisHistoryOptions) {
    if (!(opts.ttlSeconds > 0) || !Number.isFinite(opts.ttlSeconds)) throw new RangeError('ttlSeconds must be > 0')
    if (!Number.isInteger(opts.maxPerTask) || opts.maxPerTask < 1) throw new RangeError('maxPerTask must be an integer >= 1')
    this.description = redactRedisUrl(opts.url)
    this.#follower = opts.follower ?? { instanceId: crypto.randomUUID(), follows: () => false }
    this.#ttlMs = Math.round(opts.ttlSeconds * 1000)
    this.#maxPerTask = opts.maxPerTask
    this.#appendArgs = [String(this.#ttlMs), String(this.#maxPerTask), String(housekeepingMs(this.#ttlMs))]
    this.#housekeepEveryMs = housekeepingMs(this.#ttlMs) / 2
    this.#timeoutMs = opts.timeoutMs ?? 2000
    this.#logger = opts.logger ?? console
    this.#watchdog = new Watchdog(this.#timeoutMs, () => this.#reset())
    this.#client = createRedisClient(opts.url, this.#timeoutMs)
    // Without an 'error' listener an outage would crash the process; log transitions only.
    this.#client.on('error', (err: Error) => {
      if (this.#healthy && !this.#closed) {
        this.#logger.warn(`[history] ${this.description} unavailable (${err.message}); reconnecting`)
      }
      this.#healthy = false
    })
    this.#client.on('ready', () => {
      if (!this.#healthy && this.#started && !this.#closed) this.#logger.info(`[history] ${this.description} reconnected`)
      this.#healthy = true
    })
  }

  /** Connects (waiting up to startupTimeoutMs), checks for Redis >= 7 and loads the scripts. */
  static async connect(opts: RedisHistoryOptions): Promise<RedisHistory> {
    const store = new RedisHistory(opts)
    const wait = opts.startupTimeoutMs ?? 5000
    try {
      await withTimeout(store.#client.connect(), wait, `no connection within ${wait} ms`)
      const info = String(await store.#call(store.#client.sendCommand(['INFO', 'server'])))
      const version = /redis_version:(\d+)/.exec(info)?.[1]
      if (version !== undefined && Number(version) < 7) {
        throw new Error(`Redis ${version} is too old: log history needs Redis >= 7.0 (XSETID MAXDELETEDID)`)
      }
      for (const s of Object.values(SCRIPTS)) {
        const sha = String(await store.#call(store.#client.sendCommand(['SCRIPT', 'LOAD', s.source])))
        if (sha !== s.sha) throw new Error(`SCRIPT LOAD returned ${sha} for ${s.name}, expected ${s.sha}`)
      }
    } catch (err) {
      store.#closed = true
      store.#client.destroy()
      throw new StoreUnavailableError(`${STORE_NAME} at ${store.description}`, err)
    }
    store.#started = true
    return store
  }

  append(taskId: string, logs: EncodedLog[]): Promise<Appended> {
    if (logs.length === 0) return Promise.reject(new RangeError('an append needs at least one log'))
    const now = performance.now()
    const last = this.#housekeptAt.get(taskId)
    const housekeep = last === undefined || now - last >= this.#housekeepEveryMs
    if (housekeep) {
      // Re-inserted, so that the first entry is the task housekept longest ago.
      this.#housekeptAt.delete(taskId)
      if (this.#housekeptAt.size >= HOUSEKEPT_MAX) this.#housekeptAt.delete(this.#housekeptAt.keys().next().value!)
      this.#housekeptAt.set(taskId, now)
    }
    // Built in place: this is the hot path.
    const command = [
      'EVALSHA',
      SCRIPTS.append.sha,
      '3',
      logKey(taskId),
      newestIdKey(taskId),
      subscribersKey(taskId),
      ...this.#appendArgs,
    ]
    command.push(housekeep ? '1' : '0', this.#follower.follows(taskId) ? '1' : '0', this.#follower.instanceId)
    for (const log of logs) command.push(log.level, log.body)
    return this.#eval(SCRIPTS.append, command).then(
      (reply) => {
        if (!Array.isArray(reply) || reply.length !== 2) {
          throw new StoreUnavailableError(STORE_NAME, new TypeError('unexpected reply to append'))
        }
        this.#full = false
        // Redis may have run a late reply's append beyond the margin of the last housekeeping.
        if (!housekeep && performance.now() - now > this.#housekeepEveryMs) this.#housekeepLate(taskId)
        return {
          firstId: String(reply[0]),
          subscribersElsewhere: Number(reply[1]),
        }
      },
      (error) => {
        // Not known to be done: the next append asks again.
        if (housekeep && this.#housekeptAt.get(taskId) === now) this.#housekeptAt.delete(taskId)
        throw error
      },
    )
  }

  /**
   * After a stall: refreshes both keys' expiry now (it then outlives the late append's logs by
   * their TTL), and has the next append housekeep. Best effort: a failure is the stall's.
   */
  #housekeepLate(taskId: string): void {
    this.#housekeptAt.delete(taskId)
    const expiry = String(this.#ttlMs + housekeepingMs(this.#ttlMs))
    for (const key of [logKey(taskId), newestIdKey(taskId)]) this.#client.sendCommand(['PEXPIRE', key, expiry]).catch(() => {})
  }

  async read(taskId: string, query: HistoryQuery): Promise<StoredLog[]> {
    if (query.since !== undefined) requireLogId(query.since)
    if (query.limit <= 0) return []
    const reply = await this.#eval(
      SCRIPTS.read,
      this.#command(SCRIPTS.read, taskId, [
        String(this.#ttlMs),
        query.order === 'asc' ? 'asc' : 'desc',
        query.since ?? '',
        String(query.minLevel ? levelRank(query.minLevel) : 0),
        query.subtaskId ?? '',
        String(Math.floor(query.limit)),
      ]),
    )
    return toStoredLogs(reply)
  }

  async replay(taskId: string, since: string | undefined, limit: number): Promise<Replay> {
    if (since !== undefined) requireLogId(since)
    const reply = await this.#eval(
      SCRIPTS.replay,
      this.#command(SCRIPTS.replay, taskId, [String(this.#ttlMs), since ?? '', String(Math.max(0, Math.floor(limit)))]),
    )
    if (!Array.isArray(reply) || reply.length !== 2) {
      throw new StoreUnavailableError(STORE_NAME, new TypeError('unexpected reply to replay'))
    }
    return { logs: toStoredLogs(reply[1]), recovered: Number(reply[0]) === 1 }
  }

  /** Rejects with StoreFullError while Redis, having refused an append for memory, is still past maxmemory. */
  async ping(): Promise<void> {
    await this.#call(this.#client.sendCommand(['PING']))
    if (!this.#full) return
    const info = String(await this.#call(this.#client.sendCommand(['INFO', 'memory'])))
    const used = Number(/used_memory:(\d+)/.exec(info)?.[1])
    const max = Number(/maxmemory:(\d+)/.exec(info)?.[1])
    if (max > 0 && used >= max) throw new StoreFullError(`${STORE_NAME} at ${this.description}`)
    this.#full = false
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (!this.#client.isOpen) return
    try {
      await withTimeout(this.#client.close(), this.#timeoutMs, 'Redis did not close in time')
    } catch {
      this.#client.destroy()
    }
  }

  /** `EVALSHA <sha> 1 <key> ...args` for one of the scripts. */
  #command(s: Script, taskId: string, args: string[]): string[] {
    return ['EVALSHA', s.sha, '1', logKey(taskId), ...args]
  }

  /** Runs an EVALSHA command, or EVAL when Redis lost its script cache (restart, SCRIPT FLUSH). */
  #eval(s: Script, command: string[]): Promise<unknown> {
    return this.#call(this.#client.sendCommand(command), (err) => {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) return undefined
      command[0] = 'EVAL'
      command[1] = s.source
      return this.#call(this.#client.sendCommand(command))
    })
  }

  /**
   * Watches one call against Redis (see Watchdog); any failure is a StoreUnavailableError
   * unless `retry` answers it with another call. One reaction per call: this is the hot path.
   */
  #call<T>(call: Promise<T>, retry?: (err: unknown) => Promise<T> | undefined): Promise<T> {
    this.#watchdog.started()
    const resets = this.#resets
    return call.then(
      (value) => {
        this.#watchdog.answered()
        return value
      },
      (err: unknown) => {
        this.#watchdog.answered()
        const again = retry?.(err)
        if (again) return again
        // Redis past maxmemory refuses writes (scripts at their first write, so none is partial).
        if (err instanceof Error && err.message.includes('OOM ')) {
          this.#full = true
          throw new StoreFullError(STORE_NAME, err)
        }
        // Failed by a reset: Redis had the command and may still carry it out.
        if (this.#resets !== resets) throw new StoreTimeoutError(STORE_NAME, this.#timeoutMs, err)
        throw new StoreUnavailableError(STORE_NAME, err)
      },
    )
  }

  /** Fails every pending call and reconnects: Redis answered nothing for timeoutMs. */
  #reset(): void {
    if (this.#closed) return
    this.#logger.warn(`[history] ${this.description} answered nothing for ${this.#timeoutMs} ms; reconnecting`)
    this.#healthy = false
    this.#resets++
    this.#client.destroy()
    this.#client.connect().catch(() => {})
  }
}

/**
 * Bounds the wait for Redis per connection rather than per call. Replies come back in order on
 * the one connection, so when calls are pending and none has been answered for `timeoutMs`,
 * Redis is hung or the connection half-open: `onStall` then fails every pending call at once.
 * A call costs two counter updates; a promise and timer entry per call cost 2 µs of the
 * ~30 µs an ingest request takes. Precision: the sweep interval.
 */
class Watchdog {
  static readonly SWEEP_MS = 100
  #pending = 0
  #answered = 0
  #answeredAtSweep = 0
  /** When the last sweep saw an answer, or saw calls start on an idle connection. */
  #progressAt = 0
  #timer: ReturnType<typeof setInterval> | undefined

  constructor(
    private readonly timeoutMs: number,
    private readonly onStall: () => void,
  ) {}

  started(): void {
    this.#pending++
    if (this.#timer) return
    this.#progressAt = performance.now()
    this.#timer = setInterval(() => this.#sweep(), Watchdog.SWEEP_MS)
    this.#timer.unref?.()
  }

  answered(): void {
    this.#pending--
    this.#answered++
  }

  #sweep(): void {
    const now = performance.now()
    if (this.#pending === 0) {
      clearInterval(this.#timer)
      this.#timer = undefined
    } else if (this.#answered !== this.#answeredAtSweep) {
      this.#answeredAtSweep = this.#answered
      this.#progressAt = now
    } else if (now - this.#progressAt >= this.timeoutMs) {
      this.#progressAt = now
      this.onStall()
    }
  }
}
