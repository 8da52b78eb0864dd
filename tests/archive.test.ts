/**
 * The archive (ARCHIVE_DAYS > 0): logs outlive their TTL in the task database and read back
 * through the same API as one sequence with the live history; an archiver killed mid-work,
 * a database that hangs, and two instances archiving at once lose and duplicate nothing.
 * Real Redis (the core on one server and on a 3-master cluster), SQLite, and PostgreSQL when
 * TEST_DATABASE_URL is set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SQL } from 'bun'
import { createClient } from 'redis'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LEVELS, levelRank, type Level } from '../src/schemas/common'
import { compareLogIds, logIdAfter } from '../clients/ts/src/log-id'
import { Archiver } from '../src/archive/archiver'
import { LogArchive } from '../src/archive/log-archive'
import { loadConfig } from '../src/config'
import type { ArchiveBatch, ArchiveSource, LogBackend } from '../src/logs/backend'
import { memoryBackend } from '../src/logs/memory'
import { connectRedisBackend } from '../src/logs/redis'
import { createRedisConnection } from '../src/logs/redis/connection'
import { logKey } from '../src/logs/redis/keys'
import { testLog } from './support/logs'
import { redisDeployments, type RedisDeployment } from './support/redis-deployments'
import { startRedis, type RedisServer } from './support/redis-server'
import { startServerProcess } from './support/server-process'
import { createTask, json, post, SseStream, startServer, watch, WsClient } from './support/server'
import { startTcpProxy } from './support/tcp-proxy'

const pgUrl = process.env.TEST_DATABASE_URL
if (!pgUrl) console.warn('archive: TEST_DATABASE_URL is unset; the PostgreSQL cases are skipped')

const dir = mkdtempSync(join(tmpdir(), 'tasklog-archive-'))
let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

interface Sent {
  id: string
  level: Level
  subtask_id: string
  message: string
}

/** Posts `batches` batches of `size` logs, alternating subtasks, every level in turn; returns them with their ids. */
async function ingest(url: string, subtaskIds: string[], batches: number, size: number, tag = 'm'): Promise<Sent[]> {
  const sent: Sent[] = []
  for (let b = 0; b < batches; b++) {
    const subtask_id = subtaskIds[b % subtaskIds.length]!
    const logs = Array.from({ length: size }, (_, i) => ({ level: LEVELS[(b * size + i) % 4]!, message: `${tag} ${b}.${i}` }))
    const res = await post(`${url}/api/v1/subtasks/${subtask_id}/logs`, { logs })
    if (res.status !== 201) throw new Error(`ingest: ${res.status} ${await res.text()}`)
    const { first_id } = await json(res)
    logs.forEach((log, i) => sent.push({ id: logIdAfter(first_id, i), level: log.level, subtask_id, message: log.message }))
  }
  return sent
}

const history = async (url: string, taskId: string, query: string) => {
  const res = await fetch(`${url}/api/v1/tasks/${taskId}/logs?${query}`)
  expect(res.status).toBe(200)
  return ((await res.json()) as { logs: Sent[] }).logs.map(({ id, level, subtask_id, message }) => ({
    id,
    level,
    subtask_id,
    message,
  }))
}

async function metric(url: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.split(' ')[1])
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(50)
  }
}

/** Waits until no task has logs left to archive (the lag alone is 0 too while the oldest waiting log is a few ms old). */
const caughtUp = (url: string) =>
  until('the archive to catch up', async () => (await metric(url, 'tasklog_archive_pending_tasks')) === 0)

/** The archived ids of a task, read straight from the database. */
async function archivedIds(databaseUrl: string, taskId: string): Promise<string[]> {
  const sql = databaseUrl.startsWith('sqlite')
    ? new SQL({ adapter: 'sqlite', filename: databaseUrl.slice('sqlite://'.length) })
    : new SQL({ adapter: 'postgres', url: databaseUrl })
  try {
    const rows: { ms: unknown; seq: unknown }[] = await sql`SELECT ms, seq FROM logs WHERE task_id = ${taskId} ORDER BY ms, seq`
    return rows.map((r) => `${r.ms}-${r.seq}`)
  } finally {
    await sql.close()
  }
}

