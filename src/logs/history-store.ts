import type { Level } from '../schemas/common'
import type { LogMessage, NewLog } from '../schemas/log'
import type { EncodedLog } from './encode'

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
   * Subscribers on other instances sharing the store whose filter accepts at least one of the
   * logs, as those instances announced them (redis-subscribers.ts); 0 for a store of one instance.
   */
  subscribersElsewhere: number
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
   * False when history no longer holds every log after `since`
   * (trimmed by count or age, or the whole key expired), so the client has a gap.
   */
  recovered: boolean
}

/**
 * Per-task log history: append-only, ids strictly increasing within a task,
 * each log kept for `ttlSeconds` after it was written and at most `maxPerTask` per task.
 */
export interface HistoryStore {
  /** Where history lives, for the start-up line and /ready. */
  readonly description: string
  /**
   * Stores the logs of one task atomically (one round trip for a remote store), with
   * consecutive ids in their order: `<ms>-<seq>`, `<ms>-<seq + 1>`, .... Returns the first (a
   * RangeError for no logs). Rejects with StoreUnavailableError when the store is down:
   * then nothing was stored.
   */
  append(taskId: string, logs: EncodedLog[]): Promise<Appended>
  /** Reads logs for the history endpoint. */
  read(taskId: string, query: HistoryQuery): Promise<StoredLog[]>
  /** Logs after `since` (oldest first, at most `limit`), or the newest `limit` when `since` is undefined. */
  replay(taskId: string, since: string | undefined, limit: number): Promise<Replay>
  /** Resolves when the store answers; rejects otherwise. */
  ping(): Promise<void>
  close(): Promise<void>
}

/**
 * When a task was created, from its id: a UUID v7 (what the task store issues) begins with its
 * creation time in ms. Undefined for another kind of id. No log of a task is older.
 */
export function taskCreatedMs(taskId: string): number | undefined {
  if (taskId[14] !== '7') return undefined
  const ms = parseInt(taskId.slice(0, 8) + taskId.slice(9, 13), 16)
  return Number.isNaN(ms) ? undefined : ms
}

/** Parses a stored log back into its wire shape. */
export const toLogMessage = (log: StoredLog): LogMessage => ({ id: log.id, ...(JSON.parse(log.body) as NewLog) })
