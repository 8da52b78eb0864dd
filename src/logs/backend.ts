/**
 * The log backend: where a deployment keeps task logs (history), how new logs and status
 * changes reach every instance (live feed), and how instances count each other's subscribers
 * (presence). One engine provides all three, built together by its factory and sharing its
 * connections: `memory/` (one process) and `redis/` (instances sharing a Redis). The hub and the
 * routes know only these interfaces.
 */
import type { Level } from '../schemas/common'
import type { RateLimit } from '../store-errors'
import type { EncodedLog } from './encode'
import type { GroupBound } from './group-commit'
import { memoryBackend } from './memory'
import { connectRedisBackend } from './redis'

/** A log as stored: its id plus its JSON body serialized exactly once at ingest. */
export interface StoredLog {
  id: string
  level: Level
  /** The LogMessage JSON without its id, serialized once at ingest (see encode.ts). */
  body: string
}

/** What an append stored, and who else will receive it. */
export interface Appended {
  /** The first log's id; the others follow it (`logIdAfter`). */
  firstId: string
  /**
   * Subscribers on other instances whose filter accepts at least one of the logs, as their
   * Presence announced them, read in the append's own round trip; 0 for a one-instance engine.
   */
  subscribersElsewhere: number
  /** The append repeated an idempotency key already applied: nothing was stored, `firstId` is the first answer's. */
  replayed?: true
}

/** What makes an append idempotent: a key the client chose, and what it first stored under it. */
export interface Idempotency {
  /** The client's `Idempotency-Key` (1 to 128 printable ASCII characters). */
  key: string
  /** The request's fingerprint (idempotency.ts): a repeat of the key with another one is a conflict. */
  fingerprint: string
}

export interface AppendOptions {
  /**
   * Recorded with the append, for the task's TTL: an append repeating the key with the same
   * fingerprint stores nothing and answers the first append's `firstId` (`replayed`); with another
   * fingerprint it rejects with IdempotencyConflictError. A replay is not charged to the rate limit.
   */
  idempotency?: Idempotency
}

export interface HistoryQuery {
  /** Maximum number of logs returned. */
  limit: number
  /** `desc`: newest first (default). `asc`: oldest first. */
  order: 'asc' | 'desc'
  /** Only logs with ids strictly greater than this one. */
  since?: string
  /** Only logs at this level and above. */
  minLevel?: Level
  subtaskId?: string
}

export interface Replay {
  logs: StoredLog[]
  /**
   * False when history no longer holds every log after `since`, so the client has a gap. Every
   * engine answers by one rule:
   * - no `since`: true (nothing was asked to be continuous);
   * - otherwise true iff no log with an id greater than `since` was removed (trimmed by count, or
   *   past its TTL even if not physically removed yet). Removal always takes the oldest logs, so
   *   "the highest id ever removed" describes what a task lost;
   * - a task with no history (never written, every log expired, or lost in a restart) may have
   *   lost the logs written before `lostBefore`: the later of now - TTL and the store's start,
   *   unless the task is younger than that (its UUID v7 id tells its creation time), when it
   *   cannot have lost any. A replay then answers true iff `since` is not before it, and when the
   *   task logs again that boundary counts as removed. So resuming a task that has logged nothing
   *   yet is no gap, while resuming after a restart or after the whole history expired is one.
   */
  recovered: boolean
}

/**
 * Per-task log history: append-only, ids strictly increasing within a task,
 * each log kept for `ttlSeconds` after it was written and at most `maxPerTask` per task.
 */
export interface HistoryStore {
  /** Where history lives, for the start-up line. */
  readonly description: string
  /**
   * Stores the logs of one task atomically (one round trip for a remote store), with
   * consecutive ids in their order: `<ms>-<seq>`, `<ms>-<seq + 1>`, ..., and hands them to the
   * live feed of every instance following the task. Returns the first id (a RangeError for no
   * logs). Rejects with StoreUnavailableError when the store is down: then nothing was stored
   * (StoreTimeoutError: it may have been); with RateLimitedError, storing nothing, when the
   * task is over the engine's rate limit (BackendLimits.rateLimit), counted in logs.
   */
  append(taskId: string, logs: EncodedLog[], options?: AppendOptions): Promise<Appended>
  /** Reads logs for the history endpoint. */
  read(taskId: string, query: HistoryQuery): Promise<StoredLog[]>
  /** Logs after `since` (oldest first, at most `limit`), or the newest `limit` when `since` is undefined. */
  replay(taskId: string, since: string | undefined, limit: number): Promise<Replay>
  /** Resolves when the store answers; rejects otherwise. */
  ping(): Promise<void>
  /** Bytes of memory the history takes: Redis' `used_memory` (all of that Redis), or the memory engine's count. */
  usedMemory(): Promise<number>
}

/** What a feed delivers to this instance's hub. */
export interface FeedListener {
  /** New logs of a followed task, in id order. */
  logs(taskId: string, logs: StoredLog[]): void
  /** A status change of a followed task: the `status` frame's data, as JSON. */
  status(taskId: string, data: string): void
  /** The feed may have lost events of every task it followed (its connection dropped). */
  interrupted(): void
}

/**
 * How a task's new logs and status changes reach the hub of every instance that has subscribers
 * for it, in the order its history wrote them. The hub follows a task while it has subscribers
 * here and knows nothing else of where events come from.
 */
