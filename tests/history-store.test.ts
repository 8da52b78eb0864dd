/**
 * One behavioural suite for every HistoryStore: MemoryHistory and RedisHistory (against a
 * real redis-server started by the harness), plus Redis-only tests (pub/sub format, outages,
 * one round trip per append, what Redis 7.0 does with max-deleted-entry-id).
 */
import { newLog } from './support/logs'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import { createClient } from 'redis'
import {
  IdempotencyConflictError,
  InvalidInputError,
  RateLimitedError,
  StoreUnavailableError,
  type RateLimit,
} from '../src/store-errors'
import type { HistoryStore, StoredLog } from '../src/logs/backend'
import { toLogMessage } from '../src/logs/frames'
import { encodeLog } from '../src/logs/encode'
import { compareLogIds, logIdAfter } from '../clients/ts/src/log-id'
import { MemoryFeed } from '../src/logs/memory/feed'
import { MemoryHistory } from '../src/logs/memory/history'
import { RedisArchiveSource } from '../src/logs/redis/archive-source'
import { createRedisConnection, redactRedisUrl } from '../src/logs/redis/connection'
import { decodePublished } from '../src/logs/redis/feed'
import { housekeepingMs, RedisHistory, type RedisHistoryOptions } from '../src/logs/redis/history'
import { idempotencyKey, logKey, newestIdKey } from '../src/logs/redis/keys'
import type { NewLog } from '../src/schemas/log'
import { asDeployment, startClusterDeployment, type RedisDeployment } from './support/redis-deployments'
import { startRedis, type RedisServer } from './support/redis-server'

let redis: RedisServer
let cluster: RedisDeployment
beforeAll(async () => {
  ;[redis, cluster] = await Promise.all([startRedis(), startClusterDeployment()])
})
afterAll(async () => {
  await Promise.all([redis?.stop(), cluster?.stop()])
})

const silent = { warn() {}, info() {} }

interface StoreOptions {
  ttlSeconds: number
  maxPerTask: number
  rateLimit?: RateLimit
}
type Closable = HistoryStore & { close(): Promise<void> }
type Factory = (opts: StoreOptions) => Promise<Closable>

/** Each store, and the Redis it keeps its logs in. */
const factories: [string, Factory, () => RedisDeployment | undefined][] = [
  ['MemoryHistory', async (opts) => new MemoryHistory({ ...opts, feed: new MemoryFeed() }), () => undefined],
  ['RedisHistory', (opts) => RedisHistory.connect({ url: redis.url, ...opts, logger: silent }), () => asDeployment(redis)],
  ['RedisHistory on a cluster', (opts) => RedisHistory.connect({ url: cluster.url, ...opts, logger: silent }), () => cluster],
]

/** Task ids as the task store issues them: UUID v7, which tell their creation time. */
const uuid = () => Bun.randomUUIDv7()

/**
 * Stores logs the way ingest does (serialized once by encodeLog) and returns them as stored, their
 * ids consecutive from the first, which is all an append returns (checked against reads below).
 */
async function put(s: HistoryStore, taskId: string, logs: NewLog[]): Promise<StoredLog[]> {
  const encoded = logs.map(encodeLog)
  const { firstId } = await s.append(taskId, encoded)
  return encoded.map((log, i) => ({ id: logIdAfter(firstId, i), level: log.level, body: log.body }))
}

const messages = (logs: StoredLog[]) => logs.map((l) => toLogMessage(l).message)
const ids = (logs: StoredLog[]) => logs.map((l) => l.id)

/** Opens stores through `open` and closes every one of them after each test. */
function closedAfterEach<A extends unknown[], S extends Closable>(open: (...args: A) => Promise<S>) {
  const opened: S[] = []
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()))
  })
  return async (...args: A): Promise<S> => {
    const s = await open(...args)
    opened.push(s)
    return s
  }
}

function expectStrictlyIncreasing(list: string[]) {
  for (let i = 1; i < list.length; i++) expect(compareLogIds(list[i - 1]!, list[i]!)).toBeLessThan(0)
}

