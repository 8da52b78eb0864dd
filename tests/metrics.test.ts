/** `/metrics` as a Prometheus scraper reads it, from servers with real stores. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { connect } from 'node:net'
import { createClient } from 'redis'
import { version } from '../package.json'
import { startRedis, type RedisServer } from './support/redis-server'
import { SseStream, createTask, post, startServer, type TestServer } from './support/server'

/** Every sample, by name with its labels as written (`name{a="b"}`). */
async function scrape(server: TestServer): Promise<Map<string, number>> {
  const res = await fetch(`${server.url}/metrics`)
  expect(res.headers.get('content-type')).toStartWith('text/plain; version=0.0.4')
  const samples = new Map<string, number>()
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    samples.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return samples
}

const rejected = (samples: Map<string, number>, reason: string) => samples.get(`tasklog_logs_rejected_total{reason="${reason}"}`)

describe('process and build', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  test('process_* describe this process: CPU time, resident memory, open fds, start time', async () => {
    const samples = await scrape(server)
    expect(samples.get('process_cpu_seconds_total')).toBeGreaterThan(0)
    expect(samples.get('process_resident_memory_bytes')).toBeGreaterThan(1024 * 1024)
    expect(Math.abs(samples.get('process_resident_memory_bytes')! - process.memoryUsage.rss())).toBeLessThan(64 * 1024 * 1024)
    // This process opened the server's listening socket, among others.
    expect(samples.get('process_open_fds')).toBeGreaterThan(3)
    const started = samples.get('process_start_time_seconds')! * 1000
    expect(started).toBeLessThanOrEqual(Date.now())
    expect(started).toBeGreaterThan(Date.now() - process.uptime() * 1000 - 5_000)
  })

  test('tasklog_build_info names the version and Bun', async () => {
    expect((await scrape(server)).get(`tasklog_build_info{version="${version}",bun="${Bun.version}"}`)).toBe(1)
  })

  test('SSE connections are counted while open', async () => {
    const task = await createTask(server)
    expect((await scrape(server)).get('tasklog_sse_connections')).toBe(0)
    const streams = [await SseStream.open(server, task.task_id), await SseStream.open(server, task.task_id)]
    await Promise.all(streams.map((s) => s.until('retry:')))
    expect((await scrape(server)).get('tasklog_sse_connections')).toBe(2)
    streams[0]!.close()
    let open = 2
    for (let i = 0; i < 100 && open !== 1; i++) {
      await Bun.sleep(20)
      open = (await scrape(server)).get('tasklog_sse_connections')!
    }
    expect(open).toBe(1)
    streams[1]!.close()
  })

  test('an SSE reader that stops reading is dropped and counted as a slow reader', async () => {
    const task = await createTask(server)
    const { port } = new URL(server.url)
    // A raw socket that reads the response head, then nothing: the server's queue for it fills.
    const socket = connect(Number(port), '127.0.0.1')
    let head = ''
    const opened = new Promise<void>((resolve) =>
      socket.on('data', (chunk) => {
        head += chunk.toString()
        if (head.includes('retry:')) {
          socket.pause()
          resolve()
        }
      }),
    )
    socket.write(`GET /api/v1/tasks/${task.task_id}/logs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
    await opened
    const before = (await scrape(server)).get('tasklog_slow_readers_closed_total{transport="sse"}')!
    const line = 'z'.repeat(2_000)
    let after = before
    for (let batch = 0; batch < 60 && after === before; batch++) {
      const res = await post(`${server.url}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/logs`, {
        logs: Array.from({ length: 500 }, () => ({ level: 'info', message: line })),
      })
      expect(res.status).toBe(201)
      after = (await scrape(server)).get('tasklog_slow_readers_closed_total{transport="sse"}')!
    }
    socket.destroy()
    expect(after).toBe(before + 1)
    expect((await scrape(server)).get('tasklog_sse_connections')).toBe(0)
  }, 30_000)

  test('rejected logs are counted by reason; rate-limited requests start at 0', async () => {
    const task = await createTask(server)
    const subtask = task.subtasks[0]!.subtask_id
    const before = await scrape(server)
    expect(before.get('tasklog_rate_limited_requests_total')).toBe(0)
    // validation: a log without a message, and a batch with an invalid level
    expect((await post(`${server.url}/api/v1/subtasks/${subtask}/log`, { level: 'info' })).status).toBe(422)
    expect(
      (await post(`${server.url}/api/v1/subtasks/${subtask}/logs`, { logs: [{ level: 'loud', message: 'x' }] })).status,
    ).toBe(422)
    // not_found: a subtask that does not exist
    const unknown = '0195f0c2-9a6e-7d4b-8f3a-2c1d0e9b8a7f'
    expect((await post(`${server.url}/api/v1/subtasks/${unknown}/log`, { level: 'info', message: 'x' })).status).toBe(404)
    // payload_too_large: a body over MAX_BODY_BYTES, refused before it is read
    const huge = JSON.stringify({ level: 'info', message: 'x'.repeat(server.config.maxBodyBytes) })
    const res = await fetch(`${server.url}/api/v1/subtasks/${subtask}/log`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: huge.slice(0, server.config.maxBodyBytes + 512),
    })
    expect(res.status).toBe(413)
    // Not ingest: a task route's 422 is no rejected log.
    expect((await post(`${server.url}/api/v1/tasks`, {})).status).toBe(422)
    const after = await scrape(server)
    const delta = (reason: string) => rejected(after, reason)! - rejected(before, reason)!
    expect(['validation', 'not_found', 'payload_too_large', 'unavailable', 'insufficient_storage'].map(delta)).toEqual([
      2, 1, 1, 0, 0,
    ])
    expect(after.get('tasklog_rate_limited_requests_total')).toBe(0)
  })
})

test("the memory history's memory figure is its byte count, asked at most every few seconds", async () => {
  const server = await startServer()
  try {
    const task = await createTask(server)
    const log = `${server.url}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`
    expect((await post(log, { level: 'info', message: 'y'.repeat(10_000) })).status).toBe(201)
    const figure = (await scrape(server)).get('tasklog_history_memory_bytes')!
    expect(figure).toBeGreaterThan(10_000)
    expect(figure).toBe(await server.logs.history.usedMemory())
    expect((await post(log, { level: 'info', message: 'y'.repeat(10_000) })).status).toBe(201)
    expect((await scrape(server)).get('tasklog_history_memory_bytes')).toBe(figure)
  } finally {
    await server.stop()
  }
})

describe('with Redis', () => {
  let redis: RedisServer
  let server: TestServer
  beforeAll(async () => {
    redis = await startRedis()
    server = await startServer({ redisUrl: redis.url, env: { STORE_TIMEOUT_MS: '500' } })
  })
  afterAll(async () => {
    await server.stop()
    await redis.stop()
  })

  test("the history's memory is Redis' used_memory, asked at most every few seconds", async () => {
    const admin = createClient({ url: redis.url })
    await admin.connect()
    try {
      const first = (await scrape(server)).get('tasklog_history_memory_bytes')!
      const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1])
      expect(first).toBeGreaterThan(100_000)
      expect(Math.abs(first - used)).toBeLessThan(1024 * 1024)
      await admin.set('ballast', 'z'.repeat(4 * 1024 * 1024))
      // The same figure within the cache's lifetime, though Redis now holds 4 MB more.
      expect((await scrape(server)).get('tasklog_history_memory_bytes')).toBe(first)
    } finally {
      await admin.quit()
    }
  })

  test('a log refused while Redis is down counts as unavailable, and /metrics still answers', async () => {
    const task = await createTask(server)
    const before = rejected(await scrape(server), 'unavailable')!
    await redis.stop()
    try {
      const res = await post(`${server.url}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`, { level: 'info', message: 'x' })
      expect(res.status).toBe(503)
      const samples = await scrape(server)
      expect(rejected(samples, 'unavailable')).toBe(before + 1)
      expect(samples.get('process_open_fds')).toBeGreaterThan(0)
    } finally {
      await redis.restart()
    }
  })
})

describe('an SSE stream whose reader leaves while its history is still being read', () => {
  test('leaves the connection gauge at 0 and the process running when the read then fails', async () => {
    let failReplay: (() => void) | undefined
    const server = await startServer({
      // Replay hangs until the test lets it fail, as a store that goes down mid-read would.
      wrapHistory: (h) => ({
        description: h.description,
        append: (...args) => h.append(...args),
        read: (...args) => h.read(...args),
        ping: () => h.ping(),
        usedMemory: () => h.usedMemory(),
        replay: () => new Promise((_, reject) => (failReplay = () => reject(new Error('history went away')))),
      }),
    })
    try {
      const task = await createTask(server)
      const reader = new AbortController()
      const response = fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs/stream?since=1-0`, { signal: reader.signal }).catch(
        () => undefined,
      )
      for (let i = 0; i < 100 && !failReplay; i++) await Bun.sleep(10)
      expect(failReplay).toBeDefined()
      expect((await scrape(server)).get('tasklog_sse_connections')).toBe(1)
      reader.abort()
      await response
      let open = 1
      for (let i = 0; i < 100 && open !== 0; i++) {
        await Bun.sleep(10)
        open = (await scrape(server)).get('tasklog_sse_connections')!
      }
      expect(open).toBe(0)
      failReplay!()
      await Bun.sleep(100)
      expect((await scrape(server)).get('tasklog_sse_connections')).toBe(0)
      expect((await fetch(`${server.url}/health`)).status).toBe(200)
    } finally {
      await server.stop()
    }
  })
})
