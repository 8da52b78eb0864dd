/**
 * Log history in Redis: one stream per task (keys.ts), written and read by the Lua scripts of
 * scripts.ts, each call ONE round trip.
 *
 * - append (append.lua): per log XADD, exact count trimming (once per batch), then ONE PUBLISH
 *   of the whole append on the task's channel, in id order (feed.ts decodes it), unless the
 *   append came on the connection that is the channel's only subscriber (Follower). A batch's ids are
 *   consecutive (`<ms>-<seq>`, `<ms>-<seq + 1>`, ...), so the script returns only the first and,
 *   when another instance also follows the channel, the subscribers other instances announced
 *   (presence.ts). Trimming by age and the key's expiry happen on an instance's first append to
 *   a task, then at most every half slack window (`housekeepingMs`), not on every append.
 *   Each entry names its predecessor (an append's first records it, the others follow it), since
 *   Redis 7.0 does not update the stream's `max-deleted-entry-id` when XADD/XTRIM trim
 *   (tests/history-store.test.ts checks it).
 * - read (read.lua): pages through the stream applying the level and subtask filters, never
 *   returning a log older than the TTL (logs are only physically trimmed on append).
 * - replay (replay.lua): the range plus `recovered` (backend.ts Replay), from the predecessor
 *   the first entry not past its TTL names (entry.lua `predecessor`), or, when the stream is gone, from the TTL,
 *   Redis' uptime and the task's creation time. FLUSHALL, DEL or eviction of a stream within its
 *   TTL are losses this cannot see: run Redis with `maxmemory-policy noeviction`.
 *
 * Outages: the client never queues commands while disconnected; when calls are pending and
 * Redis answers none of them for `timeoutMs` (default 2 s), all of them fail and the connection
 * is reset (watchdog.ts); every failure is a StoreUnavailableError, and the client reconnects
 * forever in the background. An append Redis had received before such a reset may still be applied.
 */
import {
  IdempotencyConflictError,
  RateLimitedError,
  StoreFullError,
  StoreTimeoutError,
  StoreUnavailableError,
  type RateLimit,
} from '../../store-errors'
import { withTimeout } from '../../timeout'
import { levelRank, topRank } from '../../schemas/common'
import type { AppendOptions, Appended, HistoryQuery, HistoryStore, Replay, StoredLog } from '../backend'
import type { EncodedLog } from '../encode'
import { requireLogId } from '../log-id'
import { logIdAfter } from '../../../clients/ts/src/log-id'
import { createRedisConnection, redactRedisUrl, type RedisConnection } from './connection'
import type { Answer } from './delivery-order'
import { archivePendingKey, idempotencyKey, logKey, newestIdKey, subscribersKey } from './keys'
import { appendScript, SCRIPTS, toStoredLogs, type Script } from './scripts'
import { defineTracingHasSubscribers } from './tracing'
import { Watchdog } from './watchdog'

defineTracingHasSubscribers()

/**
 * This instance as an append sees it: whose announcements to leave out (it counts its own),
 * whether it follows the task's channel itself (then, when it is the only follower, no other
 * instance can have subscribers and the append reads no announcement), and the connection that
 * follows it, if that one may carry the append. RedisFeed is one.
 */
export interface Follower {
  readonly instanceId: string
  follows(taskId: string): boolean
  /** See FollowingConnection; undefined when the append goes on the history's own connection. */
  followingConnection?(taskId: string): FollowingConnection | undefined
}

/**
 * The connection subscribed to a task's channel, carrying an append of that task: Redis runs it
 * after the subscription, so when that connection is the channel's only subscriber the script
 * publishes nothing (append.lua), and the follower delivers the logs from the reply. `answered`
 * reads from a reply the logs it delivers, and the newest id it saw (delivery-order.ts).
 */
export interface FollowingConnection {
  send(command: string[], answered: (reply: unknown) => Answer | undefined): Promise<unknown>
}

export interface RedisHistoryOptions {
  url: string
  ttlSeconds: number
  maxPerTask: number
  /** The connection to use, shared with the engine's feed and presence; by default one of its own. */
  client?: RedisConnection
  /** Upper bound for every call, in ms (default 2000). */
  timeoutMs?: number
  /** How long connect() waits for the first connection, in ms (default 5000). */
  startupTimeoutMs?: number
  /** Where outage/reconnect messages go (default console). */
  logger?: Pick<Console, 'warn' | 'info'>
  /** This instance as its feed knows it; default: one that follows nothing. */
  follower?: Follower
  /** Per task, across instances (append.lua); default none. */
  rateLimit?: RateLimit
  /** The archive is on: each append adds its task to the archive's to-do list (keys.ts, of its slot on a cluster). */
  archive?: boolean
}

/**
 * The slack (ms) of trimming a task's stream by age and of its expiry: an instance asks for both
 * every half slack per task rather than on every append. Entries stay up to this long past their
 * TTL (invisible to reads) and keys up to this long after it: 1 s, or TTL / 20 when shorter. Half
 * of it is the margin for replies delayed in Redis; a reply later than that housekeeps again
 * (RedisHistory.#housekeepLate).
 */
