/**
 * Group commit (src/logs/group-commit.ts) through the HTTP API, with two instances sharing a real
 * redis-server: concurrent single-log POSTs to one task are stored by fewer appends than
 * requests, each answered with its own id, every log stored and delivered once, in id order, on
 * both instances; under the rate limit each request gets what it would have got alone; a store
 * failure refuses the whole group; idempotency keys still replay and conflict.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { compareLogIds } from '../clients/ts/src/log-id'
import { startCuttableProxy } from './support/cuttable-proxy'
import { startRedis, type RedisServer } from './support/redis-server'
import { createTask, json, startInstances, startServer, watch, type TestServer } from './support/server'

const REDIS_CLI = process.env.REDIS_CLI_BIN ?? '/usr/bin/redis-cli'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

/** How many append scripts Redis has run (EVALSHA and EVAL, INFO commandstats). */
async function appendCalls(): Promise<number> {
  const info = await Bun.$`${REDIS_CLI} -p ${redis.port} INFO commandstats`.text()
  let calls = 0
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(m[1])
  return calls
}

function ingest(server: TestServer, subtaskId: string, message: string, key?: string): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (key !== undefined) headers['idempotency-key'] = key
  return fetch(`${server.url}/api/v1/subtasks/${subtaskId}/log`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ level: 'info', message }),
  })
}

/** A task's history, oldest first. */
async function history(server: TestServer, taskId: string): Promise<{ id: string; message: string }[]> {
  const res = await fetch(`${server.url}/api/v1/tasks/${taskId}/logs?limit=1000&order=asc`)
  expect(res.status).toBe(200)
  return (await json(res)).logs
}

describe('group commit, two instances sharing Redis', () => {
  let servers: TestServer[]
  beforeAll(async () => {
    servers = await startInstances(redis.url, 2)
  })
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()))
  })

  test('concurrent single-log POSTs: fewer appends than requests, each its own id, all stored and delivered once in order on both instances', async () => {
    const [a, b] = servers as [TestServer, TestServer]
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const here = await watch(a, task.task_id)
    const there = await watch(b, task.task_id)
    // Let b's presence announce its watcher (within ANNOUNCE_DELAY_MS), so that a counts it.
    await Bun.sleep(100)
    const n = 64
    const calls = await appendCalls()
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => ingest(a, sub, `line ${i}`)))
    expect(answers.map((r) => r.status)).toEqual(Array(n).fill(201))
    const bodies = await Promise.all(answers.map(json))
    expect(await appendCalls()).toBeLessThan(calls + n)
    // One watcher on each instance accepts every log.
    expect(bodies.map((body) => body.broadcasted)).toEqual(Array(n).fill(2))
    const ids = bodies.map((body) => body.id as string)
    expect(new Set(ids).size).toBe(n)
    const stored = await history(a, task.task_id)
    // Each answer names its own log.
    const byId = new Map(stored.map((log) => [log.id, log.message]))
    expect(ids.map((id) => byId.get(id))).toEqual(Array.from({ length: n }, (_, i) => `line ${i}`))
    expect(stored).toHaveLength(n)
    for (const watcher of [here, there]) {
      const delivered = await watcher.logs(n)
      expect(delivered.map((log) => log.id)).toEqual(stored.map((log) => log.id))
      expect(delivered.map((log) => log.id)).toEqual([...delivered.map((log) => log.id)].sort(compareLogIds))
      await Bun.sleep(50)
      expect(watcher.frames.filter((f) => f.type === 'log')).toHaveLength(0)
      watcher.close()
    }
  })

  test('requests arriving while the task\'s append is in flight wait for it, then go as one append', async () => {
    const [a] = servers as [TestServer]
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const calls = await appendCalls()
    // Redis holds every write until unpaused: the first append stays in flight.
    await Bun.$`${REDIS_CLI} -p ${redis.port} CLIENT PAUSE 60000 WRITE`.quiet()
    const first = ingest(a, sub, 'first')
    const later: Promise<Response>[] = []
    try {
      await Bun.sleep(100)
      // Each in an event-loop turn of its own: without an append in flight, each would go alone.
      for (let i = 0; i < 10; i++, await Bun.sleep(20)) later.push(ingest(a, sub, `later ${i}`))
      await Bun.sleep(100)
    } finally {
      await Bun.$`${REDIS_CLI} -p ${redis.port} CLIENT UNPAUSE`.quiet()
    }
    const answers = await Promise.all([first, ...later])
    expect(answers.map((r) => r.status)).toEqual(Array(11).fill(201))
    expect(await appendCalls()).toBe(calls + 2)
    const ids = (await Promise.all(answers.map(json))).map((body) => body.id as string)
    // The ten later logs took consecutive ids of one append, after the first's.
    const [ms, seq] = ids[1]!.split('-')
    expect(ids.slice(1)).toEqual(Array.from({ length: 10 }, (_, i) => `${ms}-${Number(seq) + i}`))
    expect(compareLogIds(ids[0]!, ids[1]!)).toBeLessThan(0)
    expect((await history(a, task.task_id)).map((log) => log.message)).toEqual(['first', ...Array.from({ length: 10 }, (_, i) => `later ${i}`)])
  })

  test('idempotency keys under concurrency: one copy per key, replays answer its id, another body conflicts', async () => {
    const [a, b] = servers as [TestServer, TestServer]
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const plain = Array.from({ length: 16 }, (_, i) => ingest(i % 2 ? a : b, sub, `plain ${i}`))
    const keyed = Array.from({ length: 8 }, (_, i) => ingest(i % 2 ? a : b, sub, 'keyed', 'the-key'))
    const answers = await Promise.all([...plain, ...keyed])
    expect(answers.map((r) => r.status)).toEqual(Array(24).fill(201))
    const keyedAnswers = answers.slice(16)
    expect(keyedAnswers.filter((r) => r.headers.get('idempotency-replayed') === 'true')).toHaveLength(7)
    const keyedIds = new Set(await Promise.all(keyedAnswers.map(async (r) => (await json(r)).id)))
    expect(keyedIds.size).toBe(1)
    const conflicts = await Promise.all([a, b].map((server) => ingest(server, sub, 'another body', 'the-key')))
    expect(conflicts.map((r) => r.status)).toEqual([422, 422])
    const messages = (await history(a, task.task_id)).map((log) => log.message)
    expect(messages.filter((m) => m === 'keyed')).toHaveLength(1)
    expect(messages.filter((m) => m.startsWith('plain ')).sort()).toEqual(Array.from({ length: 16 }, (_, i) => `plain ${i}`).sort())
    expect(messages).toHaveLength(17)
  })
})

