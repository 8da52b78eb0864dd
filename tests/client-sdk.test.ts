import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { ServerWebSocket } from 'bun'
import { createApp } from '../src/app'
import { LogStreamClient, TasklogApi, WorkerLogger, type LogMessage, type StreamEvents } from '../clients/ts/src'
import type * as client from '../clients/ts/src'
import type * as serverFrames from '../src/schemas/frames'
import type * as serverLog from '../src/schemas/log'
import type * as serverTask from '../src/schemas/task'
import { startProxy } from './support/http-proxy'
import { startRedis } from './support/redis-server'
import { createTask, json, sendLog, startServer, watch, type TestServer } from './support/server'

// The SDK's wire types must stay assignable from the server's schemas (checked by tsc).
export const sameWireTypes: [
  (log: serverLog.LogMessage) => client.LogMessage,
  (task: serverTask.Task) => client.Task,
  (change: serverFrames.StatusChange) => client.StatusChange,
] = [(log) => log, (task) => task, (change) => change]

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'

/** Polls until `done()` or fails after `timeoutMs`. */
async function until(done: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(10)
  }
}

/** A port nothing listens on. */
function closedPort(): number {
  const listener = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = listener.port
  listener.stop(true)
  return port
}

async function history(server: TestServer, taskId: string): Promise<LogMessage[]> {
  const body = await json(await fetch(`${server.url}/api/v1/tasks/${taskId}/logs?order=asc&limit=1000`))
  return body.logs
}

/** Records what a LogStreamClient emits. */
function record(stream: LogStreamClient) {
  const seen = { logs: [] as LogMessage[], events: [] as { type: keyof StreamEvents; data: any }[] }
  for (const type of ['open', 'subscribed', 'unsubscribed', 'status', 'error', 'gap', 'close', 'reconnecting'] as const)
    stream.on(type, (data) => seen.events.push({ type, data }))
  stream.on('log', (log) => seen.logs.push(log))
  return {
    ...seen,
    of: (type: keyof StreamEvents) => seen.events.filter((e) => e.type === type).map((e) => e.data),
    messages: (taskId?: string) => seen.logs.filter((l) => !taskId || l.task_id === taskId).map((l) => l.message),
  }
}

