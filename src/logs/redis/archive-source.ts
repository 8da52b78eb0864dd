/**
 * The Redis engine's side of the archive. The append script adds each task it writes to a
 * sorted set (scored by the oldest log not archived yet): one set, or on a cluster the set of the
 * task's slot (keys.ts archivePendingKey), which a script on each master reads for the slots it
 * serves (archive-pending.lua). Each task has a cursor, the last archived id, and a lease naming
 * the instance archiving it (archive-take.lua), so that instances sharing Redis
 * archive a task one at a time and another takes over once the lease of one that died expires.
 * The cursor only moves after the database stored the logs, so a crash re-archives at most the
 * batches in flight, which the archive's idempotent writes absorb.
 */
import { StoreUnavailableError } from '../../store-errors'
import { compareLogIds } from '../../../clients/ts/src/log-id'
import { withTimeout } from '../../timeout'
import type { ArchiveBatch, ArchiveSource } from '../backend'
import type { RedisConnection } from './connection'
import { ARCHIVE_PENDING_KEY, archiveCursorKey, archiveLeaseKey, archivePendingCopy, archivePendingKey, logKey } from './keys'
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

/**
 * A stream entry as XRANGE gives it, its strings as bytes (sendForBytes): its id and its fields,
 * `[name, value, ...]` (entry.lua), the body last.
 */
type Entry = [Buffer, Buffer[]]

const TAB = 0x09
const NEWLINE = 0x0a
/** The name of the field holding an entry's predecessor, 'p'. */
const P = 0x70

/**
 * The id of the entry before `e` (entry.lua `predecessor`, for a batch read outside Lua): its
 * field 'p', or, for an entry without one, `<ms>-<seq - 1>`; undefined when unknown.
 */
function predecessor([id, fields]: Entry): string | undefined {
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!
    if (name.length === 1 && name[0] === P) return fields[i + 1]!.toString('latin1')
  }
  const text = id.toString('latin1')
  const dash = text.indexOf('-') + 1
  const seq = Number(text.slice(dash))
  return seq > 0 ? text.slice(0, dash) + (seq - 1) : undefined
}

/** The entries as ArchiveBatch rows, `<id>\t<body>` lines: each one's bytes copied once. */
function lines(entries: Entry[]): Buffer {
  let size = entries.length - 1
  for (const [id, fields] of entries) size += id.length + 1 + fields[fields.length - 1]!.length
  const out = Buffer.allocUnsafe(size)
  let at = 0
  for (const [id, fields] of entries) {
    if (at > 0) out[at++] = NEWLINE
    out.set(id, at)
    at += id.length
    out[at++] = TAB
    const body = fields[fields.length - 1]!
    out.set(body, at)
    at += body.length
  }
  return out
}

/** Slots whose sets one call of archive-pending.lua reads: a call holds its master up for about that many reads. */
const SLOTS_PER_CALL = 1024

/** A set of tasks with logs to archive: its size, and its oldest tasks read, with their scores. */
interface PendingSet {
  key: string
  size: number
  head: [string, number][]
}

/** The members and scores of a ZRANGE WITHSCORES reply: [member, score, ...], or [[member, score], ...] in RESP3. */
const scored = (reply: unknown): [string, number][] => {
  const flat = (reply as unknown[]).flat()
  return Array.from({ length: flat.length / 2 }, (_, i) => [String(flat[2 * i]), Number(flat[2 * i + 1])])
}

export class RedisArchiveSource implements ArchiveSource {
  readonly #opts: RedisArchiveSourceOptions
  /** The cursor outlives the stream (whose expiry is TTL + a slack of at most 1 s). */
  readonly #cursorTtlMs: string
  /** How many sets the last look at a cluster's slots found (none yet: as many as there can be). */
  #setsSeen = Infinity

  constructor(opts: RedisArchiveSourceOptions) {
    this.#opts = opts
    this.#cursorTtlMs = String(2 * opts.ttlSeconds * 1000 + 60_000)
  }

  /**
   * The `limit` tasks waiting longest, oldest first, of those scored `writtenBy` or less. On a
   * cluster each slot has its set: a set gives more of its oldest while they may be older than
   * the `limit`-th oldest found (or, short of `limit`, scored `writtenBy` or less), an even share
   * of `limit` at a time (one round trip on a single Redis; on a cluster, mostly one look at
   * every slot's set).
   */
  async pending(limit: number, writtenBy = Infinity): Promise<string[]> {
    /** Each task once, with its score (a set read twice while it changes may show a task twice). */
    const found = new Map<string, number>()
    const add = (tasks: [string, number][]) => {
      for (const [task, ms] of tasks) found.set(task, Math.min(ms, found.get(task) ?? ms))
    }
    let open = (await this.#sets(limit)).map(({ key, size, head }) => {
      add(head)
      return { key, size, read: head.length, last: head.at(-1)?.[1] ?? 0 }
    })
    for (;;) {
      const due = [...found].filter(([, ms]) => ms <= writtenBy)
      const oldest = due.sort((a, b) => a[1] - b[1]).slice(0, limit)
      // What a set holds past what was read is scored from its last one read on.
      const more = oldest.length < limit ? (last: number) => last <= writtenBy : (last: number) => last < oldest.at(-1)![1]
      open = open.filter((set) => set.read < set.size && more(set.last))
      if (open.length === 0) return oldest.map(([task]) => task)
      const share = Math.ceil(limit / open.length)
      const replies = await Promise.all(
        open.map(({ key, read }) => this.#send(key, ['ZRANGE', key, String(read), String(read + share - 1), 'WITHSCORES'])),
      )
      open.forEach((set, i) => {
        const more = scored(replies[i])
        add(more)
        set.read += more.length
        set.last = more.at(-1)?.[1] ?? set.last
        if (more.length < share) set.size = set.read
      })
    }
  }