describe('group commit with MAX_BATCH=4', () => {
  let servers: TestServer[]
  beforeAll(async () => {
    servers = await startInstances(redis.url, 2, { MAX_BATCH: '4' })
  })
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()))
  })

  test('a group holds at most MAX_BATCH logs, of one level: broadcasted counts each request\'s own subscribers', async () => {
    const [a, b] = servers as [TestServer, TestServer]
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const watcher = await watch(b, task.task_id, '?level=warning')
    await Bun.sleep(100) // b's presence announces its watcher
    const send = (levels: string[]) =>
      Promise.all(
        levels.map((level, i) =>
          fetch(`${a.url}/api/v1/subtasks/${sub}/log`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ level, message: `${level} ${i}` }),
          }).then(async (res) => ({ status: res.status, body: await json(res) })),
        ),
      )
    const calls = await appendCalls()
    const alike = await send(Array(16).fill('info'))
    expect(alike.map((r) => r.status)).toEqual(Array(16).fill(201))
    // 16 logs, at most 4 to a group.
    expect(await appendCalls()).toBeGreaterThanOrEqual(calls + 4)
    // Levels that a group of 4 would mix, were it not for the level.
    const levels = Array.from({ length: 16 }, (_, i) => (i % 4 < 2 ? 'info' : 'warning'))
    const mixed = await send(levels)
    expect(mixed.map((r) => r.status)).toEqual(Array(16).fill(201))
    expect(mixed.map((r) => r.body.broadcasted)).toEqual(levels.map((level) => (level === 'warning' ? 1 : 0)))
    const delivered = await watcher.logs(8)
    expect(delivered.map((log) => log.message).sort()).toEqual(
      levels.flatMap((level, i) => (level === 'warning' ? [`warning ${i}`] : [])).sort(),
    )
    watcher.close()
  })
})

