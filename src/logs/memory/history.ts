/**
 * In-process log history, with the semantics of the Redis engine entry for entry:
 * - ids are `<ms>-<seq>` like Redis stream ids: ms = max(now, last ms of the task), seq restarts
 *   at 0 on a new ms and increments otherwise, so ids strictly increase per task;
 * - a log is kept `ttlSeconds` after it was written (the id's ms is its write time): a log is
 *   expired once `ms < now - ttlSeconds * 1000`, exactly the cut-off of Redis' `XTRIM MINID`;
 * - at most `maxPerTask` logs per task (the oldest are dropped);
 * - reads never return an expired log, even before the sweeper physically removed it;
 * - all tasks together hold at most `maxBytes` (each log counted as its body plus a fixed
 *   overhead): past it, the tasks whose newest log is oldest lose their history first;
 * - `recovered` follows the rule of backend.ts Replay, from the highest id ever removed. Removal
 *   (by age, count or bytes) always takes the oldest logs of a task; a task trimmed whole for
 *   bytes keeps that id (a tombstone) until its logs would have expired;
 * - idempotency keys are kept for the TTL (at most IDEMPOTENCY_KEYS_MAX), and the rate limit is
 *   the same GCRA as the Redis append script's, on this clock.
 */
import { levelRank } from '../../schemas/common'
import type { AppendOptions, Appended, HistoryQuery, HistoryStore, Replay, StoredLog } from '../backend'
import { IdempotencyConflictError, RateLimitedError, type RateLimit } from '../../store-errors'
import type { EncodedLog } from '../encode'
import type { LogIdParts } from '../../../clients/ts/src/log-id'
import { requireLogId, taskCreatedMs } from '../log-id'
import type { MemoryFeed } from './feed'

const cmp = (a: LogIdParts, b: LogIdParts): number => a.ms - b.ms || a.seq - b.seq

/** A stored log with its id's parts and its subtask. */
export interface HistoryEntry extends LogIdParts {
  subtaskId: string
  log: StoredLog
}

interface TaskHistory {
  /** Entries in id order; `entries[head..]` are live, the rest await compaction. */
  entries: HistoryEntry[]
  head: number
  lastMs: number
  lastSeq: number
  /** Highest id ever removed (trimmed by count or expired). */
  removed?: LogIdParts
}

export interface MemoryHistoryOptions {
  ttlSeconds: number
  maxPerTask: number
  /** Bytes all tasks may hold together (default 256 MiB). */
  maxBytes?: number
  /** Where appended logs go live, as Redis' append script publishes them on the task's channel. */
  feed: MemoryFeed
  /** The clock (ms since the epoch); Date.now by default. */
  now?: () => number
  /** Per task (default none), as the Redis engine's append script enforces it. */
  rateLimit?: RateLimit
}

/** An idempotency key's record (AppendOptions): what its first append answered, until when. */
interface KeyRecord {
  fingerprint: string
  firstId: string
  expiresMs: number
}

/**
 * Idempotency keys remembered, across tasks: past it the oldest is forgotten before its TTL (a
 * retry under it would then store again). Each takes a few hundred bytes.
 */
const IDEMPOTENCY_KEYS_MAX = 100_000
/** Tasks whose rate-limit state is kept: a task forgotten early starts again with a full burst. */
const RATE_STATES_MAX = 100_000

const size = (task: TaskHistory): number => task.entries.length - task.head

/** What a log costs beyond its body: the entry, the StoredLog and its id string. */
const ENTRY_OVERHEAD_BYTES = 160
const entryBytes = (e: HistoryEntry): number => e.log.body.length + ENTRY_OVERHEAD_BYTES

/** Tasks trimmed whole for bytes whose loss is remembered; the oldest tombstone goes first. */
const TOMBSTONES_MAX = 100_000