  async backlog(): Promise<{ tasks: number; oldestMs?: number }> {
    const sets = await this.#sets(1)
    const oldest = sets.flatMap(({ head }) => head.map(([, ms]) => ms))
    return {
      tasks: sets.reduce((sum, { size }) => sum + size, 0),
      ...(oldest.length > 0 && { oldestMs: Math.min(...oldest) }),
    }
  }

  async take(taskId: string, count: number, after?: string): Promise<ArchiveBatch | undefined> {
    const { instanceId, leaseMs } = this.#opts
    const from = await this.#eval(SCRIPTS.archiveTake, [
      '2',
      archiveCursorKey(taskId),
      archiveLeaseKey(taskId),
      instanceId,
      String(leaseMs),
      after ?? '',
    ])
    if (from === null) return undefined
    const cursor = String(from)
    const key = logKey(taskId)
    const range = ['XRANGE', key, cursor === '' ? '-' : `(${cursor}`, '+', 'COUNT', String(count)]
    const entries = (await this.#bounded(this.#opts.client.sendForBytes(key, range))) as Entry[]
    const first = entries[0]
    if (!first) return { rows: Buffer.alloc(0), count: 0, gap: false }
    // After the last archived log comes its successor, or a gap.
    const p = cursor === '' ? undefined : predecessor(first)
    return {
      rows: lines(entries),
      count: entries.length,
      lastId: entries.at(-1)![0].toString('latin1'),
      gap: p !== undefined && p !== '' && compareLogIds(cursor, p) < 0,
    }
  }

  async commit(taskId: string, lastId: string | undefined, release: boolean): Promise<void> {
    await this.#eval(SCRIPTS.archiveCommit, [
      '4',
      logKey(taskId),
      archiveCursorKey(taskId),
      archiveLeaseKey(taskId),
      archivePendingKey(taskId, this.#opts.client.isCluster),
      this.#opts.instanceId,
      lastId ?? '',
      this.#cursorTtlMs,
      release ? '1' : '0',
      taskId,
    ])
  }

  /**
   * The sets of tasks with logs to archive, each with its size and its oldest tasks: on a single
   * Redis the one set and its `limit` oldest; on a cluster those of the slots (#slotSets).
   */
  async #sets(limit: number): Promise<PendingSet[]> {
    if (this.#opts.client.isCluster) return this.#slotSets(Math.max(1, Math.ceil(limit / this.#setsSeen)))
    return [await this.#read(ARCHIVE_PENDING_KEY, limit)]
  }

  /**
   * The sets of every slot that are not empty, with the `share` oldest tasks of each: read by a
   * script on each master for the slots it serves, and where the cluster routes it for a slot
   * that moved since the connection learnt the slots (which teaches the connection where it went).
   */
  async #slotSets(share: number): Promise<PendingSet[]> {
    const moved: string[] = []
    const ofEach = await this.#bounded(
      this.#opts.client.eachMaster(async (send, slots) => {
        const sets: PendingSet[] = []
        for (let i = 0; i < slots.length; i += SLOTS_PER_CALL) {
          const keys = slots.slice(i, i + SLOTS_PER_CALL).map(archivePendingCopy)
          const reply = (await this.#evalWith(send, SCRIPTS.archivePending, ['0', String(share), ...keys])) as unknown[][]
          for (const [key, size, head] of reply) {
            if (size === undefined) moved.push(String(key))
            else sets.push({ key: String(key), size: Number(size), head: scored(head) })
          }
        }
        return sets
      }),
    )
    const elsewhere = await Promise.all(moved.map((key) => this.#read(key, share)))
    const sets = [...ofEach.flat(), ...elsewhere.filter(({ size }) => size > 0)]
    this.#setsSeen = Math.max(1, sets.length)
    return sets
  }

  /** One set's size and its `count` oldest tasks. */
  async #read(key: string, count: number): Promise<PendingSet> {
    const [size, head] = await Promise.all([
      this.#send(key, ['ZCARD', key]),
      this.#send(key, ['ZRANGE', key, '0', String(count - 1), 'WITHSCORES']),
    ])
    return { key, size: Number(size), head: scored(head) }
  }

  #send(key: string, command: string[]): Promise<unknown> {
    return this.#bounded(this.#opts.client.send(key, command))
  }

  #bounded<T>(call: Promise<T>): Promise<T> {
    const { timeoutMs } = this.#opts
    return withTimeout(call, timeoutMs, `no answer within ${timeoutMs} ms`).catch((error: unknown) => {
      throw new StoreUnavailableError(STORE_NAME, error)
    })
  }

  /** EVALSHA on the task's keys (`args[1]` first), or EVAL when Redis lost its script cache. */
  #eval(s: Script, args: string[]): Promise<unknown> {
    const key = args[1]!
    return this.#evalWith((command) => this.#send(key, command), s, args)
  }

  /** EVALSHA through `send`, or EVAL when that Redis lost its script cache. */
  async #evalWith(send: (command: string[]) => Promise<unknown>, s: Script, args: string[]): Promise<unknown> {
    try {
      return await send(['EVALSHA', s.sha, ...args])
    } catch (error) {
      if (!String((error as Error).cause ?? error).includes('NOSCRIPT')) throw error
      return send(['EVAL', s.source, ...args])
    }
  }
}
