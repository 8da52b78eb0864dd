/**
 * The Redis engine's side of the archive. The append script adds each task it writes to a
 * sorted set (scored by the oldest log not archived yet): one set, or on a cluster the set of the
 * task's slot (keys.ts), found by scanning each master; each task has a cursor, the last
 * archived id, and a lease naming the instance archiving it (SET NX PX in archive-take.lua), so
 * that instances sharing Redis archive a task one at a time and another takes over once the
 * lease of one that died expires. The cursor only moves after the database stored the logs, so
 * a crash re-archives at most the batches in flight, which the archive's idempotent writes absorb.
 */
import { StoreUnavailableError } from '../../store-errors'
import { withTimeout } from '../../timeout'
import type { ArchiveBatch, ArchiveSource } from '../backend'
import type { RedisConnection, SendOptions } from './connection'
import { ARCHIVE_PENDING_KEY, archiveCursorKey, archiveLeaseKey, logKey } from './keys'
import { SCRIPTS, type Script } from './scripts'

export interface RedisArchiveSourceOptions {
  client: RedisConnection
  instanceId: string
  ttlSeconds: number
  /** How long a task stays leased to an instance that stopped renewing it. */
  leaseMs: number
  timeoutMs: number
}

const STORE_NAME = 'Log history (Redis)'
/** The take script's strings arrive as bytes: its rows go to the database undecoded (backend.ts ArchiveBatch). */
const AS_BYTES: SendOptions = { bytes: true }

/** The members and scores of a ZRANGE WITHSCORES reply: [member, score, ...], or [[member, score], ...] in RESP3. */
const scored = (reply: unknown): [string, number][] => {
  const flat = (reply as unknown[]).flat()
  return Array.from({ length: flat.length / 2 }, (_, i) => [String(flat[2 * i]), Number(flat[2 * i + 1])])
}

export class RedisArchiveSource implements ArchiveSource {
  readonly #opts: RedisArchiveSourceOptions
  /** The cursor outlives the stream (whose expiry is TTL + a slack of at most 1 s). */
  readonly #cursorTtlMs: string

  constructor(opts: RedisArchiveSourceOptions) {
    this.#opts = opts
    this.#cursorTtlMs = String(2 * opts.ttlSeconds * 1000 + 60_000)
  }

  /**
   * The `limit` tasks waiting longest, oldest first. On a cluster each slot has its set (keys.ts):
   * each set still open gives an even share of `limit`, oldest first, until no set can hold a
   * task older than the `limit` oldest found (one round trip on a single server, and mostly two on a cluster).
   */
  async pending(limit: number): Promise<string[]> {
    /** Each task found once, with its score (a set read twice while it changes may show a task twice). */
    const found = new Map<string, number>()
    let oldest: [string, number][] = []
    let open = (await this.#sets()).map((key) => ({ key, from: 0, last: 0 }))
    while (open.length > 0) {
      const share = Math.ceil(limit / open.length)
      const replies = await Promise.all(
        open.map(({ key, from }) => this.#send(key, ['ZRANGE', key, String(from), String(from + share - 1), 'WITHSCORES'])),
      )
      open = open.filter((set, i) => {
        const taken = scored(replies[i])
        for (const [task, ms] of taken) found.set(task, Math.min(ms, found.get(task) ?? ms))
        set.from += share
        set.last = taken.at(-1)?.[1] ?? 0
        return taken.length === share
      })
      oldest = [...found].sort((a, b) => a[1] - b[1]).slice(0, limit)
      // What a set holds past its share is scored from its last one taken on: it may belong among the oldest.
      const newest = oldest.length < limit ? Infinity : oldest.at(-1)![1]
      open = open.filter((set) => set.last < newest)
    }
    return oldest.map(([task]) => task)
  }

  async backlog(): Promise<{ tasks: number; oldestMs?: number }> {
    const sets = await this.#sets()
    const [counts, firsts] = await Promise.all([
      Promise.all(sets.map((key) => this.#send(key, ['ZCARD', key]))),
      Promise.all(sets.map((key) => this.#send(key, ['ZRANGE', key, '0', '0', 'WITHSCORES']))),
    ])
    const scores = firsts.flatMap((reply) => scored(reply).map(([, ms]) => ms))
    return {
      tasks: counts.reduce<number>((sum, n) => sum + Number(n), 0),
      ...(scores.length > 0 && { oldestMs: Math.min(...scores) }),
    }
  }

  async take(taskId: string, count: number, after?: string): Promise<ArchiveBatch | undefined> {
    const { instanceId, leaseMs } = this.#opts
    const reply = await this.#eval(
      SCRIPTS.archiveTake,
      [
        '3',
        logKey(taskId),
        archiveCursorKey(taskId),
        archiveLeaseKey(taskId),
        instanceId,
        String(leaseMs),
        String(count),
        after ?? '',
      ],
      AS_BYTES,
    )
    if (reply === null) return undefined
    const [gap, n, lastId, rows] = reply as [number, number, Buffer, Buffer]
    const last = lastId.toString()
    return { rows, count: Number(n), ...(last !== '' && { lastId: last }), gap: Number(gap) === 1 }
  }

  async commit(taskId: string, lastId: string | undefined, release: boolean): Promise<void> {
    await this.#eval(SCRIPTS.archiveCommit, [
      '4',
      logKey(taskId),
      archiveCursorKey(taskId),
      archiveLeaseKey(taskId),
      this.#opts.client.slotCopy(ARCHIVE_PENDING_KEY, logKey(taskId)),
      this.#opts.instanceId,
      lastId ?? '',
      this.#cursorTtlMs,
      release ? '1' : '0',
      taskId,
    ])
  }

  /** The sets of tasks with logs to archive: the one set, or on a cluster those of the slots that have one. */
  #sets(): Promise<string[]> {
    return this.#bounded(this.#opts.client.slotCopies(ARCHIVE_PENDING_KEY))
  }

  #send(key: string, command: string[], options?: SendOptions): Promise<unknown> {
    return this.#bounded(this.#opts.client.send(key, command, options))
  }

  #bounded<T>(call: Promise<T>): Promise<T> {
    const { timeoutMs } = this.#opts
    return withTimeout(call, timeoutMs, `no answer within ${timeoutMs} ms`).catch((error: unknown) => {
      throw new StoreUnavailableError(STORE_NAME, error)
    })
  }

  /** EVALSHA on the task's stream (`args[1]`), or EVAL when Redis lost its script cache. */
  async #eval(s: Script, args: string[], options?: SendOptions): Promise<unknown> {
    const key = args[1]!
    try {
      return await this.#send(key, ['EVALSHA', s.sha, ...args], options)
    } catch (error) {
      if (!String((error as Error).cause ?? error).includes('NOSCRIPT')) throw error
      return this.#send(key, ['EVAL', s.source, ...args], options)
    }
  }
}