/** Every id of a task's stream in Redis, on the server (or master) that holds it. */
async function streamIds(redisUrl: string, taskId: string): Promise<string[]> {
  const client = createRedisConnection(redisUrl, 2000)
  await client.connect()
  try {
    const entries = (await client.send(logKey(taskId), ['XRANGE', logKey(taskId), '-', '+'])) as [string, string[]][]
    return entries.map(([id]) => String(id))
  } finally {
    await client.close()
  }
}

const databases = [
  { name: 'SQLite', url: () => `sqlite://${join(dir, `tasks-${crypto.randomUUID()}.sqlite`)}` },
  ...(pgUrl ? [{ name: 'PostgreSQL', url: () => pgUrl }] : []),
]

const ARCHIVE = { LOG_TTL_SECONDS: '2', ARCHIVE_DAYS: '1', ARCHIVE_INTERVAL_MS: '100' }

/** Logs past their TTL read back from the archive, through history, WebSocket and SSE, as one sequence with the live ones. */
async function readsBack(redisUrl: string | undefined, databaseUrl: string): Promise<void> {
  const server = await startServer({ redisUrl, env: { ...ARCHIVE, DATABASE_URL: databaseUrl } })
  try {
    const task = await createTask(server, { description: 'archive', subtasks: [{ description: 'a' }, { description: 'b' }] })
    const subtasks = task.subtasks.map((s) => s.subtask_id)
    // Quotes, backslashes, a slash, non-ASCII, an emoji, U+2028, control characters and a JSON
    // escape as text: the archive must hand back every message exactly as sent.
    const old = await ingest(server.url, subtasks, 6, 5, 'old "q" \\ / é 😀 \u2028 \t\n\u0001 \\ud800')
    await caughtUp(server.url)
    await Bun.sleep(3_200) // past the TTL (and the housekeeping slack): only the archive holds them
    const fresh = await ingest(server.url, subtasks, 4, 5, 'new')
    const all = [...old, ...fresh]
    const tid = task.task_id

    expect(await history(server.url, tid, 'order=asc&limit=1000')).toEqual(all)
    expect(await history(server.url, tid, 'limit=1000')).toEqual(all.toReversed())
    // Pages that cross the seam, both ways.
    expect(await history(server.url, tid, 'limit=15')).toEqual(all.toReversed().slice(0, 15))
    expect(await history(server.url, tid, `since=${old[20]!.id}&limit=7`)).toEqual(all.slice(21, 28))
    expect(await history(server.url, tid, `since=${old[3]!.id}&order=desc&limit=100`)).toEqual(all.slice(4).toReversed())
    for (const level of LEVELS) {
      const expected = all.filter((l) => levelRank(l.level) >= levelRank(level))
      expect(await history(server.url, tid, `level=${level}&order=asc&limit=1000`)).toEqual(expected)
      expect(await history(server.url, tid, `level=${level}&limit=4`)).toEqual(expected.toReversed().slice(0, 4))
    }
    const ofB = all.filter((l) => l.subtask_id === subtasks[1])
    expect(await history(server.url, tid, `subtask_id=${subtasks[1]}&order=asc&limit=1000`)).toEqual(ofB)
    expect(await history(server.url, tid, `subtask_id=${subtasks[1]}&level=error&since=${old[0]!.id}`)).toEqual(
      ofB.filter((l) => l.level === 'error' && compareLogIds(l.id, old[0]!.id) > 0),
    )

    // A client resuming from before the seam receives every later log exactly once, then live ones.
    const since = old[2]!.id
    const ws = await watch(server, tid, `?since=${since}`)
    const live = await ingest(server.url, subtasks, 1, 3, 'live')
    const expectedIds = [...all.slice(3), ...live].map((l) => l.id)
    expect((await ws.logs(expectedIds.length)).map((l) => l.id)).toEqual(expectedIds)
    ws.close()
    const sse = await SseStream.open(server, tid, `?since=${since}`)
    await sse.until(`id: ${live.at(-1)!.id}\n`)
    const sseIds = sse
      .events()
      .filter((e) => e.includes('event: log'))
      .map((e) => /^id: (.+)$/m.exec(e)![1])
    expect(sseIds).toEqual(expectedIds)
    sse.close()
    // A resume from before the seam is no gap once the archive holds every later log.
    await caughtUp(server.url)
    const resumed = await WsClient.connect(`${server.wsUrl}/api/v1/ws/tasks/${tid}/logs?since=${old[0]!.id}`)
    expect((await resumed.nextOfType('subscribed')).data.recovered).toBe(true)
    resumed.close()
    const ready = await json(await fetch(`${server.url}/ready`))
    expect(ready.archive.state).toBe('ok')
    expect(await metric(server.url, 'tasklog_archive_rows_written_total')).toBeGreaterThanOrEqual(old.length)
  } finally {
    await server.stop()
  }
}