export interface LogFeed {
  /** Where events go: the hub registers itself. */
  listen(listener: FeedListener): void
  /**
   * Starts delivering a task's events here. Resolves once every log appended and every status
   * published from then on will be delivered; rejects with StoreUnavailableError otherwise.
   */
  follow(taskId: string): Promise<void>
  /**
   * Resolves once every event of a followed task (of `taskId`, or of every task) stored before
   * the call has been delivered here. History read from the store can be ahead of the feed: a
   * watcher goes live only after this.
   */
  sync(taskId?: string): Promise<void>
  /** Stops delivering a task's events here. */
  unfollow(taskId: string): void
  /** Sends a status change to every instance following the task. */
  publishStatus(taskId: string, data: string): Promise<void>
}

/**
 * Subscriber counts across instances, so that an ingest's `broadcasted` counts the subscribers of
 * every instance (Appended.subscribersElsewhere).
 */
export interface Presence {
  /**
   * Tells the other instances how many subscribers this instance has for a task: `atLevel[r]`
   * have minimum level rank r (all zero: none any more). The array is the hub's own, which it
   * keeps updating and announces again on each change: an engine may read it later, when it writes.
   */
  announce(taskId: string, atLevel: readonly number[]): void
}

/** Logs of one task not archived yet, taken under this instance's lease (ArchiveSource.take). */
export interface ArchiveBatch {
  /**
   * The logs, in id order after the cursor (expired ones not yet removed included), as UTF-8
   * lines `<id>\t<body>` joined by `\n`: a body is the stored JSON, which holds its level and has
   * no raw tab or newline. The Redis engine copies each log's bytes from the XRANGE reply into it
   * as they are, and the archive hands it to the database as one parameter: the database takes
   * each log apart, and the archiver builds no string per log. Empty when there are none.
   */
  rows: Buffer
  /** How many logs `rows` holds. */
  count: number
  /** The last log's id; undefined when there are none. */
  lastId?: string
  /** The first log's predecessor is not the cursor: logs left history before they were archived. */
  gap: boolean
}

/**
 * What the archiver (archive/archiver.ts) reads from an engine: which tasks have logs not
 * archived yet, and those logs. Each task has a cursor (the last archived id) and a lease, so
 * that instances sharing the engine archive each log once and take over from one that died.
 */
export interface ArchiveSource {
  /**
   * Tasks with logs not archived yet, the one waiting longest first; at most `limit`, and only
   * those whose oldest such log was written at or before `writtenBy` (ms since the epoch) when given.
   */
  pending(limit: number, writtenBy?: number): Promise<string[]>
  /** How many tasks have logs not archived yet, and when (ms since the epoch) the oldest of those logs was written. */
  backlog(): Promise<{ tasks: number; oldestMs?: number }>
  /**
   * Up to `count` logs after the task's cursor, or after `after` (the last id of a batch taken
   * but not committed yet), leasing the task; undefined while another instance holds it.
   */
  take(taskId: string, count: number, after?: string): Promise<ArchiveBatch | undefined>
  /** Moves the task's cursor to `lastId` (once its logs are stored), and lets go of the lease when `release`. */
  commit(taskId: string, lastId: string | undefined, release: boolean): Promise<void>
}

/** One engine's history, feed and presence, opened together and closed together. */
export interface LogBackend {
  readonly history: HistoryStore
  readonly feed: LogFeed
  readonly presence: Presence
  /** The engine's side of the archive; present when opened with `archive`. */
  readonly archiveSource?: ArchiveSource
  /** Withdraws this instance's presence and closes every connection. */
  close(): Promise<void>
}

/** What every engine is told: how long and how many logs a task keeps. */
export interface BackendLimits {
  ttlSeconds: number
  maxPerTask: number
  /** Per task, across every instance sharing the engine; unset or `perSecond` 0: none. */
  rateLimit?: RateLimit
}

export interface OpenBackendOptions extends BackendLimits {
  /** Redis: instances sharing it form one service. Unset: memory. */
  redisUrl?: string
  /** Every call to a remote engine answers within this many ms, or fails (default 2000). */
  timeoutMs?: number
  /** Memory: bytes all tasks' history may hold together (default 256 MiB). */
  memoryMaxBytes?: number
  /** Where a remote engine's outage and reconnect messages go (default console). */
  logger?: Pick<Console, 'warn' | 'info'>
  /** The id of this instance in a remote engine (presence, feed, archive leases); default: a new one. */
  instanceId?: string
  /** Keeps track of the logs to archive (ARCHIVE_DAYS > 0): the backend offers an `archiveSource`. */
  archive?: { leaseMs: number }
  /**
   * The most one request may append: a remote engine sends appends to one task that arrive in the
   * same event-loop turn as one append up to it (group-commit.ts). Unset: each goes alone.
   */
  groupCommit?: GroupBound
}

/**
 * Opens the engine a deployment names: Redis when `redisUrl` is set (instances sharing it form
 * one service), memory otherwise. The one place an engine is chosen.
 */
export function openBackend(opts: OpenBackendOptions): Promise<LogBackend> {
  const limits = { ttlSeconds: opts.ttlSeconds, maxPerTask: opts.maxPerTask, rateLimit: opts.rateLimit }
  const { archive, groupCommit } = opts
  if (!opts.redisUrl) return Promise.resolve(memoryBackend({ ...limits, maxBytes: opts.memoryMaxBytes, archive }))
  const { timeoutMs, logger, instanceId } = opts
  return connectRedisBackend({ ...limits, url: opts.redisUrl, timeoutMs, logger, instanceId, archive, groupCommit })
}
