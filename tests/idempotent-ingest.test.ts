/**
 * Exactly-once ingest and the per-task rate limit, through the HTTP API with real servers: an
 * `Idempotency-Key` repeated on retries stores a request once (on both engines, from concurrent
 * requests, from two instances sharing Redis, and across a Redis that hangs past the deadline
 * while the append is in flight), while a retry without a key may store a second copy; a task
 * over its rate limit gets `429` with when to come back and stores nothing, also when two
 * instances share the limit. The SDK's WorkerLogger, which keeps one key per batch across its
 * retries, stores each line once through such an outage.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { WorkerLogger } from '../clients/ts/src'
import { startRedis, type RedisServer } from './support/redis-server'
import { WsClient, createTask, json, startInstances, startServer, watch, type TestServer } from './support/server'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

const log = (message: string, level = 'info') => ({ level, message })

/** POSTs a body to one of the ingest routes (`log` or `logs`), with an Idempotency-Key when given. */
function ingest(server: TestServer, subtaskId: string, route: 'log' | 'logs', body: unknown, key?: string) {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (key !== undefined) headers['idempotency-key'] = key
  return fetch(`${server.url}/api/v1/subtasks/${subtaskId}/${route}`, { method: 'POST', headers, body: JSON.stringify(body) })
}

/** The messages a task's history holds, oldest first. */
async function history(server: TestServer, taskId: string): Promise<string[]> {
  const res = await fetch(`${server.url}/api/v1/tasks/${taskId}/logs?limit=1000&order=asc`)
  expect(res.status).toBe(200)
  return (await json(res)).logs.map((l: { message: string }) => l.message)
}

/**
 * The messages a watcher receives up to and including `marker`. When the server closes it so that
 * it resumes (1013: live delivery was interrupted), it reconnects with `since` as clients do.
 */
async function watchedUntil(server: TestServer, taskId: string, watcher: WsClient, marker: string): Promise<string[]> {
  const seen: string[] = []
  let lastId: string | undefined
  for (;;) {
    let frame
    try {
      frame = await watcher.nextOfType('log', 10_000)
    } catch (error) {
      if (watcher.socket.readyState !== WebSocket.CLOSED || lastId === undefined) throw error
      watcher = await watch(server, taskId, `?since=${lastId}`)
      continue
    }
    seen.push(frame.data.message)
    lastId = frame.data.id
    if (frame.data.message === marker) {
      watcher.close()
      return seen
    }
  }
}

const count = (list: string[], item: string) => list.filter((x) => x === item).length

/** Slow enough that a burst, once spent, is not back for 10 s. */
const RATE = { RATE_LIMIT_LOGS_PER_SECOND: '1', RATE_LIMIT_BURST: '10' }

/** Each engine, by the REDIS_URL that selects it (unset: memory). */
const engines: [string, () => string | undefined][] = [
  ['memory', () => undefined],
  ['redis', () => redis.url],
]

