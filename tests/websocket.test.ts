import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startClusterDeployment, type RedisDeployment } from './support/redis-deployments'
import { startRedis, type RedisServer } from './support/redis-server'
import { WsClient, createTask, post, sendLog, startServer, watch, type TestServer } from './support/server'

// The protocol must behave the same whichever history store backs it.
let redis: RedisServer
let cluster: RedisDeployment
beforeAll(async () => {
  ;[redis, cluster] = await Promise.all([startRedis(), startClusterDeployment()])
})
afterAll(() => Promise.all([redis.stop(), cluster.stop()]))

const STORES = ['memory', 'redis', 'redis cluster'] as const
/** The REDIS_URL of a store (none: memory). */
const redisUrl = (store: (typeof STORES)[number]) => (store === 'redis' ? redis.url : store === 'redis cluster' ? cluster.url : undefined)

describe.each(STORES)('WebSocket protocol (%s history)', (store) => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ redisUrl: redisUrl(store) })
  })
  afterAll(() => server.stop())

  const streamUrl = (taskId: string, query = '') => `${server.wsUrl}/api/v1/ws/tasks/${taskId}/logs${query}`

  test('subscribed frame first, then live logs with the LogMessage shape', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!
    const client = await WsClient.connect(streamUrl(task.task_id))
    const subscribed = await client.next()
    expect(subscribed.type).toBe('subscribed')
    expect(subscribed.data).toEqual({ task_id: task.task_id })
    expect(subscribed.timestamp).toMatch(/Z$/)
    const ack = await sendLog(server, sub.subtask_id, { level: 'info', message: 'Processing data', metadata: { step: 1 } })
    expect(ack).toEqual({
      success: true,
      message: 'Log stored and broadcast',
      broadcasted: 1,
      id: expect.stringMatching(/^\d+-\d+$/),
    })
    const frame = await client.nextOfType('log')
    expect(frame.data).toEqual({
      id: ack.id,
      task_id: task.task_id,
      subtask_id: sub.subtask_id,
      level: 'info',
      message: 'Processing data',
      metadata: { step: 1 },
      worker_id: null,
      worker_name: null,
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    })
    client.close()
  })

  test('unknown and malformed task ids: accepted, then closed with 1008', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      const client = await WsClient.connect(streamUrl(id))
      expect(await client.closed).toEqual({ code: 1008, reason: `Task ${id} not found` })
    }
  })

  test('ping gets pong; bad messages get error frames and the connection stays open', async () => {
    const task = await createTask(server)
    const client = await watch(server, task.task_id)
    client.send({ action: 'ping' })
    expect((await client.next()).type).toBe('pong')
    for (const bad of [
      'not json',
      '[1,2]',
      { action: 'dance' },
      { task_id: task.task_id },
      { action: 'subscribe' },
      { action: 'unsubscribe' },
    ]) {
      client.send(bad)
      const error = await client.next()
      expect(error.type).toBe('error')
      expect(error.data.message).toBeString()
      expect(error.data.code).toBeString()
    }
    client.send({ action: 'ping' })
    expect((await client.next()).type).toBe('pong')
    client.close()
  })

  test('subscribe and unsubscribe a second task on the same connection', async () => {
    const [a, b] = [await createTask(server), await createTask(server)]
    const client = await watch(server, a.task_id)
    client.send({ action: 'subscribe', task_id: b.task_id.toUpperCase() }) // any case, as in paths
    expect(await client.next()).toMatchObject({ type: 'subscribed', data: { task_id: b.task_id } })
    await sendLog(server, b.subtasks[0]!.subtask_id, { level: 'info', message: 'from b' })
    expect((await client.nextOfType('log')).data).toMatchObject({ task_id: b.task_id, message: 'from b' })

    client.send({ action: 'unsubscribe', task_id: `urn:uuid:${b.task_id}` }) // or as Python's uuid reads it
    expect(await client.next()).toMatchObject({ type: 'unsubscribed', data: { task_id: b.task_id } })
    const ack = await sendLog(server, b.subtasks[0]!.subtask_id, { level: 'info', message: 'after' })
    expect(ack.broadcasted).toBe(0)
    await sendLog(server, a.subtasks[0]!.subtask_id, { level: 'info', message: 'from a' })
    // The next frame is a's log: b's later log never arrived.
    expect((await client.next()).data).toMatchObject({ task_id: a.task_id, message: 'from a' })

    client.send({ action: 'subscribe', task_id: '00000000-0000-4000-8000-000000000000' })
    expect(await client.next()).toMatchObject({ type: 'error', data: { code: 'not_found' } })
    client.send({ action: 'subscribe', task_id: a.task_id })
    expect(await client.next()).toMatchObject({ type: 'error', data: { code: 'already_subscribed' } })
    client.close()
  })

  test('at most 100 subscriptions per connection: the 101st is refused, the connection and the others stay', async () => {
    const tasks = await Promise.all(Array.from({ length: 101 }, () => createTask(server)))
    const client = await watch(server, tasks[0]!.task_id)
    for (const task of tasks.slice(1, 100)) {
      client.send({ action: 'subscribe', task_id: task.task_id })
      expect(await client.next()).toMatchObject({ type: 'subscribed', data: { task_id: task.task_id } })
    }
    const last = tasks[100]!
    client.send({ action: 'subscribe', task_id: last.task_id })
    expect(await client.next()).toMatchObject({ type: 'error', data: { code: 'too_many_subscriptions' } })
    await sendLog(server, tasks[99]!.subtasks[0]!.subtask_id, { level: 'info', message: 'to the 100th' })
    expect((await client.next()).data).toMatchObject({ task_id: tasks[99]!.task_id, message: 'to the 100th' })
    // Room again after an unsubscribe.
    client.send({ action: 'unsubscribe', task_id: tasks[0]!.task_id })
    expect(await client.next()).toMatchObject({ type: 'unsubscribed' })
    client.send({ action: 'subscribe', task_id: last.task_id })
    expect(await client.next()).toMatchObject({ type: 'subscribed', data: { task_id: last.task_id } })
    client.close()
  })

  test('level filter: this level and above, and broadcasted counts only accepting connections', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const all = await watch(server, task.task_id)
    const warnings = await watch(server, task.task_id, '?level=warning')
    expect((await sendLog(server, sub, { level: 'debug', message: 'd' })).broadcasted).toBe(1)
    expect((await sendLog(server, sub, { level: 'info', message: 'i' })).broadcasted).toBe(1)
    expect((await sendLog(server, sub, { level: 'warning', message: 'w' })).broadcasted).toBe(2)
    expect((await sendLog(server, sub, { level: 'error', message: 'e' })).broadcasted).toBe(2)
    expect((await all.logs(4)).map((l) => l.message)).toEqual(['d', 'i', 'w', 'e'])
    expect((await warnings.logs(2)).map((l) => l.message)).toEqual(['w', 'e'])
    all.close()
    warnings.close()
  })

  test('replay with history=n and with since, then live; recovered says whether history was complete', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await sendLog(server, sub, { level: 'info', message: `m${i}` })).id)

    const last2 = await WsClient.connect(streamUrl(task.task_id, '?history=2'))
    expect(await last2.next()).toMatchObject({ type: 'subscribed', data: { task_id: task.task_id } })
    expect((await last2.logs(2)).map((l) => l.id)).toEqual(ids.slice(3))

    const resumed = await WsClient.connect(streamUrl(task.task_id, `?since=${ids[1]}`))
    expect(await resumed.next()).toMatchObject({ type: 'subscribed', data: { task_id: task.task_id, recovered: true } })
    expect((await resumed.logs(3)).map((l) => l.id)).toEqual(ids.slice(2))

    const live = await sendLog(server, sub, { level: 'info', message: 'live' })
    expect((await last2.logs(1))[0].id).toBe(live.id)
    expect((await resumed.logs(1))[0].id).toBe(live.id)
    last2.close()
    resumed.close()
  })

  test('invalid stream options are refused with an error frame and 1008', async () => {
    const task = await createTask(server)
    const client = await WsClient.connect(streamUrl(task.task_id, '?level=loud'))
    expect((await client.next()).type).toBe('error')
    expect((await client.closed).code).toBe(1008)
  })

  test('a subtask status change reaches subscribers as a status frame', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!
    const client = await watch(server, task.task_id, '?level=error')
    await fetch(`${server.url}/api/v1/subtasks/${sub.subtask_id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'in_progress', worker_id: 'w1', worker_name: 'builder-1' }),
    })
    expect((await client.nextOfType('status')).data).toEqual({
      task_id: task.task_id,
      subtask_id: sub.subtask_id,
      status: 'in_progress',
      task_status: 'in_progress',
      worker_name: 'builder-1',
    })
    // Logs carry the worker assignment.
    await sendLog(server, sub.subtask_id, { level: 'error', message: 'boom' })
    expect((await client.logs(1))[0]).toMatchObject({ worker_id: 'w1', worker_name: 'builder-1' })
    client.close()
  })

  test('batch ingest: all or nothing, ids in order, delivered in order', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const client = await watch(server, task.task_id)
    const bad = await post(`${server.url}/api/v1/subtasks/${sub}/logs`, {
      logs: [
        { level: 'info', message: 'ok' },
        { level: 'loud', message: 'bad' },
      ],
    })
    expect(bad.status).toBe(422)
    expect((await bad.json()).details[0].path).toBe('/logs/1/level')
    const res = await post(`${server.url}/api/v1/subtasks/${sub}/logs`, {
      logs: Array.from({ length: 50 }, (_, i) => ({ level: 'info', message: `b${i}` })),
    })
    expect(res.status).toBe(201)
    const ack = await res.json()
    expect(ack).toMatchObject({ success: true, accepted: 50, broadcasted: 1 })
    const logs = await client.logs(50)
    expect(logs.map((l) => l.message)).toEqual(Array.from({ length: 50 }, (_, i) => `b${i}`))
    expect(logs[0].id).toBe(ack.first_id)
    expect(logs[49].id).toBe(ack.last_id)
    const history = await (await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs?limit=1000`)).json()
    expect(history.count).toBe(50) // the rejected batch stored nothing
    client.close()
  })
})