describe.each(factories)('%s', (_name, make, deployment) => {
  const store = closedAfterEach((opts: StoreOptions = { ttlSeconds: 60, maxPerTask: 1000 }) => make(opts))
  /** A store holding one task's logs m0..m9 (info). */
  const tenLogs = async () => {
    const s = await store()
    const task = uuid()
    const stored = await put(
      s,
      task,
      Array.from({ length: 10 }, (_, i) => newLog(task, task, 'info', `m${i}`)),
    )
    return { s, task, stored }
  }

  test('ids are <ms>-<seq> and strictly increase, also within one millisecond', async () => {
    const s = await store()
    const task = uuid()
    const sub = uuid()
    const before = Date.now()
    const single: StoredLog[] = []
    for (let i = 0; i < 50; i++) single.push(...(await put(s, task, [newLog(task, sub, 'info', `s${i}`)])))
    const batch = await put(
      s,
      task,
      Array.from({ length: 500 }, (_, i) => newLog(task, sub, 'debug', `b${i}`)),
    )
    const all = [...single, ...batch].map((l) => l.id)
    for (const id of all) expect(id).toMatch(/^\d{1,15}-\d{1,15}$/)
    const ms = Number(all[0]!.split('-')[0])
    expect(ms).toBeGreaterThanOrEqual(before - 1000)
    expect(ms).toBeLessThanOrEqual(Date.now() + 1000)
    expectStrictlyIncreasing(all)
    // put() derives a batch's ids from its first: they are the ones the store holds.
    expect(ids(await s.read(task, { limit: 1000, order: 'asc' }))).toEqual(all)
    // ids are per task: another task starts its own sequence.
    const other = uuid()
    const [first] = await put(s, other, [newLog(other, sub, 'info', 'x')])
    expect(first!.id).toMatch(/^\d+-\d+$/)
  })

  test('a batch keeps its order, stores bodies serialized once, and is never interleaved', async () => {
    const s = await store()
    const task = uuid()
    const sub = uuid()
    const input = Array.from({ length: 20 }, (_, i) => newLog(task, sub, 'info', `m${i}`))
    const stored = await put(s, task, input)
    // As stored: the ids put() derives (consecutive from the first), levels, bodies byte for byte.
    const read = await s.read(task, { limit: 100, order: 'asc' })
    expect(read).toEqual(stored)
    expect(read.map((l) => l.body)).toEqual(input.map((l) => JSON.stringify(l)))
    expect(read.map((l) => l.level)).toEqual(input.map((l) => l.level))
    expectStrictlyIncreasing(ids(read))

    // Two concurrent batches: each one's entries are contiguous in the history.
    const t2 = uuid()
    const [a, b] = await Promise.all([
      put(
        s,
        t2,
        Array.from({ length: 60 }, (_, i) => newLog(t2, sub, 'info', `a${i}`)),
      ),
      put(
        s,
        t2,
        Array.from({ length: 60 }, (_, i) => newLog(t2, sub, 'info', `b${i}`)),
      ),
    ])
    const all = ids(await s.read(t2, { limit: 1000, order: 'asc' }))
    expect(all.length).toBe(120)
    const pos = (id: string) => all.indexOf(id)
    for (const batch of [a!, b!]) {
      const start = pos(batch[0]!.id)
      expect(ids(batch)).toEqual(all.slice(start, start + batch.length))
    }
    await expect(s.append(t2, [])).rejects.toBeInstanceOf(RangeError)
  })

  test('read: newest first by default, asc, since exclusive', async () => {
    const { s, task, stored } = await tenLogs()
    expect(messages(await s.read(task, { limit: 3, order: 'desc' }))).toEqual(['m9', 'm8', 'm7'])
    expect(messages(await s.read(task, { limit: 3, order: 'asc' }))).toEqual(['m0', 'm1', 'm2'])
    expect(messages(await s.read(task, { limit: 100, order: 'desc' })).length).toBe(10)
    const since = stored[3]!.id
    expect(messages(await s.read(task, { limit: 3, order: 'asc', since }))).toEqual(['m4', 'm5', 'm6'])
    expect(messages(await s.read(task, { limit: 100, order: 'desc', since }))).toEqual(['m9', 'm8', 'm7', 'm6', 'm5', 'm4'])
    expect(await s.read(task, { limit: 10, order: 'asc', since: stored[9]!.id })).toEqual([])
    expect(messages(await s.read(task, { limit: 2, order: 'asc', since: '0-0' }))).toEqual(['m0', 'm1'])
    expect(await s.read(task, { limit: 0, order: 'asc' })).toEqual([])
  })

  test('read: level and subtask filters return `limit` matches even far behind the newest page', async () => {
    const s = await store()
    const task = uuid()
    const subA = uuid()
    const subB = uuid()
    const errors = await put(
      s,
      task,
      Array.from({ length: 10 }, (_, i) => newLog(task, subA, i % 2 ? 'error' : 'warning', `e${i}`)),
    )
    await put(
      s,
      task,
      Array.from({ length: 300 }, (_, i) => newLog(task, subB, i % 2 ? 'info' : 'debug', `d${i}`)),
    )

    expect(messages(await s.read(task, { limit: 3, order: 'desc', minLevel: 'error' }))).toEqual(['e9', 'e7', 'e5'])
    expect(messages(await s.read(task, { limit: 5, order: 'desc', minLevel: 'warning' }))).toEqual(['e9', 'e8', 'e7', 'e6', 'e5'])
    expect(messages(await s.read(task, { limit: 4, order: 'asc', minLevel: 'warning' }))).toEqual(['e0', 'e1', 'e2', 'e3'])
    expect(messages(await s.read(task, { limit: 3, order: 'desc', subtaskId: subA }))).toEqual(['e9', 'e8', 'e7'])
    expect(messages(await s.read(task, { limit: 2, order: 'desc', minLevel: 'info', subtaskId: subB }))).toEqual(['d299', 'd297'])
    expect(await s.read(task, { limit: 10, order: 'desc', minLevel: 'error', subtaskId: subB })).toEqual([])
    expect(messages(await s.read(task, { limit: 100, order: 'asc', minLevel: 'error', since: errors[4]!.id }))).toEqual([
      'e5',
      'e7',
      'e9',
    ])
    expect(messages(await s.read(task, { limit: 2, order: 'desc', minLevel: 'error', since: errors[4]!.id }))).toEqual([
      'e9',
      'e7',
    ])
    expect((await s.read(task, { limit: 1000, order: 'asc', minLevel: 'debug' })).length).toBe(310)
    expect((await s.read(task, { limit: 1000, order: 'asc', minLevel: 'info' })).length).toBe(160)
  })

  test("read: the subtask filter goes by the log's own subtask, not a subtask_id in its metadata", async () => {
    const s = await store()
    const task = uuid()
    const subA = uuid()
    const subB = uuid()
    await put(s, task, [
      newLog(task, subA, 'info', 'mine'),
      newLog(task, subB, 'info', 'decoy', { metadata: { subtask_id: subA, note: `"subtask_id":"${subA}"` } }),
    ])
    expect(messages(await s.read(task, { limit: 10, order: 'asc', subtaskId: subA }))).toEqual(['mine'])
    expect(messages(await s.read(task, { limit: 10, order: 'asc', subtaskId: subB }))).toEqual(['decoy'])
  })

  test('replay: after since oldest first, or the newest `limit` oldest first', async () => {
    const { s, task, stored } = await tenLogs()
    let r = await s.replay(task, stored[2]!.id, 3)
    expect(messages(r.logs)).toEqual(['m3', 'm4', 'm5'])
    expect(r.recovered).toBe(true)
    r = await s.replay(task, undefined, 4)
    expect(messages(r.logs)).toEqual(['m6', 'm7', 'm8', 'm9'])
    expect(r.recovered).toBe(true)
    r = await s.replay(task, stored[9]!.id, 100)
    expect(r).toEqual({ logs: [], recovered: true })
    r = await s.replay(task, '0-0', 100)
    expect(r.logs.length).toBe(10)
    expect(r.recovered).toBe(true)
    expect(await s.replay(task, stored[0]!.id, 0)).toEqual({ logs: [], recovered: true })
  })

  test('count cap: maxPerTask=5, 12 appends keep exactly the newest 5; recovered reflects the trim', async () => {
    const s = await store({ ttlSeconds: 60, maxPerTask: 5 })
    const task = uuid()
    const sub = uuid()
    const stored: StoredLog[] = []
    for (let i = 0; i < 12; i++) stored.push(...(await put(s, task, [newLog(task, sub, 'info', `m${i}`)])))
    expect(messages(await s.read(task, { limit: 100, order: 'asc' }))).toEqual(['m7', 'm8', 'm9', 'm10', 'm11'])
    expect(messages(await s.read(task, { limit: 100, order: 'desc', since: '0-0' })).length).toBe(5)
    // m6 was the last trimmed: nothing after it is missing; after m5, m6 is.
    let r = await s.replay(task, stored[6]!.id, 100)
    expect(r.recovered).toBe(true)
    expect(messages(r.logs)).toEqual(['m7', 'm8', 'm9', 'm10', 'm11'])
    r = await s.replay(task, stored[5]!.id, 100)
    expect(r.recovered).toBe(false)
    expect(messages(r.logs)).toEqual(['m7', 'm8', 'm9', 'm10', 'm11'])
    expect((await s.replay(task, '0-0', 2)).recovered).toBe(false)
    expect(await s.replay(task, stored[8]!.id, 100)).toMatchObject({ recovered: true })

    // One batch larger than the cap: only its newest 5 stay, and the trim is recorded.
    const t2 = uuid()
    const batch = await put(
      s,
      t2,
      Array.from({ length: 12 }, (_, i) => newLog(t2, sub, 'info', `b${i}`)),
    )
    expect(batch.length).toBe(12)
    expect(messages(await s.read(t2, { limit: 100, order: 'desc' }))).toEqual(['b11', 'b10', 'b9', 'b8', 'b7'])
    expect((await s.replay(t2, batch[6]!.id, 10)).recovered).toBe(true)
    expect((await s.replay(t2, batch[5]!.id, 10)).recovered).toBe(false)
    // Trimming into a full stream with a batch mixing old and new entries.
    const more = await put(
      s,
      t2,
      Array.from({ length: 3 }, (_, i) => newLog(t2, sub, 'info', `c${i}`)),
    )
    expect(messages(await s.read(t2, { limit: 100, order: 'asc' }))).toEqual(['b10', 'b11', 'c0', 'c1', 'c2'])
    expect((await s.replay(t2, batch[9]!.id, 10)).recovered).toBe(true)
    expect((await s.replay(t2, batch[8]!.id, 10)).recovered).toBe(false)
    expect(more.length).toBe(3)
  })

  test('the body round-trips: unicode, quotes, newlines, nested metadata', async () => {
    const s = await store()
    const task = uuid()
    const sub = uuid()
    const input: NewLog[] = [
      newLog(task, sub, 'info', 'héllo wörld — 中文 — 🚀 emoji'),
      newLog(task, sub, 'warning', 'line one\nline two\r\n\ttabbed "quoted" \'single\' back\\slash'),
      newLog(task, sub, 'error', '', {
        metadata: { nested: { a: [1, 2, { b: null }], s: 'x\ny' }, n: 1.5, t: true, u: '\u0000\u2028' },
        worker_id: 'w-1',
        worker_name: 'Wörker "one"',
      }),
      newLog(task, sub, 'debug', '{"looks":"like json"}\n', { metadata: {} }),
    ]
    const stored = await put(s, task, input)
    const back = await s.read(task, { limit: 10, order: 'asc' })
    expect(back.map(toLogMessage)).toEqual(input.map((l, i) => ({ id: stored[i]!.id, ...l })))
    expect(back.map((l) => l.body)).toEqual(stored.map((l) => l.body))
    expect(back.map((l) => l.level)).toEqual(['info', 'warning', 'error', 'debug'])
    const replayed = await s.replay(task, undefined, 10)
    expect(replayed.logs).toEqual(back)
  })

  test('unknown task: empty reads; recovered with since only when no later log can have gone', async () => {
    const s = await store()
    const task = uuid()
    expect(await s.read(task, { limit: 10, order: 'desc' })).toEqual([])
    expect(await s.read(task, { limit: 10, order: 'asc', since: '1-0', minLevel: 'error' })).toEqual([])
    expect(await s.replay(task, undefined, 10)).toEqual({ logs: [], recovered: true })
    // A task created after the store started, less than a TTL ago, cannot have lost a log.
    expect(await s.replay(task, '1-0', 10)).toEqual({ logs: [], recovered: true })
    // One whose age is unknown (not a UUID v7) may have: logs after `1-0` may have come and expired.
    const ageless = crypto.randomUUID()
    expect(await s.replay(ageless, '1-0', 10)).toEqual({ logs: [], recovered: false })
    // A client resuming it after it had logged nothing: a log after `since` could neither have
    // expired nor been lost in a restart (Redis knows its start to the second).
    await Bun.sleep(Math.max(0, (deployment() ?? redis).startedAt + 1000 - Date.now()))
    const since = `${Date.now()}-0`
    await Bun.sleep(5)
    expect(await s.replay(ageless, since, 10)).toEqual({ logs: [], recovered: true })
    await s.ping()
    expect(s.description.length).toBeGreaterThan(0)
  })

  test("malformed since is the caller's error, not an outage", async () => {
    const s = await store()
    await expect(s.read(uuid(), { limit: 1, order: 'asc', since: 'abc' })).rejects.toBeInstanceOf(InvalidInputError)
    await expect(s.replay(uuid(), '12', 1)).rejects.toMatchObject({ problems: [{ path: 'since' }] })
  })

  test('TTL: logs older than ttlSeconds disappear, newer ones stay; recovered after expiry', async () => {
    const s = await store({ ttlSeconds: 2, maxPerTask: 1000 })
    const task = uuid()
    const sub = uuid()
    const old = await put(s, task, [newLog(task, sub, 'error', 'old1'), newLog(task, sub, 'error', 'old2')])
    await Bun.sleep(1200)
    const fresh = await put(s, task, [newLog(task, sub, 'info', 'new1')])
    await Bun.sleep(1300) // old: ~2.5 s, fresh: ~1.3 s
    expect(messages(await s.read(task, { limit: 10, order: 'desc' }))).toEqual(['new1'])
    expect(messages(await s.read(task, { limit: 10, order: 'asc', since: '0-0' }))).toEqual(['new1'])
    expect(await s.read(task, { limit: 10, order: 'desc', minLevel: 'error' })).toEqual([])
    expect(await s.replay(task, undefined, 10)).toEqual({ logs: fresh, recovered: true })
    // old2 expired after old1: a client that saw only old1 has a gap; one that saw old2 has none.
    expect(await s.replay(task, old[0]!.id, 10)).toEqual({ logs: fresh, recovered: false })
    expect(await s.replay(task, old[1]!.id, 10)).toEqual({ logs: fresh, recovered: true })

    await Bun.sleep(1000) // fresh: ~2.3 s, everything expired
    expect(await s.read(task, { limit: 10, order: 'desc' })).toEqual([])
    expect(await s.replay(task, undefined, 10)).toEqual({ logs: [], recovered: true })
    // The history is gone: nothing proves no log followed, so the rule says "gap".
    expect(await s.replay(task, fresh[0]!.id, 10)).toEqual({ logs: [], recovered: false })
    // Memory is reclaimed.
    if (s instanceof MemoryHistory) {
      s.sweep()
      expect(s.taskCount).toBe(0)
    } else {
      expect((await deployment()!.command(logKey(task), 'EXISTS', logKey(task))).trim()).toBe('0')
    }
  })
  test('an idempotency key: a repeat stores nothing and answers the first id; another body under it is a conflict', async () => {
    const s = await store()
    const task = uuid()
    const sub = uuid()
    const logs = [newLog(task, sub, 'info', 'once'), newLog(task, sub, 'warning', 'twice?')].map(encodeLog)
    const idempotency = { key: 'batch-1', fingerprint: 'f'.repeat(44) }
    const first = await s.append(task, logs, { idempotency })
    expect(first.replayed).toBeUndefined()
    const again = await s.append(task, logs, { idempotency })
    expect(again).toEqual({ firstId: first.firstId, subscribersElsewhere: 0, replayed: true })
    const conflict = s.append(task, [encodeLog(newLog(task, sub, 'info', 'other'))], {
      idempotency: { key: 'batch-1', fingerprint: 'g'.repeat(44) },
    })
    await expect(conflict).rejects.toBeInstanceOf(IdempotencyConflictError)
    await expect(conflict).rejects.toThrow('Idempotency-Key batch-1 was already used with a different request body')
    expect(messages(await s.read(task, { limit: 10, order: 'asc' }))).toEqual(['once', 'twice?'])
    // Keys are per task, and a keyless append always stores.
    const other = uuid()
    const elsewhere = await s.append(other, [encodeLog(newLog(other, sub, 'info', 'mine'))], { idempotency })
    expect(elsewhere.replayed).toBeUndefined()
    await s.append(task, logs)
    expect(messages(await s.read(task, { limit: 10, order: 'asc' }))).toEqual(['once', 'twice?', 'once', 'twice?'])
  })

  test('rate limit: counted in logs, over it nothing is stored and the error says when to come back; a replay is free', async () => {
    const s = await store({ ttlSeconds: 60, maxPerTask: 1000, rateLimit: { perSecond: 4, burst: 5 } })
    const task = uuid()
    const sub = uuid()
    const batch = (n: number, tag: string) =>
      Array.from({ length: n }, (_, i) => encodeLog(newLog(task, sub, 'info', `${tag}${i}`)))
    const idempotency = { key: 'k', fingerprint: 'f'.repeat(44) }
    const keyed = await s.append(task, batch(3, 'a'), { idempotency })
    await s.append(task, batch(2, 'b'))
    // The burst is spent: 5 more logs need it whole again, 1.25 s at 4 per second (a little less
    // by the time they are asked for).
    const over = await s.append(task, batch(5, 'c')).then(
      () => undefined,
      (error) => error,
    )
    expect(over).toBeInstanceOf(RateLimitedError)
    const limited = over as RateLimitedError
    expect(limited.limit).toEqual({ perSecond: 4, burst: 5 })
    expect(limited.remaining).toBeLessThan(5)
    expect(limited.retryAfterMs).toBeGreaterThan(0)
    expect(limited.retryAfterMs).toBeLessThanOrEqual(1250)
    // Nothing fits until the whole burst is back, here.
    expect(limited.resetMs).toBe(limited.retryAfterMs)
    expect(limited.message).toContain('over its log rate limit (4 lines/s, bursts of 5)')
    // A retry of the keyed append is answered from its record, not charged and not refused.
    expect(await s.append(task, batch(3, 'a'), { idempotency })).toMatchObject({ firstId: keyed.firstId, replayed: true })
    // Other tasks have buckets of their own.
    const other = uuid()
    await s.append(other, batch(5, 'o'))
    expect(messages(await s.read(task, { limit: 10, order: 'asc' }))).toEqual(['a0', 'a1', 'a2', 'b0', 'b1'])
    // The bucket refills at the rate: after the wait it asked for, the logs fit.
    await Bun.sleep(limited.retryAfterMs + 20)
    await s.append(task, batch(5, 'c'))
    expect(messages(await s.read(task, { limit: 20, order: 'asc' }))).toEqual([
      ...['a0', 'a1', 'a2', 'b0', 'b1'],
      ...['c0', 'c1', 'c2', 'c3', 'c4'],
    ])
  })
})