describe.each(engines)('idempotency and rate limit (%s history)', (_engine, redisUrl) => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ redisUrl: redisUrl(), env: RATE })
  })
  afterAll(async () => {
    await server?.stop()
  })

  test('a retry with the same Idempotency-Key answers the first ids, marked as a replay, and stores once; watchers get one copy', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const watcher = await watch(server, task.task_id)
    const batch = { logs: [log('b0'), log('b1', 'error')] }
    const first = await ingest(server, sub, 'logs', batch, 'batch-1')
    expect(first.status).toBe(201)
    expect(first.headers.get('idempotency-replayed')).toBeNull()
    const firstBody = await json(first)
    const retry = await ingest(server, sub, 'logs', batch, 'batch-1')
    expect(retry.status).toBe(201)
    expect(retry.headers.get('idempotency-replayed')).toBe('true')
    const { broadcasted: _b1, ...retried } = await json(retry)
    const { broadcasted: _b0, ...original } = firstBody
    expect(retried).toEqual(original)
    // One line, twice under the same key.
    const single = await json(await ingest(server, sub, 'log', log('single'), 'line-1'))
    const again = await ingest(server, sub, 'log', log('single'), 'line-1')
    expect(again.headers.get('idempotency-replayed')).toBe('true')
    expect((await json(again)).id).toBe(single.id)
    await ingest(server, sub, 'log', log('marker'))
    expect(await history(server, task.task_id)).toEqual(['b0', 'b1', 'single', 'marker'])
    expect(await watchedUntil(server, task.task_id, watcher, 'marker')).toEqual(['b0', 'b1', 'single', 'marker'])
    // Only stored lines count as ingested.
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    expect(metrics).toMatch(/^tasklog_logs_ingested_total\{level="error"\} 1$/m)
  })

  test('the same key with another body is a 422 naming the conflict and stores nothing; malformed keys are a 422', async () => {
    const task = await createTask(server, { description: 'conflicts', subtasks: [{ description: 'a' }, { description: 'b' }] })
    const [a, b] = task.subtasks.map((s) => s.subtask_id)
    expect((await ingest(server, a!, 'log', log('first'), 'k')).status).toBe(201)
    for (const [subtask, body] of [
      [a!, log('different')],
      [a!, log('first', 'error')],
      [a!, { ...log('first'), metadata: { retry: 1 } }],
      [b!, log('first')],
    ] as const) {
      const res = await ingest(server, subtask, 'log', body, 'k')
      expect(res.status).toBe(422)
      const error = await json(res)
      expect(error.error).toBe('validation')
      expect(error.message).toContain('Idempotency-Key k was already used with a different request body')
      expect(error.details).toEqual([{ path: '/headers/idempotency-key', message: 'already used with a different request body' }])
    }
    for (const key of ['x'.repeat(129), 'tab\there']) {
      const res = await ingest(server, a!, 'log', log('bad key'), key)
      expect(res.status).toBe(422)
      expect((await json(res)).message).toContain('idempotency-key')
    }
    expect((await ingest(server, a!, 'log', log('longest key'), 'x'.repeat(128))).status).toBe(201)
    expect(await history(server, task.task_id)).toEqual(['first', 'longest key'])
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    expect(Number(/^tasklog_logs_rejected_total\{reason="validation"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(6)
  })

  test('concurrent requests with one key store one copy and all answer its ids', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const answers = await Promise.all(Array.from({ length: 8 }, () => ingest(server, sub, 'log', log('racing'), 'race')))
    expect(answers.map((r) => r.status)).toEqual(Array(8).fill(201))
    expect(answers.filter((r) => r.headers.get('idempotency-replayed') === 'true')).toHaveLength(7)
    expect(new Set(await Promise.all(answers.map(async (r) => (await json(r)).id))).size).toBe(1)
    expect(await history(server, task.task_id)).toEqual(['racing'])
  })

  test('over the rate limit: 429 rate_limited with Retry-After and RateLimit-*, nothing stored; a replay is not charged', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const burst = { logs: Array.from({ length: 10 }, (_, i) => log(`l${i}`)) }
    const keyed = await ingest(server, sub, 'logs', burst, 'whole-burst')
    expect(keyed.status).toBe(201)
    const over = await ingest(server, sub, 'log', log('one too many'))
    expect(over.status).toBe(429)
    const error = await json(over)
    expect(error.error).toBe('rate_limited')
    expect(error.message).toContain('over its log rate limit (1 lines/s, bursts of 10)')
    // One line is back within a second, the whole burst within 10.
    expect(over.headers.get('retry-after')).toBe('1')
    expect(over.headers.get('ratelimit-limit')).toBe('10')
    expect(over.headers.get('ratelimit-remaining')).toBe('0')
    expect(Number(over.headers.get('ratelimit-reset'))).toBeGreaterThanOrEqual(9)
    expect(Number(over.headers.get('ratelimit-reset'))).toBeLessThanOrEqual(10)
    // The bucket is empty, yet the retry of the keyed batch is answered: it stores nothing.
    const replay = await ingest(server, sub, 'logs', burst, 'whole-burst')
    expect(replay.status).toBe(201)
    expect(replay.headers.get('idempotency-replayed')).toBe('true')
    // A batch larger than the burst could never fit: a 422, not a 429 to retry forever.
    const tooLarge = await ingest(server, sub, 'logs', { logs: Array.from({ length: 11 }, (_, i) => log(`x${i}`)) })
    expect(tooLarge.status).toBe(422)
    expect((await json(tooLarge)).message).toContain('RATE_LIMIT_BURST (10)')
    expect(await history(server, task.task_id)).toEqual(burst.logs.map((l) => l.message))
    // Another task has its own bucket.
    const other = await createTask(server)
    expect((await ingest(server, other.subtasks[0]!.subtask_id, 'log', log('mine'))).status).toBe(201)
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    expect(Number(/^tasklog_rate_limited_requests_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1)
    expect(Number(/^tasklog_logs_rejected_total\{reason="rate_limited"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1)
  })
})

describe('Redis paused past STORE_TIMEOUT_MS while an append is in flight', () => {
  let paused: RedisServer
  let server: TestServer
  beforeAll(async () => {
    paused = await startRedis()
    server = await startServer({ redisUrl: paused.url, env: { STORE_TIMEOUT_MS: '500' } })
  })
  afterAll(async () => {
    paused?.resume()
    await server?.stop()
    await paused?.stop()
  })

  /** Sends one line while Redis hangs (a 503 that may still take effect), then retries it until stored. */
  async function sendThroughPause(sub: string, message: string, key?: string): Promise<Response> {
    await paused.pause()
    try {
      const during = await ingest(server, sub, 'log', log(message), key)
      expect(during.status).toBe(503)
      expect((await json(during)).message).toContain('may still take effect')
    } finally {
      paused.resume()
    }
    for (let attempt = 0; ; attempt++) {
      const retry = await ingest(server, sub, 'log', log(message), key)
      if (retry.status === 201 || attempt === 100) return retry
      await Bun.sleep(50)
    }
  }

  test('the retry with the same key leaves exactly one copy in history and on a watcher', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const watcher = await watch(server, task.task_id)
    const retry = await sendThroughPause(sub, 'exactly once', 'worker-7-batch-1')
    expect(retry.status).toBe(201)
    await ingest(server, sub, 'log', log('marker'))
    expect(await history(server, task.task_id)).toEqual(['exactly once', 'marker'])
    expect(await watchedUntil(server, task.task_id, watcher, 'marker')).toEqual(['exactly once', 'marker'])
  })

  test('without a key the retry may store the line twice (documented): here Redis ran the first append after all', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const watcher = await watch(server, task.task_id)
    const retry = await sendThroughPause(sub, 'maybe twice')
    expect(retry.status).toBe(201)
    await ingest(server, sub, 'log', log('marker'))
    // Redis read the paused request once resumed and ran it; the retry stored the line again.
    const stored = await history(server, task.task_id)
    expect(count(stored, 'maybe twice')).toBe(2)
    expect(count(await watchedUntil(server, task.task_id, watcher, 'marker'), 'maybe twice')).toBe(2)
  })
})