describe('slow readers', () => {
  test('a reader that stops reading is closed with 1013 and can resume with since, without gaps', async () => {
    const server = await startServer({ env: { WS_BACKPRESSURE_BYTES: String(256 * 1024) } })
    try {
      const task = await createTask(server)
      const sub = task.subtasks[0]!.subtask_id
      const slow = await watch(server, task.task_id)
      const fast = await watch(server, task.task_id)
      ;(slow.socket as WebSocket & { pause(): boolean }).pause()
      // ~24 MB at ~6 MB/s: more than the kernel's socket buffers and the server's limit together.
      const big = 'x'.repeat(60_000)
      for (let batch = 0; batch < 80; batch++) {
        const res = await post(`${server.url}/api/v1/subtasks/${sub}/logs`, {
          logs: Array.from({ length: 5 }, (_, i) => ({ level: 'info', message: `${batch * 5 + i} ${big}` })),
        })
        expect(res.status).toBe(201)
        await fast.logs(5, 10_000)
        await Bun.sleep(50)
      }
      ;(slow.socket as WebSocket & { resume(): boolean }).resume()
      const closed = await slow.closed
      expect(closed.code).toBe(1013)
      const metrics = await (await fetch(`${server.url}/metrics`)).text()
      expect(metrics).toContain('\ntasklog_slow_readers_closed_total{transport="websocket"} 1\n')
      // What arrived before the close is gap-free; resuming from its last id gets the rest.
      const got = slow.frames.filter((f) => f.type === 'log').map((f) => Number(f.data.message.split(' ')[0]))
      expect(got).toEqual(got.map((_, i) => i))
      const lastId = slow.frames.filter((f) => f.type === 'log').at(-1)?.data.id
      const resumed = await WsClient.connect(
        `${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs${lastId ? `?since=${lastId}` : '?history=10000'}`,
      )
      await resumed.nextOfType('subscribed')
      const rest = (await resumed.logs(400 - got.length, 10_000)).map((l) => Number(l.message.split(' ')[0]))
      expect([...got, ...rest]).toEqual(Array.from({ length: 400 }, (_, i) => i))
      resumed.close()
      fast.close()
    } finally {
      await server.stop()
    }
  }, 30_000)
})

