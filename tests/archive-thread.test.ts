/**
 * The archiver's thread (ARCHIVE_DAYS > 0 with Redis): the archive is written while the thread
 * that serves requests is blocked, SIGTERM lets the thread finish its round and hand its task
 * back, a database that cannot be opened is retried, and a thread that dies is started again.
 * Real Redis and SQLite files.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { createClient } from 'redis'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ArchiverThread } from '../src/archive/archiver-thread'
import { connectRedisBackend } from '../src/logs/redis'
import { archiveCursorKey, archiveLeaseKey } from '../src/logs/redis/keys'
import { testLog } from './support/logs'
import { startRedis, type RedisServer } from './support/redis-server'
import { startServerProcess } from './support/server-process'
import { createTask, json, post, startServer } from './support/server'

const dir = mkdtempSync(join(tmpdir(), 'tasklog-archive-thread-'))
let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(50)
  }
}

/** The ids the archive holds for a task, oldest first, read without yielding to the event loop. */
function archivedIds(file: string, taskId: string): string[] {
  const db = new Database(file, { readonly: true })
  try {
    return db
      .query<{ ms: number; seq: number }, [string]>('SELECT ms, seq FROM logs WHERE task_id = ? ORDER BY ms, seq')
      .all(taskId)
      .map((r) => `${r.ms}-${r.seq}`)
  } finally {
    db.close()
  }
}

/** Posts `batches` batches of `size` logs to a subtask. */
async function ingest(url: string, subtaskId: string, batches: number, size: number): Promise<void> {
  for (let b = 0; b < batches; b++) {
    const logs = Array.from({ length: size }, (_, i) => ({ level: 'info', message: `log ${b}.${i}` }))
    const res = await post(`${url}/api/v1/subtasks/${subtaskId}/logs`, { logs })
    if (res.status !== 201) throw new Error(`ingest: ${res.status} ${await res.text()}`)
  }
}

test('the archive is written while the thread serving requests is blocked', async () => {
  const file = join(dir, `blocked-${crypto.randomUUID()}.sqlite`)
  // Logs wait a second before they are archived: none is by the time the ingest returns.
  const env = { ARCHIVE_DAYS: '1', ARCHIVE_INTERVAL_MS: '1000', DATABASE_URL: `sqlite://${file}` }
  const server = await startServer({ redisUrl: redis.url, env })
  try {
    await until('the archiver to run', async () => (await json(await fetch(`${server.url}/ready`))).archive.state === 'ok')
    const task = await createTask(server, { description: 'blocked', subtasks: [{ description: 's' }] })
    await ingest(server.url, task.subtasks[0]!.subtask_id, 1, 500)
    expect(archivedIds(file, task.task_id)).toEqual([])
    // This thread serves the app: an archiver on it could not write anything until it yields.
    Bun.sleepSync(3_000)
    expect(archivedIds(file, task.task_id)).toHaveLength(500)
  } finally {
    await server.stop()
  }
}, 30_000)

test('SIGTERM: the archiver thread finishes its round, stores what it took and hands its task back before the process exits', async () => {
  const file = join(dir, `sigterm-${crypto.randomUUID()}.sqlite`)
  // Batches of 10: the backlog takes seconds to drain, so that SIGTERM comes in the middle of it.
  const env = { REDIS_URL: redis.url, ARCHIVE_DAYS: '1', ARCHIVE_INTERVAL_MS: '10', ARCHIVE_BATCH: '10', DATABASE_URL: `sqlite://${file}` }
  const server = await startServerProcess({ ...env, ARCHIVE_INTERVAL_MS: '600000' })
  const task = await json(await post(`${server.url}/api/v1/tasks`, { description: 'sigterm', subtasks: [{ description: 's' }] }))
  await ingest(server.url, task.subtasks[0].subtask_id, 30, 1000)
  expect((await server.stop()).code).toBe(0)
  const draining = await startServerProcess(env)
  await until('archiving under way', () => {
    try {
      return archivedIds(file, task.task_id).length > 1000
    } catch {
      return false // the table is not there yet
    }
  })
  const { code, stdout } = await draining.stop()
  expect(code).toBe(0)
  expect(stdout).not.toContain('archiver thread')
  const archived = archivedIds(file, task.task_id)
  expect(archived.length).toBeLessThan(30_000) // stopped in the middle of the backlog
  const client = createClient({ url: redis.url })
  await client.connect()
  try {
    // Every batch taken was stored and committed: the cursor is at the last archived log, and no lease is left.
    expect(await client.get(archiveCursorKey(task.task_id))).toBe(archived.at(-1)!)
    expect(await client.exists(archiveLeaseKey(task.task_id))).toBe(0)
  } finally {
    await client.close()
  }
}, 60_000)