describe('two instances sharing Redis', () => {
  let instances: TestServer[]
  beforeAll(async () => {
    instances = await startInstances(redis.url, 2)
  })
  afterAll(async () => {
    await Promise.all(instances.map((s) => s.stop()))
  })

  test('the same keyed request to both at once stores one copy; both answer its ids', async () => {
    const [a, b] = instances as [TestServer, TestServer]
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const watcher = await watch(b, task.task_id)
    for (let i = 0; i < 20; i++) {
      const batch = { logs: [log(`r${i}a`), log(`r${i}b`)] }
      const answers = await Promise.all([ingest(a, sub, 'logs', batch, `key-${i}`), ingest(b, sub, 'logs', batch, `key-${i}`)])
      expect(answers.map((r) => r.status)).toEqual([201, 201])
      expect(answers.filter((r) => r.headers.get('idempotency-replayed') === 'true')).toHaveLength(1)
      const [x, y] = await Promise.all(answers.map(json))
      expect(y.first_id).toBe(x.first_id)
    }
    await ingest(a, sub, 'log', log('marker'))
    const expected = [...Array.from({ length: 20 }, (_, i) => [`r${i}a`, `r${i}b`]).flat(), 'marker']
    expect(await history(b, task.task_id)).toEqual(expected)
    expect(await watchedUntil(b, task.task_id, watcher, 'marker')).toEqual(expected)
  })
})