describe('dead peers', () => {
  test('a peer that stops answering is pinged, then dropped with its subscription; a live one stays', async () => {
    const server = await startServer({ env: { WS_IDLE_TIMEOUT_SECONDS: '5' } })
    try {
      const task = await createTask(server)
      const sub = task.subtasks[0]!.subtask_id
      // A peer whose machine went away: its TCP connection stays open, but it never answers a ping.
      const seen: number[] = []
      let dropped!: () => void
      const gone = new Promise<void>((resolve) => (dropped = resolve))
      await Bun.connect({
        hostname: '127.0.0.1',
        port: Number(new URL(server.url).port),
        socket: {
          open(socket) {
            socket.write(
              `GET /api/v1/ws/tasks/${task.task_id}/logs HTTP/1.1\r\nHost: tasklog\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
            )
          },
          data: (_socket, bytes) => void seen.push(bytes[0]!),
          close: () => dropped(),
        },
      })
      const live = await watch(server, task.task_id) // Bun's client answers pings
      expect((await sendLog(server, sub, { level: 'info', message: 'both' })).broadcasted).toBe(2)
      await gone
      expect(seen).toContain(0x89) // a ping frame (FIN + opcode 9) before the drop
      expect((await sendLog(server, sub, { level: 'info', message: 'one' })).broadcasted).toBe(1)
      expect((await live.logs(2)).map((l) => l.message)).toEqual(['both', 'one'])
      expect(await (await fetch(`${server.url}/metrics`)).text()).toContain('\ntasklog_websocket_connections 1\n')
      live.close()
    } finally {
      await server.stop()
    }
  }, 30_000)
})

describe.each(STORES)('resuming after history lost logs (%s history)', (store) => {
  // Three logs per task, each kept one second.
  let server: TestServer
  beforeAll(async () => {
    const env = { LOG_HISTORY_MAX: '3', LOG_TTL_SECONDS: '1' }
    server = await startServer({ redisUrl: redisUrl(store), env })
  })
  afterAll(() => server.stop())

  /** Resumes a task's stream after `since`: the subscribed frame's data, then the replayed messages. */
  async function resume(taskId: string, since: string, n: number) {
    const client = await WsClient.connect(`${server.wsUrl}/api/v1/ws/tasks/${taskId}/logs?since=${since}`)
    const subscribed = (await client.nextOfType('subscribed')).data
    const messages = (await client.logs(n)).map((l) => l.message)
    client.close()
    return { subscribed, messages }
  }

  async function logFive(subtaskId: string): Promise<string[]> {
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await sendLog(server, subtaskId, { level: 'info', message: `m${i}` })).id)
    return ids
  }

  test('after the count cap trimmed logs it had not seen: recovered false, then what is kept', async () => {
    const task = await createTask(server)
    const ids = await logFive(task.subtasks[0]!.subtask_id)
    expect(await resume(task.task_id, ids[0]!, 3)).toEqual({
      subscribed: { task_id: task.task_id, recovered: false },
      messages: ['m2', 'm3', 'm4'],
    })
    // Only m0 and m1 were trimmed: resuming after m1 misses nothing.
    expect(await resume(task.task_id, ids[1]!, 3)).toEqual({
      subscribed: { task_id: task.task_id, recovered: true },
      messages: ['m2', 'm3', 'm4'],
    })
  })

  test('after logs it had not seen expired: recovered false, and nothing to replay', async () => {
    const task = await createTask(server)
    const ids = await logFive(task.subtasks[0]!.subtask_id)
    await Bun.sleep(1_300)
    // Resuming after m3 misses m4, which expired.
    expect(await resume(task.task_id, ids[3]!, 0)).toEqual({
      subscribed: { task_id: task.task_id, recovered: false },
      messages: [],
    })
  })
})
