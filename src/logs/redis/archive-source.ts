/**
 * The Redis engine's side of the archive. The append script adds each task it writes to one
 * sorted set (scored by the oldest log not archived yet); each task has a cursor, the last
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

export class RedisArchiveSource implements ArchiveSource {
  readonly #opts: RedisArchiveSourceOptions
  /** The cursor outlives the stream (whose expiry is TTL + a slack of at most 1 s). */
  readonly #cursorTtlMs: string

  constructor(opts: RedisArchiveSourceOptions) {
    this.#opts = opts
    this.#cursorTtlMs = String(2 * opts.ttlSeconds * 1000 + 60_000)
  }

  async pending(limit: number): Promise<string[]> {
    const reply = await this.#send(ARCHIVE_PENDING_KEY, ['ZRANGE', ARCHIVE_PENDING_KEY, '0', String(limit - 1)])
    return (reply as unknown[]).map(String)
  }

  async backlog(): Promise<{ tasks: number; oldestMs?: number }> {
    const [tasks, oldest] = await Promise.all([
      this.#send(ARCHIVE_PENDING_KEY, ['ZCARD', ARCHIVE_PENDING_KEY]),
      this.#send(ARCHIVE_PENDING_KEY, ['ZRANGE', ARCHIVE_PENDING_KEY, '0', '0', 'WITHSCORES']) as Promise<unknown[]>,
    ])
    // [member, score], or [[member, score]] when the connection speaks RESP3.
    const score = oldest.flat()[1]
    return { tasks: Number(tasks), ...(score !== undefined && { oldestMs: Number(score) }) }
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
      ARCHIVE_PENDING_KEY,
      this.#opts.instanceId,
      lastId ?? '',
      this.#cursorTtlMs,
      release ? '1' : '0',
      taskId,
    ])
  }

  #send(key: string, command: string[], options?: SendOptions): Promise<unknown> {
    const { client, timeoutMs } = this.#opts
    return withTimeout(client.send(key, command, options), timeoutMs, `no answer within ${timeoutMs} ms`).catch(
      (error: unknown) => {
        throw new StoreUnavailableError(STORE_NAME, error)
      },
    )
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