describe('group commit over the rate limit', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ redisUrl: redis.url, env: { RATE_LIMIT_LOGS_PER_SECOND: '1', RATE_LIMIT_BURST: '5' } })
  })
  afterAll(async () => {
    await server.stop()
  })

  test('concurrent POSTs get what sequential sends would: the burst is stored, the rest 429 and stored nothing', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const started = performance.now()
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => ingest(server, sub, `line ${i}`)))
    const seconds = Math.floor((performance.now() - started) / 1000)
    const statuses = answers.map((r) => r.status)
    expect(statuses.every((s) => s === 201 || s === 429)).toBe(true)
    const accepted = await Promise.all(answers.filter((r) => r.status === 201).map(json))
    // The burst, and one more per second the requests took.
    expect(accepted.length).toBeGreaterThanOrEqual(5)
    expect(accepted.length).toBeLessThanOrEqual(5 + seconds)
    for (const refused of answers.filter((r) => r.status === 429)) {
      expect(refused.headers.get('retry-after')).toBe('1')
      expect((await json(refused)).error).toBe('rate_limited')
    }
    const stored = await history(server, task.task_id)
    expect(stored.map((log) => log.id).sort(compareLogIds)).toEqual(accepted.map((body) => body.id).sort(compareLogIds))
  })
})

describe('group commit when Redis fails', () => {
  test('requests gathered behind an append that times out are refused unsent, within its deadline: nothing of them is stored', async () => {
    const timeoutMs = 2000
    const server = await startServer({ redisUrl: redis.url, env: { STORE_TIMEOUT_MS: String(timeoutMs) } })
    try {
      const task = await createTask(server)
      const sub = task.subtasks[0]!.subtask_id
      await Bun.$`${REDIS_CLI} -p ${redis.port} CLIENT PAUSE 60000 WRITE`.quiet()
      const sent = performance.now()
      const first = ingest(server, sub, 'first')
      const later: Promise<{ res: Response; ms: number }>[] = []
      try {
        await Bun.sleep(100)
        for (let i = 0; i < 5; i++, await Bun.sleep(20)) later.push(ingest(server, sub, `later ${i}`).then((res) => ({ res, ms: performance.now() - sent })))
        expect((await first).status).toBe(503)
        const refused = await Promise.all(later)
        for (const { res, ms } of refused) {
          expect(res.status).toBe(503)
          expect((await json(res)).message).toContain('nothing was stored')
          // Answered when the first's deadline passed, not after a deadline of their own.
          expect(ms).toBeLessThan(timeoutMs * 1.75)
        }
      } finally {
        await Bun.$`${REDIS_CLI} -p ${redis.port} CLIENT UNPAUSE`.quiet()
      }
      let after = 0
      for (let i = 0; i < 50 && after !== 201; i++, await Bun.sleep(100)) after = (await ingest(server, sub, 'after')).status
      expect(after).toBe(201)
      const messages = (await history(server, task.task_id)).map((log) => log.message)
      expect(messages.filter((m) => m.startsWith('later'))).toEqual([])
      expect(messages).toContain('after')
    } finally {
      await server.stop()
    }
  })

  test('every request of a group gets 503 and nothing is stored', async () => {
    const proxy = startCuttableProxy(redis.port)
    const server = await startServer({ redisUrl: proxy.url.replace('http:', 'redis:') })
    try {
      const task = await createTask(server)
      const sub = task.subtasks[0]!.subtask_id
      expect((await ingest(server, sub, 'before')).status).toBe(201)
      proxy.cut()
      const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => ingest(server, sub, `during ${i}`)))
      expect(answers.map((r) => r.status)).toEqual(Array(16).fill(503))
      for (const res of answers) expect((await json(res)).message).toContain('nothing was stored')
      proxy.restore()
      let after = 0
      for (let i = 0; i < 50 && after !== 201; i++, await Bun.sleep(100)) after = (await ingest(server, sub, 'after')).status
      expect(after).toBe(201)
      expect((await history(server, task.task_id)).map((log) => log.message)).toEqual(['before', 'after'])
    } finally {
      await server.stop()
      proxy.stop()
    }
  })
})