describe('the rate limit holds across two instances sharing Redis', () => {
  const PER_SECOND = 400
  const BURST = 800
  let instances: TestServer[]
  let limited: RedisServer
  beforeAll(async () => {
    limited = await startRedis()
    instances = await startInstances(limited.url, 2, {
      RATE_LIMIT_LOGS_PER_SECOND: String(PER_SECOND),
      RATE_LIMIT_BURST: String(BURST),
      LOG_HISTORY_MAX: '100000',
    })
  })
  afterAll(async () => {
    await Promise.all(instances.map((s) => s.stop()))
    await limited?.stop()
  })

  test('posting as fast as possible, the accepted lines stay within 10% of rate x time + burst, and every 429 stored nothing', async () => {
    const task = await createTask(instances[0]!)
    const sub = task.subtasks[0]!.subtask_id
    const acceptedMessages: string[] = []
    const refusedMessages: string[] = []
    let sequence = 0
    const started = performance.now()
    const until = started + 3000
    // Four senders per instance, each posting batches of 10 back to back.
    const sender = async (server: TestServer) => {
      while (performance.now() < until) {
        const messages = Array.from({ length: 10 }, () => `m${sequence++}`)
        const res = await ingest(server, sub, 'logs', { logs: messages.map((m) => log(m)) })
        if (res.status === 201) acceptedMessages.push(...messages)
        else {
          expect(res.status).toBe(429)
          expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
          refusedMessages.push(...messages)
        }
        await res.arrayBuffer()
      }
    }
    await Promise.all(instances.flatMap((server) => [1, 2, 3, 4].map(() => sender(server))))
    const seconds = (performance.now() - started) / 1000
    const allowed = PER_SECOND * seconds + BURST
    expect(refusedMessages.length).toBeGreaterThan(0)
    expect(acceptedMessages.length).toBeLessThanOrEqual(allowed * 1.1)
    expect(acceptedMessages.length).toBeGreaterThanOrEqual(allowed * 0.9)
    // History holds exactly what was accepted: no refused line, none twice.
    const stored: string[] = []
    let since: string | undefined
    for (;;) {
      const page = await json(
        await fetch(
          `${instances[1]!.url}/api/v1/tasks/${task.task_id}/logs?limit=1000&order=asc${since ? `&since=${since}` : ''}`,
        ),
      )
      stored.push(...page.logs.map((l: { message: string }) => l.message))
      if (page.logs.length < 1000) break
      since = page.next_since
    }
    expect(stored.length).toBe(acceptedMessages.length)
    expect(new Set(stored)).toEqual(new Set(acceptedMessages))
  }, 30_000)
})

describe('WorkerLogger through a Redis paused mid-append', () => {
  test('its retries reuse the batch key: each line once in history and on a watcher, though Redis ran the timed-out append', async () => {
    const paused = await startRedis()
    const server = await startServer({ redisUrl: paused.url, env: { STORE_TIMEOUT_MS: '500' } })
    try {
      const task = await createTask(server)
      const watcher = await watch(server, task.task_id)
      const logger = new WorkerLogger(task.subtasks[0]!.subtask_id, server.url, {
        flushIntervalMs: 1,
        maxAttempts: 100,
        retry: { baseDelayMs: 50, maxDelayMs: 200 },
      })
      logger.info('before')
      await logger.flush()
      await paused.pause()
      logger.info('during 1')
      logger.info('during 2')
      // Past STORE_TIMEOUT_MS: the batch's first request, held in Redis' socket, is answered 503.
      await Bun.sleep(1500)
      paused.resume()
      const stats = await logger.flush()
      logger.info('marker')
      await logger.close()
      expect(stats).toMatchObject({ sent: 3, failed: 0 })
      expect(stats.retries).toBeGreaterThanOrEqual(1)
      const expected = ['before', 'during 1', 'during 2', 'marker']
      expect(await history(server, task.task_id)).toEqual(expected)
      expect(await watchedUntil(server, task.task_id, watcher, 'marker')).toEqual(expected)
    } finally {
      paused.resume()
      await server.stop()
      await paused.stop()
    }
  })
})