describe('MemoryHistory only', () => {
  /** A store whose clock the test sets. */
  const clocked = (ttlSeconds = 60, maxPerTask = 10) => {
    // Ahead of the tasks' UUID v7 creation times: a task is never younger than what it may have lost.
    const clock = { ms: Date.now() + 60_000 }
    const s = new MemoryHistory({ ttlSeconds, maxPerTask, feed: new MemoryFeed(), now: () => clock.ms })
    return { s, clock }
  }

  test('a batch takes one millisecond, the next append the next one; a clock going back never reuses an id', async () => {
    const { s, clock } = clocked()
    const task = uuid()
    const logs = (n: number) => Array.from({ length: n }, (_, i) => newLog(task, task, 'info', `m${i}`))
    const t = clock.ms
    expect(ids(await put(s, task, logs(3)))).toEqual([`${t}-0`, `${t}-1`, `${t}-2`])
    expect(ids(await put(s, task, logs(1)))).toEqual([`${t}-3`])
    clock.ms = t + 1
    expect(ids(await put(s, task, logs(2)))).toEqual([`${t + 1}-0`, `${t + 1}-1`])
    // NTP stepped the clock back: ids stay on the last millisecond and keep counting.
    clock.ms = t - 5
    expect(ids(await put(s, task, logs(2)))).toEqual([`${t + 1}-2`, `${t + 1}-3`])
    expect(ids(await s.read(task, { limit: 100, order: 'asc' }))).toEqual([
      ...[0, 1, 2, 3].map((seq) => `${t}-${seq}`),
      ...[0, 1, 2, 3].map((seq) => `${t + 1}-${seq}`),
    ])
    await s.close()
  })

  test('a log expires exactly TTL after its millisecond: one millisecond later it is a gap', async () => {
    const { s, clock } = clocked(1)
    const task = uuid()
    const t = clock.ms
    const [a] = await put(s, task, [newLog(task, task, 'info', 'a')])
    clock.ms = t + 1
    const [b] = await put(s, task, [newLog(task, task, 'info', 'b')])
    clock.ms = t + 1000
    expect(await s.replay(task, a!.id, 10)).toEqual({ logs: [b!], recovered: true })
    clock.ms = t + 1001
    // a is gone (and nothing after it was), b is kept.
    expect(await s.replay(task, a!.id, 10)).toEqual({ logs: [b!], recovered: true })
    expect(await s.replay(task, `${t - 1}-0`, 10)).toEqual({ logs: [b!], recovered: false })
    clock.ms = t + 1002
    expect(await s.replay(task, a!.id, 10)).toEqual({ logs: [], recovered: false })
    expect(await s.read(task, { limit: 10, order: 'asc' })).toEqual([])
    await s.close()
  })

  test('a restart loses every log: resuming after one written before it is a gap, however recent', async () => {
    const before = new MemoryHistory({ ttlSeconds: 60, maxPerTask: 10, feed: new MemoryFeed() })
    const task = uuid()
    const [log] = await put(before, task, [newLog(task, uuid(), 'info', 'before the restart')])
    await before.close()
    await Bun.sleep(2)
    const after = new MemoryHistory({ ttlSeconds: 60, maxPerTask: 10, feed: new MemoryFeed() })
    expect(await after.replay(task, log!.id, 10)).toEqual({ logs: [], recovered: false })
    // Still a gap once the task logs again.
    const [again] = await put(after, task, [newLog(task, uuid(), 'info', 'after the restart')])
    expect(await after.replay(task, log!.id, 10)).toEqual({ logs: [again!], recovered: false })
    expect(await after.replay(task, again!.id, 10)).toEqual({ logs: [], recovered: true })
    await after.close()
  })

  test('the sweeper drops expired tasks without any read; close() stops it', async () => {
    const s = new MemoryHistory({ ttlSeconds: 0.5, maxPerTask: 10, feed: new MemoryFeed() })
    const task = uuid()
    await put(s, task, [newLog(task, uuid(), 'info', 'x')])
    expect(s.taskCount).toBe(1)
    await Bun.sleep(1150) // the sweeper runs every max(1 s, ttl / 2)
    expect(s.taskCount).toBe(0)
    await s.close()
  })
})