describe('WorkerLogger', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ env: { MAX_METADATA_BYTES: '64' } })
  })
  afterAll(() => server.stop())

  test('returns at once, batches lines in order and keeps the time each was logged', async () => {
    const task = await createTask(server)
    const subtask = task.subtasks[0]!
    const watcher = await watch(server, task.task_id)
    const proxy = startProxy(server.url)
    const logger = new WorkerLogger(subtask.subtask_id, proxy.url, { maxBatchSize: 10, flushIntervalMs: 50 })

    const before = new Date().toISOString()
    for (let i = 1; i <= 25; i++) logger.info(`line ${i}`, { i })
    const after = new Date().toISOString()
    expect(proxy.requests).toHaveLength(0)
    expect(logger.stats.pending).toBe(25)
    await Bun.sleep(30) // lines are stamped when logged, not when sent

    const stats = await logger.flush()
    expect(stats).toMatchObject({ sent: 25, pending: 0, rejected: 0, overflowed: 0, failed: 0, retries: 0, broadcasted: 1 })
    expect(proxy.requests.map((r) => [r.method, r.path, JSON.parse(r.body).logs.length])).toEqual([
      ['POST', `/api/v1/subtasks/${subtask.subtask_id}/logs`, 10],
      ['POST', `/api/v1/subtasks/${subtask.subtask_id}/logs`, 10],
      ['POST', `/api/v1/subtasks/${subtask.subtask_id}/logs`, 5],
    ])
    const received = await watcher.logs(25)
    expect(received.map((l) => l.message)).toEqual(Array.from({ length: 25 }, (_, i) => `line ${i + 1}`))
    expect(received[24].metadata).toEqual({ i: 25 })
    for (const log of received) {
      expect(log.timestamp >= before && log.timestamp <= after).toBe(true)
      expect(log.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    }
    expect(stats.lastId).toBe(received[24].id)
    await logger.close()
    watcher.close()
    await proxy.stop()
  })

  test('takes a subtask id in any form the server does, and sends it canonical', async () => {
    const task = await createTask(server)
    const id = task.subtasks[0]!.subtask_id
    const logger = new WorkerLogger(`{${id.toUpperCase()}}`, server.url)
    expect(logger.subtaskId).toBe(id)
    logger.info('braced')
    expect(await logger.flush()).toMatchObject({ sent: 1, rejected: 0, failed: 0 })
    expect(() => new WorkerLogger(`{${id}`, server.url)).toThrow(TypeError)
    await logger.close()
  })

  test('a lone line goes out after flushIntervalMs without flush()', async () => {
    const task = await createTask(server)
    const watcher = await watch(server, task.task_id)
    const logger = new WorkerLogger(task.subtasks[0]!.subtask_id, server.url, { flushIntervalMs: 20 })
    logger.warning('High memory usage', { memory_mb: 1843 })
    const [log] = await watcher.logs(1, 2_000)
    expect(log).toMatchObject({ level: 'warning', message: 'High memory usage', metadata: { memory_mb: 1843 } })
    watcher.close()
  })

  test('a 4xx other than 429 is final: not retried, counted and reported once', async () => {
    const proxy = startProxy(server.url)
    const problems: string[] = []
    const logger = new WorkerLogger(UNKNOWN_ID, proxy.url, { onProblem: (m) => problems.push(m), retry: { baseDelayMs: 1 } })
    for (const n of [3, 2]) {
      for (let i = 0; i < n; i++) logger.error('lost')
      await logger.flush()
    }
    expect(proxy.requests.map((r) => r.status)).toEqual([404, 404])
    expect(logger.stats).toMatchObject({ sent: 0, rejected: 5, retries: 0, pending: 0 })
    expect(logger.stats.lastError).toEqual({ status: 404, code: 'not_found', message: `Subtask ${UNKNOWN_ID} not found` })
    expect(problems).toHaveLength(1)
    expect(problems[0]).toContain('404')
    await proxy.stop()
  })

  test('when the server names the invalid lines of a batch, only those are dropped', async () => {
    const task = await createTask(server)
    const logger = new WorkerLogger(task.subtasks[0]!.subtask_id, server.url, { onProblem: () => {} })
    logger.info('first')
    logger.info('too much metadata', { blob: 'x'.repeat(100) }) // MAX_METADATA_BYTES is 64 here
    logger.info('third')
    const stats = await logger.flush()
    expect(stats).toMatchObject({ sent: 2, rejected: 1 })
    expect(stats.lastError).toMatchObject({ status: 422, code: 'validation' })
    expect((await history(server, task.task_id)).map((l) => l.message)).toEqual(['first', 'third'])
  })

  test('retries a 429 after its Retry-After, resending the same lines', async () => {
    const task = await createTask(server)
    const proxy = startProxy(server.url, (_req, n) =>
      n === 1
        ? Response.json({ error: 'rate_limited', message: 'Slow down' }, { status: 429, headers: { 'retry-after': '1' } })
        : undefined,
    )
    const logger = new WorkerLogger(task.subtasks[0]!.subtask_id, proxy.url, { retry: { baseDelayMs: 1 } })
    logger.info('one')
    logger.info('two')
    const stats = await logger.flush()
    expect(stats).toMatchObject({ sent: 2, retries: 1, failed: 0 })
    const [first, second] = proxy.requests
    expect([first!.status, second!.status]).toEqual([429, 201])
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(950)
    expect(second!.body).toBe(first!.body)
    expect(second!.headers.get('idempotency-key')).toBe(first!.headers.get('idempotency-key')!)
    await proxy.stop()
  })

  test('one Idempotency-Key per batch, the same on every retry of it (503 then 201), a new one for the next batch', async () => {
    const task = await createTask(server)
    const proxy = startProxy(server.url, (_req, n) =>
      n === 1 ? Response.json({ error: 'store_unavailable', message: 'Try again' }, { status: 503 }) : undefined,
    )
    const logger = new WorkerLogger(task.subtasks[0]!.subtask_id, proxy.url, { retry: { baseDelayMs: 1 } })
    logger.info('one')
    await logger.flush()
    logger.info('two')
    expect(await logger.flush()).toMatchObject({ sent: 2, retries: 1, failed: 0 })
    const keys = proxy.requests.map((r) => r.headers.get('idempotency-key'))
    expect(proxy.requests.map((r) => r.status)).toEqual([503, 201, 201])
    expect(keys[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(keys[1]).toBe(keys[0]!)
    expect(keys[2]).not.toBe(keys[0]!)
    await proxy.stop()
  })

  test('Retry-After as an HTTP date is honoured too', async () => {
    const task = await createTask(server)
    const proxy = startProxy(server.url, (_req, n) =>
      n === 1
        ? Response.json(
            { error: 'rate_limited', message: 'Slow down' },
            { status: 429, headers: { 'retry-after': new Date(Date.now() + 2_000).toUTCString() } },
          )
        : undefined,
    )
    const logger = new WorkerLogger(task.subtasks[0]!.subtask_id, proxy.url, { retry: { baseDelayMs: 1 } })
    logger.info('dated')
    expect(await logger.flush()).toMatchObject({ sent: 1, failed: 0 })
    const [first, second] = proxy.requests
    // HTTP dates have whole seconds: at least one second is left of the two asked for.
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(950)
    expect(second!.headers.get('idempotency-key')).toBe(first!.headers.get('idempotency-key')!)
    await proxy.stop()
  })

  test('never loses a line to 429s: they do not count towards maxAttempts', async () => {
    const task = await createTask(server)
    const proxy = startProxy(server.url, (_req, n) =>
      n <= 4
        ? Response.json({ error: 'rate_limited', message: 'Slow down' }, { status: 429, headers: { 'retry-after': '0' } })
        : undefined,
    )
    const logger = new WorkerLogger(task.subtasks[0]!.subtask_id, proxy.url, { maxAttempts: 2, retry: { baseDelayMs: 1 } })
    logger.info('patient')
    expect(await logger.flush()).toMatchObject({ sent: 1, failed: 0, retries: 4 })
    expect((await history(server, task.task_id)).map((l) => l.message)).toEqual(['patient'])
    await proxy.stop()
  })

  test('sends its token as Authorization: Bearer, from the option or TASKLOG_TOKEN', async () => {
    const task = await createTask(server)
    const proxy = startProxy(server.url)
    const subtaskId = task.subtasks[0]!.subtask_id
    const saved = process.env.TASKLOG_TOKEN
    process.env.TASKLOG_TOKEN = 'from-env'
    try {
      const logger = new WorkerLogger(subtaskId, proxy.url)
      logger.info('with a token')
      await logger.close()
      await new TasklogApi(proxy.url).getTask(task.task_id)
    } finally {
      if (saved === undefined) delete process.env.TASKLOG_TOKEN
      else process.env.TASKLOG_TOKEN = saved
    }
    const logger = new WorkerLogger(subtaskId, proxy.url, { token: 'from-option' })
    logger.info('option')
    await logger.close()
    expect(proxy.requests.map((r) => [r.method, r.headers.get('authorization')])).toEqual([
      ['POST', 'Bearer from-env'],
      ['GET', 'Bearer from-env'],
      ['POST', 'Bearer from-option'],
    ])
    await proxy.stop()
  })

  test('never throws into the caller; a full queue drops the oldest lines and says so once', async () => {
    const task = await createTask(server)
    const problems: string[] = []
    const logger = new WorkerLogger(task.subtasks[0]!.subtask_id, server.url, {
      maxQueueSize: 3,
      onProblem: (m) => problems.push(m),
    })
    for (let i = 1; i <= 6; i++) logger.info(`line ${i}`)
    const circular: Record<string, unknown> = {}
    circular.self = circular
    expect(() => logger.info('unencodable', circular)).not.toThrow()
    expect(() => logger.log('loud' as never, 'bad level')).not.toThrow()
    const stats = await logger.close()
    expect(() => logger.info('after close')).not.toThrow()
    expect(stats).toMatchObject({ sent: 3, overflowed: 3, rejected: 2, pending: 0 })
    expect((await history(server, task.task_id)).map((l) => l.message)).toEqual(['line 4', 'line 5', 'line 6'])
    expect(problems.filter((p) => p.includes('oldest'))).toHaveLength(1)
  })

  test('close() gives up after its timeout when the server cannot be reached', async () => {
    const problems: string[] = []
    const logger = new WorkerLogger(UNKNOWN_ID, `http://127.0.0.1:${closedPort()}`, {
      maxAttempts: 1000,
      retry: { baseDelayMs: 20, maxDelayMs: 50 },
      onProblem: (m) => problems.push(m),
    })
    logger.info('a')
    logger.info('b')
    const started = Date.now()
    const stats = await logger.close(300)
    expect(Date.now() - started).toBeLessThan(1_500)
    expect(stats).toMatchObject({ sent: 0, failed: 2, pending: 0 })
    expect(stats.retries).toBeGreaterThan(0)
    expect(stats.lastError?.code).toBe('network')
    expect(problems.some((p) => p.startsWith('gave up on 2 line(s)'))).toBe(true)
  })
})

describe('WorkerLogger against a Redis outage', () => {
  test('retries the 503s while Redis is down, then stores the lines with the time they were logged', async () => {
    const redis = await startRedis()
    const server = await startServer({ redisUrl: redis.url })
    try {
      const task = await createTask(server)
      const proxy = startProxy(server.url)
      const logger = new WorkerLogger(task.subtasks[0]!.subtask_id, proxy.url, {
        flushIntervalMs: 1,
        maxAttempts: 100,
        retry: { baseDelayMs: 50, maxDelayMs: 200 },
      })
      await redis.kill()
      const loggedAt = new Date().toISOString()
      for (const message of ['during the outage 1', 'during the outage 2', 'during the outage 3']) logger.info(message)
      await until(() => proxy.requests.filter((r) => r.status === 503).length >= 2, 'two 503 answers')
      await redis.restart()
      const restartedAt = new Date().toISOString()
      const stats = await logger.flush()
      expect(stats).toMatchObject({ sent: 3, failed: 0 })
      expect(stats.retries).toBeGreaterThanOrEqual(2)
      const statuses = proxy.requests.map((r) => r.status)
      expect(statuses[0]).toBe(503)
      expect(statuses.at(-1)).toBe(201)
      const stored = await history(server, task.task_id)
      expect(stored.map((l) => l.message)).toEqual(['during the outage 1', 'during the outage 2', 'during the outage 3'])
      for (const log of stored) expect(log.timestamp >= loggedAt && log.timestamp < restartedAt).toBe(true)
      await proxy.stop()
    } finally {
      await server.stop()
      await redis.stop()
    }
  })
})

describe('LogStreamClient', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  test('follows tasks: live logs and status frames, a second task by action, unsubscribe, heartbeat', async () => {
    const [a, b] = [await createTask(server), await createTask(server)]
    const stream = new LogStreamClient(server.wsUrl, { heartbeatIntervalMs: 30, pongTimeoutMs: 150 })
    const seen = record(stream)
    stream.subscribe(a.task_id)
    stream.subscribe(b.task_id.toUpperCase()) // any form the server takes; events name it canonically
    await until(() => seen.of('subscribed').length === 2, 'two subscriptions')
    expect(seen.of('open')).toEqual([{ url: `${server.wsUrl}/api/v1/ws/tasks/${a.task_id}/logs` }])

    await sendLog(server, a.subtasks[0]!.subtask_id, { level: 'info', message: 'from a', metadata: { step: 1 } })
    await sendLog(server, b.subtasks[0]!.subtask_id, { level: 'error', message: 'from b' })
    await fetch(`${server.url}/api/v1/subtasks/${b.subtasks[0]!.subtask_id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'in_progress', worker_name: 'builder-7' }),
    })
    await until(() => seen.logs.length === 2 && seen.of('status').length === 1, 'two logs and a status')
    expect(seen.logs.map((l) => [l.task_id, l.level, l.message, l.metadata])).toEqual([
      [a.task_id, 'info', 'from a', { step: 1 }],
      [b.task_id, 'error', 'from b', null],
    ])
    expect(seen.of('status')[0]).toEqual({
      task_id: b.task_id,
      subtask_id: b.subtasks[0]!.subtask_id,
      status: 'in_progress',
      task_status: 'in_progress',
      worker_name: 'builder-7',
    })

    stream.unsubscribe(b.task_id.replaceAll('-', ''))
    await until(() => seen.of('unsubscribed').length === 1, 'unsubscribed')
    await sendLog(server, b.subtasks[0]!.subtask_id, { level: 'info', message: 'b after unsubscribe' })
    await sendLog(server, a.subtasks[0]!.subtask_id, { level: 'info', message: 'a again' })
    await until(() => seen.logs.length === 3, 'a third log')
    expect(seen.messages()).toEqual(['from a', 'from b', 'a again'])
    expect(stream.taskIds).toEqual([a.task_id])

    await Bun.sleep(300) // several heartbeats: answered by pongs, so the connection is kept
    expect(seen.of('close')).toEqual([])
    stream.close()
    expect(await stream.closed).toEqual({ code: 1000, reason: 'client closed' })
  })

  test('history and level options; an unknown second task is an error event, the rest goes on', async () => {
    const task = await createTask(server)
    const subtaskId = task.subtasks[0]!.subtask_id
    for (const level of ['debug', 'info', 'warning', 'error'] as const)
      await sendLog(server, subtaskId, { level, message: `old ${level}` })
    const stream = new LogStreamClient(server.url, { level: 'warning' }) // an http:// base works too
    const seen = record(stream)
    stream.subscribe(task.task_id, { history: 3 })
    stream.subscribe(UNKNOWN_ID)
    await until(() => seen.logs.length === 2 && seen.of('error').length === 1, 'history and an error')
    expect(seen.messages()).toEqual(['old warning', 'old error'])
    expect(seen.of('error')[0]).toEqual({ message: `Task ${UNKNOWN_ID} not found`, code: 'not_found', task_id: UNKNOWN_ID })
    expect(stream.taskIds).toEqual([task.task_id])
    await sendLog(server, subtaskId, { level: 'info', message: 'new info' })
    await sendLog(server, subtaskId, { level: 'error', message: 'new error' })
    await until(() => seen.logs.length === 3, 'a live error')
    expect(seen.messages()).toEqual(['old warning', 'old error', 'new error'])
    stream.close()
  })

  test('level applies to every task subscribed, not only the first', async () => {
    const [a, b] = [await createTask(server), await createTask(server)]
    const stream = new LogStreamClient(server.wsUrl, { level: 'warning' })
    const seen = record(stream)
    stream.subscribe(a.task_id)
    stream.subscribe(b.task_id)
    await until(() => seen.of('subscribed').length === 2, 'two subscriptions')
    for (const task of [a, b])
      for (const level of ['debug', 'info', 'warning', 'error'] as const)
        await sendLog(server, task.subtasks[0]!.subtask_id, { level, message: `${task === a ? 'a' : 'b'} ${level}` })
    await until(() => seen.logs.length >= 4, 'four logs')
    await sendLog(server, b.subtasks[0]!.subtask_id, { level: 'error', message: 'b last' })
    await until(() => seen.messages().includes('b last'), 'the last log')
    expect(seen.messages()).toEqual(['a warning', 'a error', 'b warning', 'b error', 'b last'])
    stream.close()
  })

  test('stops without retrying when the server closes with 1008', async () => {
    const stream = new LogStreamClient(server.wsUrl, { reconnect: { baseDelayMs: 10 } })
    const seen = record(stream)
    stream.subscribe(UNKNOWN_ID)
    expect(await stream.closed).toEqual({ code: 1008, reason: `Task ${UNKNOWN_ID} not found` })
    await Bun.sleep(100)
    expect(seen.of('close')).toEqual([{ code: 1008, reason: `Task ${UNKNOWN_ID} not found`, reconnecting: false }])
    expect(seen.of('reconnecting')).toEqual([])
    expect(seen.of('open')).toHaveLength(1)
  })

  test('throws for a task id that is not a UUID', () => {
    expect(() => new LogStreamClient(server.wsUrl).subscribe('not-a-uuid')).toThrow(TypeError)
  })
})

describe('LogStreamClient across server restarts', () => {
  /**
   * A server whose app can be stopped and started again on the same port and stores, with a
   * second instance on those stores that takes the logs while the first one is down.
   */
  async function restartable(env: Record<string, string> = {}) {
    const server = await startServer({ env })
    const port = Number(new URL(server.url).port)
    const deps = { config: server.config, tasks: server.tasks, logs: server.logs }
    const other = createApp(deps).listen({ hostname: '127.0.0.1', port: 0 })
    const otherUrl = `http://127.0.0.1:${other.server!.port}`
    let current = server.app
    let up = true
    return {
      server,
      /** Posts a log through the restarted instance when it is up, else through the other one. */
      log: (subtaskId: string, message: string) =>
        sendLog(up ? server : { ...server, url: otherUrl }, subtaskId, { level: 'info', message }),
      async down() {
        up = false
        await current.stop(true)
      },
      up() {
        current = createApp(deps).listen({ hostname: '127.0.0.1', port })
        up = true
      },
      async stop() {
        await Promise.all([current.stop(true), other.stop(true)])
        await Promise.all([server.logs.close(), server.tasks.close()])
      },
    }
  }

  test('reconnects and resumes every task after the last log it saw: no gaps, no duplicates', async () => {
    const cluster = await restartable()
    try {
      const { server } = cluster
      // `silent` logs nothing until after the reconnection: resuming it is no gap either.
      const [busy, quiet, silent] = [await createTask(server), await createTask(server), await createTask(server)]
      const [busySub, quietSub] = [busy.subtasks[0]!.subtask_id, quiet.subtasks[0]!.subtask_id]
      const stream = new LogStreamClient(server.wsUrl, { reconnect: { baseDelayMs: 20, maxDelayMs: 100 } })
      const seen = record(stream)
      stream.subscribe(busy.task_id)
      stream.subscribe(quiet.task_id)
      stream.subscribe(silent.task_id)
      await until(() => seen.of('subscribed').length === 3, 'three subscriptions')
      for (const n of [1, 2, 3]) await cluster.log(busySub, `busy ${n}`)
      await until(() => seen.logs.length === 3, 'three logs')

      await cluster.down()
      await until(() => seen.of('reconnecting').length >= 2, 'failed reconnection attempts')
      for (const n of [4, 5]) await cluster.log(busySub, `busy ${n}`)
      await cluster.log(quietSub, 'quiet 1')
      cluster.up()
      await until(() => seen.of('subscribed').length === 6, 'resubscription of every task')
      for (const n of [6, 7]) await cluster.log(busySub, `busy ${n}`)
      await cluster.log(quietSub, 'quiet 2')
      await cluster.log(silent.subtasks[0]!.subtask_id, 'silent 1')
      await until(() => seen.logs.length === 10, 'ten logs')
      await Bun.sleep(100) // room for any duplicate to arrive

      expect(seen.messages(busy.task_id)).toEqual(['busy 1', 'busy 2', 'busy 3', 'busy 4', 'busy 5', 'busy 6', 'busy 7'])
      expect(seen.messages(quiet.task_id)).toEqual(['quiet 1', 'quiet 2'])
      expect(seen.messages(silent.task_id)).toEqual(['silent 1'])
      expect(seen.of('subscribed').slice(3)).toContainEqual({ task_id: silent.task_id, recovered: true })
      expect(seen.of('close')[0]).toMatchObject({ reconnecting: true })
      expect(seen.of('open')[1].url).toContain(`since=${seen.logs[2]!.id}`)
      expect(seen.of('gap')).toEqual([])
      stream.close()
    } finally {
      await cluster.stop()
    }
  })

  test('a gap event when history lost lines while the client was away', async () => {
    const cluster = await restartable({ LOG_HISTORY_MAX: '3' })
    try {
      const { server } = cluster
      const task = await createTask(server)
      const subtaskId = task.subtasks[0]!.subtask_id
      const stream = new LogStreamClient(server.wsUrl, { reconnect: { baseDelayMs: 20, maxDelayMs: 100 } })
      const seen = record(stream)
      stream.subscribe(task.task_id)
      await until(() => seen.of('subscribed').length === 1, 'subscribed')
      await cluster.log(subtaskId, 'seen')
      await until(() => seen.logs.length === 1, 'one log')
      const lastSeen = seen.logs[0]!.id

      await cluster.down()
      for (let n = 1; n <= 5; n++) await cluster.log(subtaskId, `missed ${n}`) // only the last 3 are kept
      cluster.up()
      await until(() => seen.logs.length === 4, 'the logs still in history')
      expect(seen.messages()).toEqual(['seen', 'missed 3', 'missed 4', 'missed 5'])
      expect(seen.of('gap')).toEqual([{ task_id: task.task_id, since: lastSeen }])
      expect(seen.of('subscribed')[1]).toEqual({ task_id: task.task_id, recovered: false })
      stream.close()
    } finally {
      await cluster.stop()
    }
  })
})

describe('LogStreamClient against a misbehaving WebSocket server', () => {
  /** A real WebSocket server that runs `open` on each connection (given the URL it was asked for) and never answers pings. */
  function stubSocketServer(open: (ws: ServerWebSocket<unknown>, url: string) => void) {
    const urls: string[] = []
    const stub = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch(req, srv) {
        urls.push(req.url)
        return srv.upgrade(req) ? undefined : new Response('upgrade expected', { status: 400 })
      },
      websocket: { open: (ws) => open(ws, urls.at(-1)!), message() {} },
    })
    return { url: `ws://127.0.0.1:${stub.port}`, urls, stop: () => stub.stop(true) }
  }
  /** A stub that sends `frames` after `subscribed`. */
  const stubServer = (frames: object[]) =>
    stubSocketServer((ws, url) => {
      const taskId = /tasks\/([^/]+)\/logs/.exec(url)![1]
      ws.send(JSON.stringify({ type: 'subscribed', data: { task_id: taskId }, timestamp: new Date().toISOString() }))
      for (const frame of frames) ws.send(JSON.stringify(frame))
    })
  const TASK = '01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f'
  const log = (id: string) => ({ type: 'log', data: { id, task_id: TASK, message: id }, timestamp: new Date().toISOString() })

  test('drops any log whose id is not above the last one seen (ids compare as numbers)', async () => {
    const stub = stubServer(['9-0', '10-0', '10-0', '9-5', '10-1', '2-0', '11-0'].map(log))
    const stream = new LogStreamClient(stub.url)
    const seen = record(stream)
    stream.subscribe(TASK)
    await until(() => seen.logs.length === 4, 'four logs')
    await Bun.sleep(50)
    expect(seen.logs.map((l) => l.id)).toEqual(['9-0', '10-0', '10-1', '11-0'])
    stream.close()
    await stub.stop()
  })

  test('sends its token as ?token=; a 4001 or 4003 close is final and surfaced, with no reconnection', async () => {
    for (const code of [4001, 4003]) {
      const stub = stubSocketServer((ws) => ws.close(code, code === 4001 ? 'A valid token is required' : 'This token may not read the task'))
      const { urls } = stub
      const stream = new LogStreamClient(stub.url, { token: 't0k/en', reconnect: { baseDelayMs: 5 } })
      const seen = record(stream)
      stream.subscribe(TASK)
      const reason = code === 4001 ? 'A valid token is required' : 'This token may not read the task'
      expect(await stream.closed).toEqual({ code, reason })
      await Bun.sleep(100)
      expect(urls).toHaveLength(1)
      expect(new URL(urls[0]!).searchParams.get('token')).toBe('t0k/en')
      expect(seen.of('open')[0].url).not.toContain('token')
      expect(seen.of('close')).toEqual([{ code, reason, reconnecting: false }])
      expect(seen.of('error')).toEqual([{ code: code === 4001 ? 'unauthorized' : 'forbidden', message: reason }])
      expect(seen.of('reconnecting')).toEqual([])
      await stub.stop()
    }
  })

  test('replaces a connection that does not answer pings, resuming after the last id', async () => {
    const stub = stubServer([log('5-0')])
    const stream = new LogStreamClient(stub.url, {
      heartbeatIntervalMs: 30,
      pongTimeoutMs: 60,
      reconnect: { baseDelayMs: 10, maxDelayMs: 20 },
    })
    const seen = record(stream)
    stream.subscribe(TASK)
    await until(() => stub.urls.length >= 2, 'a second connection')
    expect(seen.of('close')[0]).toEqual({ code: 4000, reason: 'no answer to ping', reconnecting: true })
    expect(stub.urls[1]).toEndWith(`/api/v1/ws/tasks/${TASK}/logs?since=5-0`)
    expect(seen.logs.map((l) => l.id)).toEqual(['5-0'])
    stream.close()
    await stub.stop()
  })
})