export class MemoryHistory implements HistoryStore {
  readonly description = 'memory (in-process; lost on restart)'
  readonly #ttlMs: number
  readonly #maxPerTask: number
  /** In order of their newest log, stalest first: the order in which bytes are reclaimed. */
  readonly #tasks = new Map<string, TaskHistory>()
  /** Tasks trimmed whole for bytes: the highest id each lost. */
  readonly #tombstones = new Map<string, LogIdParts>()
  readonly #maxBytes: number
  #bytes = 0
  readonly #feed: MemoryFeed
  readonly #now: () => number
  /** Everything written before this store began was lost with the process that held it. */
  readonly #startedMs: number
  #sweeper: ReturnType<typeof setInterval> | undefined
  /** `<task id> <key>` -> its record, oldest first (every record lives the TTL, so also first to expire). */
  readonly #keys = new Map<string, KeyRecord>()
  readonly #rateLimit: RateLimit | undefined
  /** ms per log of the rate limit, and the burst in ms (the GCRA of append.lua). */
  readonly #intervalMs: number
  readonly #toleranceMs: number
  /** Per task: when its bucket is full again (ms), while it is not. */
  readonly #fullAt = new Map<string, number>()

  constructor(opts: MemoryHistoryOptions) {
    if (!(opts.ttlSeconds > 0) || !Number.isFinite(opts.ttlSeconds)) throw new RangeError('ttlSeconds must be > 0')
    if (!Number.isInteger(opts.maxPerTask) || opts.maxPerTask < 1) throw new RangeError('maxPerTask must be an integer >= 1')
    this.#ttlMs = Math.round(opts.ttlSeconds * 1000)
    this.#maxPerTask = opts.maxPerTask
    this.#maxBytes = opts.maxBytes ?? 256 * 1024 * 1024
    this.#feed = opts.feed
    this.#now = opts.now ?? Date.now
    this.#startedMs = this.#now()
    this.#rateLimit = opts.rateLimit && opts.rateLimit.perSecond > 0 ? opts.rateLimit : undefined
    this.#intervalMs = this.#rateLimit ? 1000 / this.#rateLimit.perSecond : 0
    this.#toleranceMs = this.#rateLimit ? this.#intervalMs * this.#rateLimit.burst : 0
    // Bounded memory: drop expired logs and empty tasks even when nobody reads them.
    const every = Math.min(60_000, Math.max(1_000, Math.floor(this.#ttlMs / 2)))
    this.#sweeper = setInterval(() => this.sweep(), every)
    this.#sweeper.unref?.()
  }

  /** Number of tasks currently holding logs (for tests and metrics). */
  get taskCount(): number {
    return this.#tasks.size
  }

  /** Bytes the logs held take, as counted against maxBytes (for tests and metrics). */
  get bytes(): number {
    return this.#bytes
  }

  /** Drops expired logs, tasks left empty and tombstones older than any log could be. Runs on a timer; callable directly. */
  sweep(now = this.#now()): void {
    for (const taskId of this.#tasks.keys()) this.#live(taskId, now)
    for (const [taskId, removed] of this.#tombstones) if (removed.ms < now - this.#ttlMs) this.#tombstones.delete(taskId)
    for (const [name, record] of this.#keys) {
      if (record.expiresMs > now) break
      this.#keys.delete(name)
    }
    for (const [taskId, fullAt] of this.#fullAt) if (fullAt <= now) this.#fullAt.delete(taskId)
  }

  /** One process is one instance: nobody elsewhere subscribes. */
  async append(taskId: string, logs: EncodedLog[], options?: AppendOptions): Promise<Appended> {
    if (logs.length === 0) throw new RangeError('an append needs at least one log')
    const now = this.#now()
    const idempotency = options?.idempotency
    const keyName = idempotency && `${taskId} ${idempotency.key}`
    if (keyName) {
      const record = this.#keys.get(keyName)
      if (record && record.expiresMs > now) {
        if (record.fingerprint !== idempotency!.fingerprint) throw new IdempotencyConflictError(idempotency!.key)
        return { firstId: record.firstId, subscribersElsewhere: 0, replayed: true }
      }
    }
    if (this.#rateLimit) this.#charge(taskId, logs.length, now)
    let task = this.#live(taskId, now)
    if (task) this.#tasks.delete(taskId)
    else {
      const before = this.#lostBefore(taskId, now)
      const removed = this.#tombstones.get(taskId) ?? (before === undefined ? undefined : { ms: before, seq: 0 })
      this.#tombstones.delete(taskId)
      task = { entries: [], head: 0, lastMs: 0, lastSeq: -1, removed }
    }
    // Re-inserted: the task appended last is the last to lose its history for bytes.
    this.#tasks.set(taskId, task)
    const out: StoredLog[] = []
    for (const newLog of logs) {
      const ms = Math.max(now, task.lastMs)
      const seq = ms === task.lastMs ? task.lastSeq + 1 : 0
      task.lastMs = ms
      task.lastSeq = seq
      const log: StoredLog = { id: `${ms}-${seq}`, level: newLog.level, body: newLog.body }
      task.entries.push({ ms, seq, subtaskId: newLog.subtask_id, log })
      this.#bytes += log.body.length + ENTRY_OVERHEAD_BYTES
      out.push(log)
    }
    const excess = size(task) - this.#maxPerTask
    if (excess > 0) this.#drop(task, task.head + excess)
    if (this.#bytes > this.#maxBytes) this.#reclaim(task)
    this.#feed.publishLogs(taskId, out)
    const firstId = out[0]!.id
    if (keyName) {
      this.#keys.delete(keyName)
      if (this.#keys.size >= IDEMPOTENCY_KEYS_MAX) this.#keys.delete(this.#keys.keys().next().value!)
      this.#keys.set(keyName, { fingerprint: idempotency!.fingerprint, firstId, expiresMs: now + this.#ttlMs })
    }
    return { firstId, subscribersElsewhere: 0 }
  }

  /** Takes n logs from the task's bucket, or throws RateLimitedError taking nothing (the GCRA of append.lua). */
  #charge(taskId: string, n: number, now: number): void {
    const fullAt = Math.max(this.#fullAt.get(taskId) ?? now, now)
    const after = fullAt + n * this.#intervalMs
    if (after - now > this.#toleranceMs + 1e-6) {
      const remaining = Math.max(0, Math.floor((this.#toleranceMs - (fullAt - now)) / this.#intervalMs + 1e-6))
      throw new RateLimitedError(
        taskId,
        this.#rateLimit!,
        Math.ceil(after - this.#toleranceMs - now),
        remaining,
        Math.ceil(fullAt - now),
      )
    }
    if (!this.#fullAt.has(taskId) && this.#fullAt.size >= RATE_STATES_MAX) this.#fullAt.delete(this.#fullAt.keys().next().value!)
    this.#fullAt.set(taskId, after)
  }

  async read(taskId: string, query: HistoryQuery): Promise<StoredLog[]> {
    const since = query.since === undefined ? undefined : requireLogId(query.since)
    const task = this.#live(taskId, this.#now())
    if (!task || query.limit <= 0) return []
    const min = query.minLevel ? levelRank(query.minLevel) : 0
    const subtaskId = query.subtaskId
    const matches = (e: HistoryEntry) =>
      (min === 0 || levelRank(e.log.level) >= min) && (subtaskId === undefined || e.subtaskId === subtaskId)
    const start = since ? this.#firstAfter(task, since) : task.head
    const out: StoredLog[] = []
    const { entries } = task
    if (query.order === 'asc') {
      for (let i = start; i < entries.length && out.length < query.limit; i++) {
        const e = entries[i]!
        if (matches(e)) out.push(e.log)
      }
    } else {
      for (let i = entries.length - 1; i >= start && out.length < query.limit; i--) {
        const e = entries[i]!
        if (matches(e)) out.push(e.log)
      }
    }
    return out
  }

  async replay(taskId: string, since: string | undefined, limit: number): Promise<Replay> {
    const after = since === undefined ? undefined : requireLogId(since)
    const now = this.#now()
    const task = this.#live(taskId, now)
    if (!task) {
      const trimmed = this.#tombstones.get(taskId)
      if (after && trimmed && cmp(trimmed, after) > 0) return { logs: [], recovered: false }
      const before = this.#lostBefore(taskId, now)
      return { logs: [], recovered: !after || before === undefined || after.ms >= before }
    }
    const n = Math.max(0, limit)
    if (!after) {
      const from = Math.max(task.head, task.entries.length - n)
      return { logs: task.entries.slice(from).map((e) => e.log), recovered: true }
    }
    const from = this.#firstAfter(task, after)
    return {
      logs: task.entries.slice(from, from + n).map((e) => e.log),
      recovered: task.removed === undefined || cmp(task.removed, after) <= 0,
    }
  }

  async ping(): Promise<void> {}

  /** Tasks holding logs, for the archive (archive-source.ts). */
  taskIds(): IterableIterator<string> {
    return this.#tasks.keys()
  }

  /** Up to `count` of a task's entries after `after`, expired ones not yet dropped included, for the archive. */
  entriesAfter(taskId: string, after: LogIdParts | undefined, count: number): HistoryEntry[] {
    const task = this.#tasks.get(taskId)
    if (!task) return []
    const from = after ? this.#firstAfter(task, after) : task.head
    return task.entries.slice(from, from + count)
  }

  /** Whether a task with history here lost (trimmed by count, bytes or age) a log after `after`, for the archive's gaps. */
  lostAfter(taskId: string, after: LogIdParts): boolean {
    const removed = this.#tasks.get(taskId)?.removed
    return removed !== undefined && cmp(removed, after) > 0
  }

  async usedMemory(): Promise<number> {
    return this.#bytes
  }

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper)
    this.#sweeper = undefined
    this.#tasks.clear()
    this.#tombstones.clear()
    this.#keys.clear()
    this.#fullAt.clear()
    this.#bytes = 0
  }

  /**
   * Brings the bytes held back under maxBytes: the tasks whose newest log is oldest lose their
   * whole history first (remembered as tombstones, so a resume reports the gap); the task just
   * appended to, if it alone is too large, loses its oldest logs.
   */
  #reclaim(current: TaskHistory): void {
    for (const [taskId, task] of this.#tasks) {
      if (this.#bytes <= this.#maxBytes || task === current) break
      this.#drop(task, task.entries.length)
      this.#tasks.delete(taskId)
      if (this.#tombstones.size >= TOMBSTONES_MAX) this.#tombstones.delete(this.#tombstones.keys().next().value!)
      this.#tombstones.set(taskId, task.removed!)
    }
    if (this.#bytes <= this.#maxBytes) return
    // Keeps at least the newest log, whatever its size.
    let end = current.head
    for (let over = this.#bytes - this.#maxBytes; over > 0 && end < current.entries.length - 1; end++) {
      over -= entryBytes(current.entries[end]!)
    }
    if (end > current.head) this.#drop(current, end)
  }

  /** The task with its expired logs dropped; undefined (and forgotten) when nothing is left. */
  #live(taskId: string, now: number): TaskHistory | undefined {
    const task = this.#tasks.get(taskId)
    if (!task) return undefined
    const cutoff = now - this.#ttlMs
    let i = task.head
    const { entries } = task
    while (i < entries.length && entries[i]!.ms < cutoff) i++
    if (i > task.head) this.#drop(task, i)
    if (size(task) === 0) {
      this.#tasks.delete(taskId)
      return undefined
    }
    return task
  }

  /** For a task with no history here: the time before which it may have lost logs (backend.ts Replay). */
  #lostBefore(taskId: string, now: number): number | undefined {
    const before = Math.max(now - this.#ttlMs, this.#startedMs)
    const created = taskCreatedMs(taskId)
    return created !== undefined && created >= before ? undefined : before
  }

  /** Removes entries[head..end) (the oldest), remembering the highest removed id. */
  #drop(task: TaskHistory, end: number): void {
    const last = task.entries[end - 1]!
    task.removed = { ms: last.ms, seq: last.seq }
    for (let i = task.head; i < end; i++) this.#bytes -= entryBytes(task.entries[i]!)
    task.head = end
    // Compact once dead slots outnumber live ones: amortized O(1), at most 2x memory.
    if (task.head >= 16 && task.head * 2 >= task.entries.length) {
      task.entries = task.entries.slice(task.head)
      task.head = 0
    }
  }

  /** Index of the first live entry with an id greater than `since`. */
  #firstAfter(task: TaskHistory, since: LogIdParts): number {
    let lo = task.head
    let hi = task.entries.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (cmp(task.entries[mid]!, since) <= 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}