export const housekeepingMs = (ttlMs: number): number => Math.max(1, Math.min(1000, Math.floor(ttlMs / 20)))

const STORE_NAME = 'Log history (Redis)'

/** A number field of an INFO reply (`<name>:<digits>` on a line). */
const infoField = (info: unknown, name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(String(info))?.[1])

/** Tasks whose last housekeeping an instance remembers (RedisHistory.#housekeptAt). */
const HOUSEKEPT_MAX = 10_000

/**
 * What the reply to an append sent on the following connection releases (delivery-order.ts):
 * the logs, when the script published none, else the newest id it stored; nothing when it
 * stored nothing.
 */
function answered(reply: unknown, logs: EncodedLog[]): Answer | undefined {
  if (!Array.isArray(reply)) return undefined
  const first = String(reply[0])
  if (first.charCodeAt(0) > 57) return undefined
  if (Number(reply[2]) !== 1) return { through: logIdAfter(first, logs.length - 1) }
  return { logs: logs.map((log, i) => ({ id: logIdAfter(first, i), level: log.level, body: log.body })) }
}

export class RedisHistory implements HistoryStore {
  readonly description: string
  readonly #client: RedisConnection
  readonly #ttlMs: number
  readonly #timeoutMs: number
  readonly #logger: Pick<Console, 'warn' | 'info'>
  readonly #watchdog: Watchdog
  readonly #follower: Follower
  /** The append script with this instance's settings. */
  readonly #append: Script
  readonly #rateLimit: RateLimit
  readonly #housekeepEveryMs: number
  /** The archive is on: appends add their task to its to-do list. */
  readonly #archive: boolean
  /**
   * When this instance last asked for each task's housekeeping (performance.now()). Deciding
   * here spares the script reading the time from ids, a large part of its cost. Past HOUSEKEPT_MAX
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
  /** Fails the calls raced against the next reset (#untilReset). */
  #abandon: (err: Error) => void = () => {}
  #resetting: Promise<never> = this.#nextReset()