// The core of the archive on each deployment of Redis: one server, and a cluster (whose tasks'
// pending sets are one per slot, across its masters).
describe.each(redisDeployments)('archive with %s', (_name, startDeployment) => {
  let deployment: RedisDeployment
  beforeAll(async () => {
    deployment = await startDeployment()
  })
  afterAll(async () => {
    await deployment?.stop()
  })

  describe.each(databases)('on $name', (db) => {
    test('logs past their TTL read back through history, WebSocket and SSE as one sequence', () =>
      readsBack(deployment.url, db.url()), 30_000)

    test('two instances archiving at once write each log once', async () => {
      const url = db.url()
      const env = { ...ARCHIVE, LOG_TTL_SECONDS: '60', DATABASE_URL: url }
      const [a, b] = [await startServer({ redisUrl: deployment.url, env }), await startServer({ redisUrl: deployment.url, env })]
      try {
        const tasks = await Promise.all(
          Array.from({ length: 8 }, () => createTask(a, { description: 'x', subtasks: [{ description: 's' }] })),
        )
        const sent = await Promise.all(tasks.map((t, i) => ingest((i % 2 ? a : b).url, [t.subtasks[0]!.subtask_id], 10, 100)))
        await caughtUp(a.url)
        for (const [i, task] of tasks.entries()) expect(await archivedIds(url, task.task_id)).toEqual(sent[i]!.map((l) => l.id))
        // No work done twice: together they wrote each log once.
        const written =
          (await metric(a.url, 'tasklog_archive_rows_written_total'))! +
          (await metric(b.url, 'tasklog_archive_rows_written_total'))!
        expect(written).toBeGreaterThanOrEqual(8 * 1000)
        expect(written).toBeLessThan(8 * 1000 + 2000) // at most the batches in flight again, should a lease lapse under load
      } finally {
        await Promise.all([a.stop(), b.stop()])
      }
    }, 60_000)

    test('an instance killed with SIGKILL while archiving: another archives every acknowledged log exactly once', async () => {
      const url = db.url()
      // History keeps every log of the test (no trim by count), whatever the archiver's pace here.
      const env = {
        ...ARCHIVE,
        LOG_TTL_SECONDS: '60',
        LOG_HISTORY_MAX: '1000000',
        DATABASE_URL: url,
        REDIS_URL: deployment.url,
        STORE_TIMEOUT_MS: '500',
      }
      const first = await startServerProcess(env)
      const task = await json(await post(`${first.url}/api/v1/tasks`, { description: 'kill', subtasks: [{ description: 's' }] }))
      const subtask = task.subtasks[0].subtask_id
      const sent: Sent[] = []
      const writers = Array.from({ length: 4 }, async (_, w) => {
        for (let b = 0; b < 50; b++) {
          try {
            sent.push(...(await ingest(first.url, [subtask], 1, 100, `w${w}`)))
          } catch {
            return // the instance is gone
          }
        }
      })
      await until('archiving under way', async () => ((await metric(first.url, 'tasklog_archive_rows_written_total')) ?? 0) > 0)
      await Bun.sleep(300)
      first.proc.proc.kill('SIGKILL')
      await Promise.all(writers)
      const second = await startServerProcess(env)
      try {
        await caughtUp(second.url)
        // Exactly what Redis stored (acknowledged, and any the killed instance stored without answering), once each.
        const ids = await archivedIds(url, task.task_id)
        expect(ids).toEqual(await streamIds(deployment.url, task.task_id))
        const archived = new Set(ids)
        expect(sent.filter((l) => !archived.has(l.id))).toEqual([])
      } finally {
        await second.stop()
      }
    }, 60_000)
  })
})