describe('RedisHistory only', () => {
  const connect = closedAfterEach((opts: Partial<RedisHistoryOptions> = {}) =>
    RedisHistory.connect({ url: redis.url, ttlSeconds: 60, maxPerTask: 1000, logger: silent, ...opts }),
  )
  /** Runs `use` with a plain client (RESP2: stream entries as arrays), closed afterwards. */
  const rawClient = () => createClient({ url: redis.url, RESP: 2 })
  const withRaw = async <T>(use: (raw: ReturnType<typeof rawClient>) => Promise<T>): Promise<T> => {
    const raw = rawClient()
    await raw.connect()
    try {
      return await use(raw)
    } finally {
      await raw.close()
    }
  }
  const entriesOf = async (task: string) =>
    withRaw((raw) => raw.sendCommand(['XRANGE', logKey(task), '-', '+']) as Promise<[string, string[]][]>)

  test('description hides the password; connect() fails fast when nothing listens', async () => {
    const s = await connect()
    expect(s.description).toBe(redis.url)
    expect(redactRedisUrl('redis://:hunter2@10.0.0.1:6380/2')).toBe('redis://10.0.0.1:6380/2')
    expect(redactRedisUrl('redis://app:hunter2@cache.internal:6379')).toBe('redis://app@cache.internal:6379')
    // Nothing listens on port 1: connect() gives up after startupTimeoutMs, naming the URL without its password.
    const failed = RedisHistory.connect({
      url: 'redis://:hunter2@127.0.0.1:1',
      ttlSeconds: 1,
      maxPerTask: 1,
      startupTimeoutMs: 300,
      logger: silent,
    })
    await expect(failed).rejects.toBeInstanceOf(StoreUnavailableError)
    const err = (await failed.catch((e: unknown) => e)) as Error
    expect(err.message).toContain('redis://127.0.0.1:1')
    expect(err.message).not.toContain('hunter2')
  })

  test('stream layout: key logs:{task}, fields p/d (p = the previous entry, d the body with its level), its newest id beside it, TTL on both', async () => {
    const s = await connect({ ttlSeconds: 30 })
    const task = uuid()
    const sub = uuid()
    const [log] = await put(s, task, [newLog(task, sub, 'warning', 'hello')])
    // Usually in the same housekeeping window as the first: the expiry set then must cover it too.
    const appended = performance.now()
    const [next] = await put(s, task, [newLog(task, sub, 'info', 'again')])
    expect(await entriesOf(task)).toEqual([
      [log!.id, ['p', '', 'd', log!.body]],
      [next!.id, ['p', log!.id, 'd', next!.body]],
    ])
    await withRaw(async (raw) => {
      expect(String(await raw.sendCommand(['GET', newestIdKey(task)]))).toBe(next!.id)
      for (const key of [logKey(task), newestIdKey(task)]) {
        const pttl = Number(await raw.sendCommand(['PTTL', key]))
        // Both keys outlive the newest log by the TTL, and by at most one housekeeping window more.
        expect(pttl).toBeGreaterThanOrEqual(30_000 - Math.ceil(performance.now() - appended) - 1)
        expect(pttl).toBeLessThanOrEqual(30_000 + housekeepingMs(30_000))
      }
    })
  })

  test("an idempotency key's record and the rate limit's state live in the task's slot, for its TTL", async () => {
    const s = await connect({ ttlSeconds: 30, rateLimit: { perSecond: 100, burst: 1000 } })
    const task = uuid()
    const [log] = await put(s, task, [newLog(task, task, 'info', 'one')])
    const fingerprint = 'f'.repeat(44)
    const { firstId } = await s.append(task, [encodeLog(newLog(task, task, 'info', 'two'))], {
      idempotency: { key: 'a {b} c', fingerprint },
    })
    await withRaw(async (raw) => {
      const record = idempotencyKey(task, 'a {b} c')
      expect(record).toBe(`logs:{${task}}:idem:a {b} c`)
      expect(String(await raw.sendCommand(['GET', record]))).toBe(fingerprint + firstId)
      const pttl = Number(await raw.sendCommand(['PTTL', record]))
      expect(pttl).toBeGreaterThan(25_000)
      expect(pttl).toBeLessThanOrEqual(30_000 + housekeepingMs(30_000))
      // The bucket's state follows the newest id: when it is full again, 2 logs (20 ms) from now.
      const [newest, fullAt] = String(await raw.sendCommand(['GET', newestIdKey(task)])).split(' ')
      expect(newest).toBe(firstId)
      expect(Number(fullAt)).toBeGreaterThan(Number(log!.id.split('-')[0]))
      expect(Number(fullAt)).toBeLessThan(Date.now() + 1000)
    })
    // An instance without the limit takes the newest id alone, and drops the state.
    const unlimited = await connect({ ttlSeconds: 30 })
    const [third] = await put(unlimited, task, [newLog(task, task, 'info', 'three')])
    expect((await entriesOf(task)).at(-1)![1]).toEqual(['p', firstId, 'd', third!.body])
    await withRaw(async (raw) => expect(String(await raw.sendCommand(['GET', newestIdKey(task)]))).toBe(third!.id))
  })

  test('entries past their TTL are trimmed from the stream by the next append in a later housekeeping window', async () => {
    const s = await connect({ ttlSeconds: 1 })
    const task = uuid()
    await put(s, task, [newLog(task, task, 'info', 'old'), newLog(task, task, 'info', 'older')])
    await Bun.sleep(1000 + housekeepingMs(1000) + 50)
    const [fresh] = await put(s, task, [newLog(task, task, 'info', 'fresh')])
    expect((await entriesOf(task)).map(([id]) => id)).toEqual([fresh!.id])
  })

  test("an instance refreshes a task's expiry on its first append, then at most every half slack", async () => {
    const s = await connect({ ttlSeconds: 20 }) // slack 1 s: housekeeping at most every 500 ms
    const task = uuid()
    const raw = createClient({ url: redis.url })
    await raw.connect()
    try {
      const expiry = async () => Math.min(await raw.pTTL(logKey(task)), await raw.pTTL(newestIdKey(task)))
      await put(s, task, [newLog(task, task, 'info', 'first')])
      const first = await expiry()
      expect(first).toBeGreaterThan(20_500)
      await Bun.sleep(30)
      await put(s, task, [newLog(task, task, 'info', 'soon after')]) // no housekeeping: the expiry runs on
      expect(await expiry()).toBeLessThanOrEqual(first - 25)
      await Bun.sleep(500)
      await put(s, task, [newLog(task, task, 'info', 'half a slack later')])
      expect(await expiry()).toBeGreaterThan(first - 10)
    } finally {
      await raw.close()
    }
  })

  test('an append that Redis ran late (a stall) refreshes the expiry after all', async () => {
    const s = await connect({ ttlSeconds: 20 })
    const task = uuid()
    const raw = createClient({ url: redis.url })
    const busy = createClient({ url: redis.url })
    await Promise.all([raw.connect(), busy.connect()])
    try {
      await put(s, task, [newLog(task, task, 'info', 'first')])
      // Redis runs nothing else for 1.5 s: the next append (no housekeeping asked) waits behind it.
      const stall = busy.eval(
        "local t0 = redis.call('TIME') repeat local t = redis.call('TIME') until (t[1] - t0[1]) * 1e6 + t[2] - t0[2] > 1.5e6",
      )
      await Bun.sleep(20)
      await put(s, task, [newLog(task, task, 'info', 'stalled')])
      await stall
      let ttl = 0
      for (let i = 0; i < 50 && ttl <= 20_500; i++, await Bun.sleep(10)) ttl = await raw.pTTL(logKey(task))
      expect(ttl).toBeGreaterThan(20_500)
      expect(await raw.pTTL(newestIdKey(task))).toBeGreaterThan(20_500)
    } finally {
      await Promise.all([raw.close(), busy.close()])
    }
  })

  test('entries written by an older version, with an s (subtask) field, still filter by subtask', async () => {
    const s = await connect()
    const task = uuid()
    const sub = uuid()
    const old = encodeLog(newLog(task, sub, 'warning', 'old'))
    await withRaw((raw) => raw.sendCommand(['XADD', logKey(task), '*', 'l', 'warning', 's', sub, 'p', '', 'd', old.body]))
    await put(s, task, [newLog(task, sub, 'info', 'new'), newLog(task, uuid(), 'info', 'other')])
    expect(messages(await s.read(task, { limit: 10, order: 'asc', subtaskId: sub }))).toEqual(['old', 'new'])
  })

  // Written by an older version (no newest-id key), or one key deleted or evicted alone.
  test.each([
    ['its newest-id key (the predecessor is read from the stream)', newestIdKey],
    ['its stream (it comes back with one entry)', logKey],
  ])('an append after losing %s names the true predecessor and leaves both keys with an expiry', async (_, lost) => {
    const s = await connect()
    const task = uuid()
    const [first] = await put(s, task, [newLog(task, task, 'info', 'one')])
    await withRaw((raw) => raw.sendCommand(['DEL', lost(task)]))
    const [second] = await put(s, task, [newLog(task, task, 'info', 'two')])
    expect((await entriesOf(task)).at(-1)).toEqual([second!.id, ['p', first!.id, 'd', second!.body]])
    expect(String(await withRaw((raw) => raw.sendCommand(['GET', newestIdKey(task)])))).toBe(second!.id)
    for (const key of [logKey(task), newestIdKey(task)])
      expect(Number(await withRaw((raw) => raw.sendCommand(['PTTL', key])))).toBeGreaterThan(0)
  })

  test('two instances appending to one task: each entry names its true predecessor, so recovered stays exact', async () => {
    const a = await connect({ maxPerTask: 4 })
    const b = await connect({ maxPerTask: 4 })
    const task = uuid()
    const ids: string[] = []
    // a appends, b appends twice, then a again: a's remembered newest id is stale by then.
    for (const [s, text] of [
      [a, 'a1'],
      [b, 'b1'],
      [b, 'b2'],
      [a, 'a2'],
      [a, 'a3'],
      [b, 'b3'],
    ] as const)
      ids.push(...(await put(s, task, [newLog(task, task, 'info', text)])).map((log) => log.id))
    // The cap of 4 trimmed a1 and b1; every entry left names the one before it.
    const entries = await entriesOf(task)
    expect(entries.map(([id, f]) => [id, f[f.indexOf('p') + 1]])).toEqual(ids.slice(2).map((id, i) => [id, ids[i + 1]]))
    expect((await b.replay(task, ids[1], 10)).recovered).toBe(true)
    expect((await b.replay(task, ids[0], 10)).recovered).toBe(false)
  })

  test('the archive sees a gap exactly when a trim took a log after its cursor, also inside a batch', async () => {
    const s = await connect({ maxPerTask: 3, archive: true })
    const client = createRedisConnection(redis.url, 2000)
    await client.connect()
    try {
      const source = new RedisArchiveSource({ client, instanceId: 'archiver', ttlSeconds: 60, leaseMs: 10_000, timeoutMs: 2000 })
      // Batches of 4 and 5 into a cap of 3: their first logs are trimmed, and the first left of
      // each is a log of the batch after its first.
      for (const [size, gap] of [
        [4, false],
        [5, true],
      ] as const) {
        const task = uuid()
        const stored = await put(
          s,
          task,
          Array.from({ length: size }, (_, i) => newLog(task, task, 'info', `m${i}`)),
        )
        // The archive had taken the first log only.
        await source.commit(task, stored[0]!.id, true)
        const batch = await source.take(task, 10)
        expect(batch).toMatchObject({ count: 3, lastId: stored[size - 1]!.id, gap })
      }
    } finally {
      await client.close()
    }
  })

  test('Redis 7.0 does not track trims in max-deleted-entry-id; the first entry left names the last removed', async () => {
    const raw = createClient({ url: redis.url, RESP: 2 })
    await raw.connect()
    const maxDeleted = async (key: string) => {
      const info = (await raw.sendCommand(['XINFO', 'STREAM', key])) as unknown[]
      return info[info.indexOf('max-deleted-entry-id') + 1]
    }
    try {
      const key = `probe:{${uuid()}}`
      for (let i = 1; i <= 5; i++) await raw.sendCommand(['XADD', key, `${i}-0`, 'f', 'v'])
      await raw.sendCommand(['XADD', key, 'MAXLEN', '3', '6-0', 'f', 'v'])
      expect(Number(await raw.sendCommand(['XLEN', key]))).toBe(3)
      expect(await maxDeleted(key)).toBe('0-0')
      expect(Number(await raw.sendCommand(['XTRIM', key, 'MINID', '5']))).toBe(1)
      expect(await maxDeleted(key)).toBe('0-0')
      expect(Number(await raw.sendCommand(['XTRIM', key, 'MAXLEN', '1']))).toBe(1)
      expect(await maxDeleted(key)).toBe('0-0')
      // XDEL does update it, so each entry names its predecessor instead: the first entry left
      // after a trim names the newest one removed. An append's first entry records it ('p'); the
      // others of a batch take the ids right after it, so theirs is the id before their own.
      await raw.sendCommand(['XDEL', key, '6-0'])
      expect(await maxDeleted(key)).toBe('6-0')

      const s = await connect({ maxPerTask: 2 })
      const task = uuid()
      const stored = await put(
        s,
        task,
        Array.from({ length: 4 }, (_, i) => newLog(task, task, 'info', `m${i}`)),
      )
      const entries = (await raw.sendCommand(['XRANGE', logKey(task), '-', '+'])) as [string, string[]][]
      expect(entries).toEqual([
        [stored[2]!.id, ['d', stored[2]!.body]],
        [stored[3]!.id, ['d', stored[3]!.body]],
      ])
      expect((await s.replay(task, stored[1]!.id, 10)).recovered).toBe(true)
      expect((await s.replay(task, stored[0]!.id, 10)).recovered).toBe(false)
    } finally {
      await raw.close()
    }
  })

  test('PUBLISH on logs:{task}: one message per append, "<first id>\\n<body>\\n<body>...", in order', async () => {
    const s = await connect()
    const task = uuid()
    const sub = createClient({ url: redis.url })
    await sub.connect()
    const received: string[] = []
    await sub.subscribe(`logs:{${task}}`, (message) => received.push(message))
    try {
      // Newlines in messages and metadata travel escaped inside the JSON bodies; a level in the
      // metadata comes after the log's own.
      const batch = await put(s, task, [
        newLog(task, task, 'info', 'one\ntwo', { metadata: { level: 'error' } }),
        newLog(task, task, 'error', 'three', { metadata: { k: 'v\n' } }),
      ])
      const single = await put(s, task, [newLog(task, task, 'warning', 'four')])
      const deadline = Date.now() + 2000
      while (received.length < 2 && Date.now() < deadline) await Bun.sleep(10)
      const wire = (logs: StoredLog[]) => [logs[0]!.id, ...logs.map((l) => l.body)].join('\n')
      expect(received).toEqual([wire(batch), wire(single)])
      expect(received.map(decodePublished)).toEqual([batch, single])
      expect(messages(await s.read(task, { limit: 10, order: 'asc', minLevel: 'error' }))).toEqual(['three'])
      expect(decodePublished('status\n{"status":"completed"}')).toEqual({ status: '{"status":"completed"}' })
      expect(() => decodePublished('not a log')).toThrow(TypeError)
    } finally {
      await sub.close()
    }
  })

  test('a 100-log batch is one EVALSHA round trip and one PUBLISH', async () => {
    const s = await connect()
    const task = uuid()
    // A task's first append also creates its stream (one more XADD): count a later one.
    await put(s, task, [newLog(task, task, 'info', 'first')])
    // MONITOR on a raw socket: every command a client sends, plus the ones scripts run ("lua").
    let text = ''
    let ok: () => void
    const ready = new Promise<void>((resolve) => (ok = resolve))
    const monitor = await Bun.connect({
      hostname: '127.0.0.1',
      port: redis.port,
      socket: {
        open(socket) {
          socket.write('MONITOR\r\n')
        },
        data(_socket, chunk) {
          text += chunk.toString()
          if (text.startsWith('+OK\r\n')) ok()
        },
      },
    })
    await ready
    const stats = createClient({ url: redis.url, RESP: 2 })
    await stats.connect()
    await stats.sendCommand(['CONFIG', 'RESETSTAT'])
    await put(
      s,
      task,
      Array.from({ length: 100 }, (_, i) => newLog(task, task, 'info', `m${i}`)),
    )
    const info = String(await stats.sendCommand(['INFO', 'commandstats']))
    await Bun.sleep(100)
    monitor.end()
    await stats.close()

    const lines = text.split('\r\n').filter((l) => l.startsWith('+') && l !== '+OK')
    const fromClients = lines.filter((l) => !/ \[\d+ lua\] /.test(l))
    const fromScript = lines.filter((l) => / \[\d+ lua\] /.test(l))
    const names = (ls: string[]) => ls.map((l) => /\] "([^"]+)"/.exec(l)?.[1]?.toLowerCase())
    const appendCalls = names(fromClients).filter((n) => n !== 'ping' && n !== 'config' && n !== 'info')
    expect(appendCalls).toEqual(['evalsha'])
    expect(names(fromScript).filter((n) => n === 'xadd').length).toBe(100)
    expect(names(fromScript).filter((n) => n === 'publish').length).toBe(1)
    expect(info).toMatch(/cmdstat_evalsha:calls=1,/)
    expect(info).not.toMatch(/cmdstat_eval:/)
  })

  test('outage: calls fail fast with StoreUnavailableError, then work again after a restart', async () => {
    const s = await connect()
    const task = uuid()
    const [before] = await put(s, task, [newLog(task, task, 'info', 'before')])

    await redis.kill()
    const started = Date.now()
    await expect(put(s, task, [newLog(task, task, 'info', 'during')])).rejects.toBeInstanceOf(StoreUnavailableError)
    await expect(s.read(task, { limit: 10, order: 'desc' })).rejects.toBeInstanceOf(StoreUnavailableError)
    await expect(s.replay(task, undefined, 10)).rejects.toBeInstanceOf(StoreUnavailableError)
    await expect(s.ping()).rejects.toBeInstanceOf(StoreUnavailableError)
    expect(Date.now() - started).toBeLessThan(3000)

    // A fresh server: data and script cache are gone (NOSCRIPT falls back to EVAL).
    await redis.restart()
    const deadline = Date.now() + 5000
    for (;;) {
      try {
        await s.ping()
        break
      } catch (err) {
        if (Date.now() > deadline) throw err
        await Bun.sleep(50)
      }
    }
    // The restart lost the task's logs: resuming after one is a gap, however recent it is.
    expect(await s.replay(task, before!.id, 10)).toEqual({ logs: [], recovered: false })
    const [after] = await put(s, task, [newLog(task, task, 'info', 'after')])
    expect(messages(await s.read(task, { limit: 10, order: 'desc' }))).toEqual(['after'])
    // Still a gap once the task logs again: the new stream's first entry names the restart.
    expect(await s.replay(task, before!.id, 10)).toEqual({ logs: [after!], recovered: false })
    expect(await s.replay(task, after!.id, 10)).toEqual({ logs: [], recovered: true })
  })

  test('this process standing still for seconds while a call is pending is not Redis hanging: the call succeeds, the connection stays', async () => {
    const warnings: string[] = []
    const s = await connect({ timeoutMs: 300, logger: { ...silent, warn: (m: string) => warnings.push(m) } })
    const task = uuid()
    const appending = put(s, task, [newLog(task, task, 'info', 'during the stall')])
    // As a broadcast to very many sockets on a busy machine does; Redis answers meanwhile.
    const until = performance.now() + 4000
    while (performance.now() < until) {}
    await appending
    expect(messages(await s.read(task, { limit: 10, order: 'asc' }))).toEqual(['during the stall'])
    expect(warnings).toEqual([])
  })

  test('a hung server (SIGSTOP): every pending call rejects after timeoutMs, with one warning; recovers on SIGCONT', async () => {
    const warnings: string[] = []
    const s = await connect({ timeoutMs: 1000, logger: { ...silent, warn: (m: string) => warnings.push(m) } })
    const task = uuid()
    await put(s, task, [newLog(task, task, 'info', 'before')])
    await redis.pause()
    try {
      const started = Date.now()
      const results = await Promise.allSettled([
        put(s, task, [newLog(task, task, 'info', 'during')]),
        s.read(task, { limit: 10, order: 'asc' }),
        s.replay(task, undefined, 10),
      ])
      for (const r of results) expect(r.status === 'rejected' && r.reason instanceof StoreUnavailableError).toBe(true)
      expect(Date.now() - started).toBeLessThan(2000)
      expect(warnings).toEqual([`[history] ${redis.url} answered nothing for 1000 ms; reconnecting`])
    } finally {
      redis.resume()
    }
    const deadline = Date.now() + 8000
    for (;;) {
      try {
        await s.ping()
        break
      } catch (err) {
        if (Date.now() > deadline) throw err
        await Bun.sleep(50)
      }
    }
    await put(s, task, [newLog(task, task, 'info', 'after')])
    // The append that timed out had been written: Redis applied it once the server resumed.
    expect(messages(await s.read(task, { limit: 10, order: 'asc' }))).toEqual(['before', 'during', 'after'])
  })
})