  private constructor(opts: RedisHistoryOptions) {
    if (!(opts.ttlSeconds > 0) || !Number.isFinite(opts.ttlSeconds)) throw new RangeError('ttlSeconds must be > 0')
    if (!Number.isInteger(opts.maxPerTask) || opts.maxPerTask < 1) throw new RangeError('maxPerTask must be an integer >= 1')
    this.description = redactRedisUrl(opts.url)
    this.#follower = opts.follower ?? { instanceId: crypto.randomUUID(), follows: () => false }
    this.#ttlMs = Math.round(opts.ttlSeconds * 1000)
    this.#rateLimit = opts.rateLimit ?? { perSecond: 0, burst: 0 }
    const { perSecond, burst } = this.#rateLimit
    // The limit as the script's GCRA takes it: ms per log, and the burst in ms.
    const intervalMs = perSecond > 0 ? 1000 / perSecond : 0
    this.#housekeepEveryMs = housekeepingMs(this.#ttlMs) / 2
    this.#archive = opts.archive === true
    this.#timeoutMs = opts.timeoutMs ?? 2000
    this.#logger = opts.logger ?? console
    this.#watchdog = new Watchdog(this.#timeoutMs, () => this.#reset())
    this.#client = opts.client ?? createRedisConnection(opts.url, this.#timeoutMs)
    this.#append = appendScript({
      publish: this.#client.publishCommand,
      ttlMs: this.#ttlMs,
      maxLen: opts.maxPerTask,
      slackMs: housekeepingMs(this.#ttlMs),
      intervalMs,
      toleranceMs: intervalMs * burst,
    })
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
      for (const info of await store.#call(store.#client.sendToEach(['INFO', 'server']))) {
        const version = /redis_version:(\d+)/.exec(String(info))?.[1]
        if (version !== undefined && Number(version) < 7) {
          throw new Error(`Redis ${version} is too old: log history needs Redis >= 7.0, the oldest version it is tested with`)
        }
      }
      for (const s of [store.#append, ...Object.values(SCRIPTS)]) {
        for (const sha of await store.#call(store.#client.sendToEach(['SCRIPT', 'LOAD', s.source]))) {
          if (sha !== s.sha) throw new Error(`SCRIPT LOAD returned ${String(sha)} for ${s.name}, expected ${s.sha}`)
        }
      }
    } catch (err) {
      store.#closed = true
      store.#client.destroy()
      throw new StoreUnavailableError(`${STORE_NAME} at ${store.description}`, err)
    }
    store.#started = true
    return store
  }

  append(taskId: string, logs: EncodedLog[], options?: AppendOptions): Promise<Appended> {
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
    const idempotency = options?.idempotency
    // Built in place: this is the hot path.
    const command = [
      'EVALSHA',
      this.#append.sha,
      this.#archive ? '4' : '3',
      logKey(taskId),
      newestIdKey(taskId),
      subscribersKey(taskId),
    ]
    if (idempotency) {
      command[2] = this.#archive ? '5' : '4'
      command.push(idempotencyKey(taskId, idempotency.key))
    }
    if (this.#archive) command.push(archivePendingKey(taskId, this.#client.isCluster))
    // What the call asks (append.lua ARGV[1]), then the logs' highest level rank and this
    // instance's id; whether and where it follows the task is filled in as it is sent.
    const asks = command.length
    const rest = (idempotency ? '1' : '0') + topRank(logs) + this.#follower.instanceId
    command.push('')
    if (idempotency) command.push(idempotency.fingerprint)
    // The bodies only: each holds its level.
    for (const log of logs) command.push(log.body)
    const send = (key: string, args: string[]): Promise<unknown> => {
      const following = this.#follower.followingConnection?.(taskId)
      args[asks] = (housekeep ? '1' : '0') + (following ? '2' : this.#follower.follows(taskId) ? '1' : '0') + rest
      return following ? this.#untilReset(following.send(args, (reply) => answered(reply, logs))) : this.#client.send(key, args)
    }
    return this.#eval(this.#append, command, send).then(
      (reply) => {
        if (!Array.isArray(reply) || reply.length < 1) {
          throw new StoreUnavailableError(STORE_NAME, new TypeError('unexpected reply to append'))
        }
        this.#full = false
        const head = String(reply[0])
        // A log id starts with a digit; anything else stored nothing (append.lua), nor housekept.
        if (head.charCodeAt(0) > 57) {
          if (housekeep && this.#housekeptAt.get(taskId) === now) this.#housekeptAt.delete(taskId)
          if (head === 'replayed') return { firstId: String(reply[1]), subscribersElsewhere: 0, replayed: true as const }
          if (head === 'conflict') throw new IdempotencyConflictError(idempotency!.key)
          if (head === 'limited')
            throw new RateLimitedError(taskId, this.#rateLimit, Number(reply[1]), Number(reply[2]), Number(reply[3]))
          throw new StoreUnavailableError(STORE_NAME, new TypeError(`unexpected reply to append: ${head}`))
        }
        // Redis may have run a late reply's append beyond the margin of the last housekeeping.
        if (!housekeep && performance.now() - now > this.#housekeepEveryMs) this.#housekeepLate(taskId)
        return { firstId: head, subscribersElsewhere: Number(reply[1]) }
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
    for (const key of [logKey(taskId), newestIdKey(taskId)]) this.#client.send(key, ['PEXPIRE', key, expiry]).catch(() => {})
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

  /**
   * Every master answers; rejects with StoreFullError while a Redis, having refused an append for
   * memory, is still past maxmemory (on a cluster: any master).
   */
  async ping(): Promise<void> {
    await this.#call(this.#client.sendToEach(['PING']))
    if (!this.#full) return
    const infos = await this.#call(this.#client.sendToEach(['INFO', 'memory']))
    if (infos.some((info) => infoField(info, 'maxmemory') > 0 && infoField(info, 'used_memory') >= infoField(info, 'maxmemory'))) {
      throw new StoreFullError(`${STORE_NAME} at ${this.description}`)
    }
    this.#full = false
  }

  /** used_memory, summed over the masters of a cluster. */
  async usedMemory(): Promise<number> {
    const infos = await this.#call(this.#client.sendToEach(['INFO', 'memory']))
    return infos.reduce<number>((sum, info) => sum + infoField(info, 'used_memory'), 0)
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

  /**
   * Runs an EVALSHA command (`EVALSHA <sha> <n> <task key> ...`) on the Redis holding its first
   * key, or EVAL there when that Redis lost its script cache (restart, SCRIPT FLUSH, a replica
   * that replaced its master).
   */
  #eval(s: Script, command: string[], send = this.#send): Promise<unknown> {
    const key = command[3]!
    return this.#call(send(key, command), (err) => {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) return undefined
      command[0] = 'EVAL'
      command[1] = s.source
      return this.#call(send(key, command))
    })
  }

  readonly #send = (key: string, command: string[]): Promise<unknown> => this.#client.send(key, command)

  /**
   * A call on another connection than the history's (the feed's, see Follower), failed by the
   * watchdog's reset as the history's own calls are: its connection is the feed's to keep.
   */
  #untilReset(call: Promise<unknown>): Promise<unknown> {
    return Promise.race([call, this.#resetting])
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
    this.#abandon(new Error(`no reply from Redis within ${this.#timeoutMs} ms`))
    this.#resetting = this.#nextReset()
    this.#client.reconnect()
  }

  /** Rejects when the watchdog next resets: what #untilReset races a call against. */
  #nextReset(): Promise<never> {
    const reset = new Promise<never>((_, reject) => (this.#abandon = reject))
    reset.catch(() => {})
    return reset
  }
}