describe.each(databases)('archive on $name', (db) => {
  test('the memory engine: logs past their TTL read back through history, WebSocket and SSE as one sequence', () =>
    readsBack(undefined, db.url()), 30_000)
})

describe.if(Boolean(pgUrl))('archive on a PostgreSQL that hangs', () => {
  test('paused past the archiver interval and resumed: nothing lost, the lag rises and falls', async () => {
    const proxy = await startTcpProxy(Number(new URL(pgUrl!).port || 5432))
    const databaseUrl = Object.assign(new URL(pgUrl!), { port: String(proxy.port) }).toString()
    const server = await startServer({
      redisUrl: redis.url,
      env: { ...ARCHIVE, LOG_TTL_SECONDS: '60', DATABASE_URL: databaseUrl, STORE_TIMEOUT_MS: '500' },
    })
    try {
      const task = await createTask(server, { description: 'pause', subtasks: [{ description: 's' }] })
      const subtask = task.subtasks[0]!.subtask_id
      const before = await ingest(server.url, [subtask], 1, 10, 'before') // also caches the subtask for ingest
      await caughtUp(server.url)
      await proxy.pause()
      const during = await ingest(server.url, [subtask], 5, 10, 'during')
      await Bun.sleep(1_500)
      expect(await metric(server.url, 'tasklog_archive_lag_seconds')).toBeGreaterThanOrEqual(1)
      expect((await json(await fetch(`${server.url}/ready`))).archive.state).toBe('failing')
      expect(await metric(server.url, 'tasklog_archive_errors_total')).toBeGreaterThan(0)
      proxy.resume()
      await caughtUp(server.url)
      expect(await metric(server.url, 'tasklog_archive_lag_seconds')).toBe(0)
      expect(await archivedIds(pgUrl!, task.task_id)).toEqual([...before, ...during].map((l) => l.id))
    } finally {
      proxy.resume()
      await server.stop()
      await proxy.stop()
    }
  }, 60_000)
})

test('ARCHIVER=off: the instance reads the archive and leaves archiving to one that runs an archiver', async () => {
  const url = `sqlite://${join(dir, `split-${crypto.randomUUID()}.sqlite`)}`
  expect(() => loadConfig({ ARCHIVE_DAYS: '1', ARCHIVER: 'off' })).toThrow('ARCHIVER=off needs REDIS_URL')
  const reader = await startServer({ redisUrl: redis.url, env: { ...ARCHIVE, ARCHIVER: 'off', DATABASE_URL: url } })
  const archiver = await startServer({ redisUrl: redis.url, env: { ...ARCHIVE, DATABASE_URL: url } })
  try {
    const task = await createTask(reader, { description: 'split', subtasks: [{ description: 's' }] })
    const sent = await ingest(reader.url, [task.subtasks[0]!.subtask_id], 3, 10)
    await caughtUp(archiver.url)
    expect(await archivedIds(url, task.task_id)).toEqual(sent.map((l) => l.id))
    expect(await metric(archiver.url, 'tasklog_archive_rows_written_total')).toBe(30)
    expect(await metric(reader.url, 'tasklog_archive_rows_written_total')).toBeUndefined()
    expect((await json(await fetch(`${reader.url}/ready`))).archive).toBeUndefined()
    await Bun.sleep(3_200) // past the TTL: only the archive holds them
    expect(await history(reader.url, task.task_id, 'order=asc&limit=100')).toEqual(sent)
  } finally {
    await Promise.all([reader.stop(), archiver.stop()])
  }
}, 30_000)