/** An archiver thread on a Redis of its own (it archives every task it finds), with a task of 250 logs waiting. */
async function threadWithBacklog(databaseUrl: string, entry?: string) {
  const redis = await startRedis()
  const backend = await connectRedisBackend({
    url: redis.url,
    ttlSeconds: 60,
    maxPerTask: 10_000,
    logger: { warn() {}, info() {} },
    archive: { leaseMs: 5000 },
  })
  const taskId = crypto.randomUUID()
  await backend.history.append(
    taskId,
    Array.from({ length: 250 }, (_, i) => testLog(taskId, 's', 'info', `log ${i}`)),
  )
  const warnings: string[] = []
  const thread = new ArchiverThread(
    backend.archiveSource!,
    {
      redisUrl: redis.url,
      databaseUrl,
      timeoutMs: 2000,
      ttlSeconds: 60,
      leaseMs: 5000,
      instanceId: crypto.randomUUID(),
      archiver: { archiveDays: 1, intervalMs: 10, batchSize: 100 },
    },
    { logger: { warn: (line) => warnings.push(line), info() {} }, ...(entry && { entry }) },
  )
  return {
    taskId,
    thread,
    warnings,
    caughtUp: () => until('the archive to catch up', async () => thread.state === 'ok' && (await thread.backlog()).tasks === 0),
    async stop() {
      await thread.stop()
      await backend.close()
      await redis.stop()
    },
  }
}

test('a database that cannot be opened: the thread shows failing and retries until it opens', async () => {
  // The database's folder is a file for now: it cannot be created.
  const folder = join(dir, `blocked-${crypto.randomUUID()}`)
  writeFileSync(folder, '')
  const file = join(folder, 'archive.sqlite')
  const { taskId, thread, warnings, caughtUp, stop } = await threadWithBacklog(`sqlite://${file}`)
  try {
    thread.start()
    await until('two failed attempts', () => thread.errors >= 2)
    expect(await thread.readiness()).toMatchObject({ state: 'failing', error: expect.stringContaining('cannot open'), pending_tasks: 1 })
    expect(warnings).toEqual([expect.stringContaining("cannot open the archive's stores")])
    rmSync(folder)
    await caughtUp()
    expect(thread.rowsWritten).toBe(250)
    expect(archivedIds(file, taskId)).toHaveLength(250)
    expect(warnings).toHaveLength(1) // retried on the same thread
  } finally {
    await stop()
  }
  expect(thread.state).toBe('stopped')
}, 30_000)

test('a thread that dies is started again, and /ready shows it failing meanwhile', async () => {
  const file = join(dir, `crash-${crypto.randomUUID()}.sqlite`)
  writeFileSync(`${file}.crash`, '') // the first thread dies (the fixture's own rule)
  const entry = new URL('./fixtures/crashing-archiver-thread.ts', import.meta.url).href
  const { taskId, thread, warnings, caughtUp, stop } = await threadWithBacklog(`sqlite://${file}`, entry)
  try {
    thread.start()
    await until('the thread to die', () => thread.errors === 1)
    expect(await thread.readiness()).toMatchObject({
      state: 'failing',
      error: 'archiver thread failed: the archiver thread crashed',
      pending_tasks: 1,
    })
    expect(warnings).toEqual([expect.stringContaining('starting the archiver thread again in 1000 ms')])
    await caughtUp()
    expect(thread.rowsWritten).toBe(250)
    expect(archivedIds(file, taskId)).toHaveLength(250)
  } finally {
    await stop()
  }
}, 30_000)