test('ARCHIVE_DAYS=0 (the default): no logs table, no to-do list in Redis, no archive in /ready', async () => {
  const url = `sqlite://${join(dir, `off-${crypto.randomUUID()}.sqlite`)}`
  const server = await startServer({ redisUrl: redis.url, env: { DATABASE_URL: url } })
  try {
    const task = await createTask(server, { description: 'off', subtasks: [{ description: 's' }] })
    await ingest(server.url, [task.subtasks[0]!.subtask_id], 1, 10)
    expect((await json(await fetch(`${server.url}/ready`))).archive).toBeUndefined()
    expect(await metric(server.url, 'tasklog_archive_rows_written_total')).toBeUndefined()
    const client = createClient({ url: redis.url })
    await client.connect()
    expect(await client.sendCommand(['ZSCORE', 'logs:archive:pending', task.task_id])).toBeNull()
    await client.close()
    const sql = new SQL({ adapter: 'sqlite', filename: url.slice('sqlite://'.length) })
    expect(await sql`SELECT name FROM sqlite_master WHERE name = 'logs'`).toEqual([])
    await sql.close()
  } finally {
    await server.stop()
  }
})

test('with the archive on, a batch repeated with its Idempotency-Key is stored and archived once', async () => {
  const url = `sqlite://${join(dir, `idem-${crypto.randomUUID()}.sqlite`)}`
  const server = await startServer({ redisUrl: redis.url, env: { ...ARCHIVE, DATABASE_URL: url } })
  try {
    const task = await createTask(server, { description: 'idem', subtasks: [{ description: 's' }] })
    const send = () =>
      fetch(`${server.url}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/logs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'batch-1' },
        body: JSON.stringify({
          logs: [
            { level: 'info', message: 'a' },
            { level: 'error', message: 'b' },
          ],
        }),
      })
    const first = await json(await send())
    const again = await json(await send())
    expect(again.first_id).toBe(first.first_id)
    await caughtUp(server.url)
    expect(await archivedIds(url, task.task_id)).toEqual([first.first_id, logIdAfter(first.first_id, 1)])
  } finally {
    await server.stop()
  }
})

describe.each(['memory', 'Redis'] as const)("the %s engine's archive source", (engine) => {
  const open = (maxPerTask: number): Promise<LogBackend> => {
    const limits = { ttlSeconds: 60, maxPerTask }
    return engine === 'memory'
      ? Promise.resolve(memoryBackend({ ...limits, archive: {} }))
      : connectRedisBackend({ ...limits, url: redis.url, logger: { warn() {}, info() {} }, archive: { leaseMs: 5000 } })
  }
  /** Appends logs to a new task; returns them as the archive's rows. */
  const appender = (backend: LogBackend) => {
    const taskId = crypto.randomUUID()
    const subtaskId = crypto.randomUUID()
    const append = async (...messages: string[]) => {
      const logs = messages.map((m, i) => testLog(taskId, subtaskId, LEVELS[i % 4]!, m))
      const { firstId } = await backend.history.append(taskId, logs)
      return logs.map((log, i) => [logIdAfter(firstId, i), log.body])
    }
    return { taskId, append }
  }
  /** A batch's entries as [id, body], from its `<id>\t<body>` lines (ArchiveBatch). */
  const rowsOf = (batch: ArchiveBatch) => batch.rows.toString().split('\n').map((line) => line.split('\t'))
  const idOf = (row: string[]) => row[0]!

  test('takes rows after the cursor or after a batch not committed yet, and reports logs that left history unarchived as a gap', async () => {
    // At most 5 logs per task: an append of 8 trims logs the archive has not taken.
    const backend = await open(5)
    const source: ArchiveSource = backend.archiveSource!
    try {
      const { taskId, append } = appender(backend)
      const first = await append('a0', 'a "quoted" \\ line', 'a2')
      const one = (await source.take(taskId, 2))!
      expect({ ...one, rows: rowsOf(one) }).toEqual({ rows: first.slice(0, 2), count: 2, lastId: idOf(first[1]!), gap: false })
      // Read on after the batch, before its commit moved the cursor.
      const two = (await source.take(taskId, 2, one.lastId))!
      expect({ ...two, rows: rowsOf(two) }).toEqual({ rows: first.slice(2), count: 1, lastId: idOf(first[2]!), gap: false })
      await source.commit(taskId, two.lastId, true)
      expect(await source.take(taskId, 2)).toEqual({ rows: Buffer.alloc(0), count: 0, gap: false })

      const next = await append('b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7')
      const after = (await source.take(taskId, 10))!
      expect({ ...after, rows: rowsOf(after) }).toEqual({ rows: next.slice(3), count: 5, lastId: idOf(next[7]!), gap: true })
    } finally {
      await backend.close()
    }
  })

  test('a batch of many long logs comes back whole', async () => {
    const backend = await open(1000)
    try {
      const { taskId, append } = appender(backend)
      // About 300 KB, which reaches the client in several socket reads, multi-byte characters included.
      const sent = await append(...Array.from({ length: 300 }, (_, i) => `${i} ${'é"\\😀 '.repeat(100)}`))
      const batch = (await backend.archiveSource!.take(taskId, 1000))!
      expect(batch.rows.length).toBeGreaterThan(300_000)
      expect({ ...batch, rows: rowsOf(batch) }).toEqual({ rows: sent, count: 300, lastId: idOf(sent[299]!), gap: false })
    } finally {
      await backend.close()
    }
  })

  test('lists a task as pending by the time its oldest log not archived yet was written', async () => {
    const backend = await open(1000)
    const source = backend.archiveSource!
    try {
      const { taskId, append } = appender(backend)
      const [first] = await append('a0', 'a1')
      const writtenMs = Number(first![0]!.split('-')[0])
      const listed = async (writtenBy: number) => (await source.pending(1000, writtenBy)).includes(taskId)
      expect(await listed(writtenMs - 1)).toBe(false)
      expect(await listed(writtenMs)).toBe(true)
      expect((await source.pending(1000)).includes(taskId)).toBe(true)
      // Once archived up to a1, the task waits for its next log, scored by that log's time.
      await source.commit(taskId, (await source.take(taskId, 10))!.lastId, true)
      expect((await source.pending(1000)).includes(taskId)).toBe(false)
      const [next] = await append('b0')
      const nextMs = Number(next![0]!.split('-')[0])
      expect(await listed(nextMs - 1)).toBe(false)
      expect(await listed(nextMs)).toBe(true)
    } finally {
      await backend.close()
    }
  })
})

test('the archiver takes a task once its oldest waiting log is ARCHIVE_INTERVAL_MS old, all its logs in one batch', async () => {
  const backend = memoryBackend({ ttlSeconds: 60, maxPerTask: 1000, archive: {} })
  const archive = await LogArchive.open(`sqlite://${join(dir, `pace-${crypto.randomUUID()}.sqlite`)}`, 2000)
  let now = Date.now()
  const archiver = new Archiver(backend.archiveSource!, archive, { archiveDays: 1, intervalMs: 1000, batchSize: 2000, now: () => now })
  const inserts: number[] = []
  const insert = archive.insert.bind(archive)
  archive.insert = (taskId, rows) => {
    inserts.push(rows.toString().split('\n').length)
    return insert(taskId, rows)
  }
  try {
    const taskId = crypto.randomUUID()
    const subtaskId = crypto.randomUUID()
    const { firstId } = await backend.history.append(taskId, [testLog(taskId, subtaskId, 'info', 'a')])
    const writtenMs = Number(firstId.split('-')[0])
    for (const message of ['b', 'c']) await backend.history.append(taskId, [testLog(taskId, subtaskId, 'info', message)])
    now = writtenMs + 999
    await archiver.runOnce()
    expect(archiver.rowsWritten).toBe(0)
    now = writtenMs + 1000
    await archiver.runOnce()
    expect(archiver.rowsWritten).toBe(3)
    expect(inserts).toEqual([3])
    expect((await archive.read(taskId, { limit: 10, order: 'asc' })).map((l) => l.id)).toEqual(
      (await backend.history.read(taskId, { limit: 10, order: 'asc' })).map((l) => l.id),
    )
  } finally {
    await archiver.stop()
    await backend.close()
    await archive.close()
  }
})

describe.each(databases)('archive writes on $name', (db) => {
  test('a batch stored in part before stores the rest and leaves the stored logs as they are; each log keeps its level and subtask', async () => {
    const archive = await LogArchive.open(db.url(), 2000)
    try {
      const taskId = crypto.randomUUID()
      const subtaskId = crypto.randomUUID()
      // `<id>\t<body>` lines, the bodies as encode.ts writes them (a level or subtask_id key in the
      // message comes later, escaped), ids after the retention test's cutoff, which spans tasks.
      const rows = (tag: string, ...ids: string[]) =>
        Buffer.from(
          ids
            .map((id, i) => {
              const log = testLog(taskId, subtaskId, LEVELS[i % 4]!, `${tag} ${id} "level":"fatal" "subtask_id":"x" é😀`)
              return `${id}\t${log.body}`
            })
            .join('\n'),
        )
      await archive.insert(taskId, rows('first', '7000-0', '7000-1'))
      await archive.insert(taskId, rows('again', '7000-1', '8000-0', '8000-1'))
      const stored = await archive.read(taskId, { limit: 10, order: 'asc' })
      expect(stored.map((l) => [l.id, l.level, JSON.parse(l.body).message])).toEqual([
        ['7000-0', 'debug', 'first 7000-0 "level":"fatal" "subtask_id":"x" é😀'],
        ['7000-1', 'info', 'first 7000-1 "level":"fatal" "subtask_id":"x" é😀'],
        ['8000-0', 'info', 'again 8000-0 "level":"fatal" "subtask_id":"x" é😀'],
        ['8000-1', 'warning', 'again 8000-1 "level":"fatal" "subtask_id":"x" é😀'],
      ])
      expect((await archive.read(taskId, { limit: 10, order: 'asc', subtaskId })).length).toBe(4)
      expect((await archive.read(taskId, { limit: 10, order: 'asc', minLevel: 'warning' })).map((l) => l.id)).toEqual(['8000-1'])
    } finally {
      await archive.close()
    }
  })
})

describe.each(databases)('archive retention on $name', (db) => {
  test('logs older than the cutoff are deleted in bounded batches; newer ones stay', async () => {
    const archive = await LogArchive.open(db.url(), 2000)
    try {
      const taskId = crypto.randomUUID()
      // ArchiveBatch rows: `<id>\t<body>` lines, the body as encode.ts writes it.
      const rows = (...ids: string[]) =>
        Buffer.from(ids.map((id) => `${id}\t{"task_id":"${taskId}","subtask_id":"s1","level":"info","message":"${id}"}`).join('\n'))
      await archive.insert(taskId, rows('1000-0', '1000-1', '2000-0', '3000-0', '5000-0', '6000-0'))
      await archive.insert(taskId, rows('1000-0')) // already there: left as it is
      const deleted: number[] = []
      for (let n = -1; n !== 0;) deleted.push((n = await archive.deleteBefore(5000, 2)))
      expect(deleted).toEqual([2, 2, 0])
      const left = await archive.read(taskId, { limit: 10, order: 'asc' })
      expect(left.map((l) => l.id)).toEqual(['5000-0', '6000-0'])
      expect((await archive.read(taskId, { limit: 10, order: 'asc', subtaskId: 's1' })).length).toBe(2)
    } finally {
      await archive.close()
    }
  })
})
