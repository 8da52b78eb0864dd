/**
 * Request logs as operators read them: the server runs as a process of its own and its stdout
 * is parsed line by line.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { connect } from 'node:net'
import { startExample } from './support/example-process'
import { startServerProcess, type ServerProcess } from './support/server-process'
import { WsClient } from './support/server'
import { startRedis } from './support/redis-server'
import { Elysia } from 'elysia'
import pino from 'pino'
import { SignJWT } from 'jose'
import { requestLog } from '../src/http/request-log'
import { requestInfo } from '../src/http/request-info'
import { Metrics } from '../src/metrics'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

interface Line {
  level: string
  time: string
  msg: string
  [field: string]: unknown
}

/** Every line the server printed, each of which must be a JSON object. */
const lines = (server: ServerProcess): Line[] =>
  server.proc
    .stdout()
    .split('\n')
    .filter(Boolean)
    .map((text) => JSON.parse(text))

/** The access lines whose URL starts with `url`, once `count` of them have been printed. */
async function accessLines(server: ServerProcess, url: string, count = 1): Promise<Line[]> {
  const matching = () => lines(server).filter((l) => l.msg === 'request' && String(l.url).startsWith(url))
  for (let i = 0; i < 250 && matching().length < count; i++) await Bun.sleep(20)
  return matching()
}

const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })

/** The response head of a WebSocket upgrade, read from a raw socket. */
function upgradeHead(url: string, headers: Record<string, string>): Promise<string> {
  const { hostname, port, pathname, search } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      const lines = [
        `GET ${pathname}${search} HTTP/1.1`,
        `Host: ${hostname}:${port}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version: 13',
        ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
      ]
      socket.write(lines.join('\r\n') + '\r\n\r\n')
    })
    let text = ''
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1')
      if (text.includes('\r\n\r\n')) {
        socket.destroy()
        resolve(text.slice(0, text.indexOf('\r\n\r\n')))
      }
    })
    socket.on('error', reject)
  })
}

describe('access log (JSON, the default when stdout is not a terminal)', () => {
  let server: ServerProcess
  let task: { task_id: string; subtasks: { subtask_id: string }[] }
  beforeAll(async () => {
    server = await startServerProcess()
    task = await (await postJson(`${server.url}/api/v1/tasks`, { description: 'observed' })).json()
  })
  afterAll(async () => {
    await server.stop()
  })

  test('the start-up line is a JSON line of the same logger', () => {
    const [first] = lines(server)
    expect(first).toMatchObject({ level: 'info', msg: expect.stringContaining('tasklog listening on http://127.0.0.1:') })
    expect(Date.parse(first!.time)).toBeGreaterThan(Date.now() - 60_000)
  })

  test("one line per request: method, route, URL, status, duration and the client's X-Request-Id, echoed", async () => {
    const subtask = task.subtasks[0]!.subtask_id
    const res = await postJson(
      `${server.url}/api/v1/subtasks/${subtask}/log`,
      { level: 'info', message: 'hello' },
      {
        'x-request-id': 'trace-42 from the worker',
      },
    )
    expect(res.status).toBe(201)
    expect(res.headers.get('x-request-id')).toBe('trace-42 from the worker')
    const [line, ...more] = await accessLines(server, `/api/v1/subtasks/${subtask}/log`)
    expect(more).toEqual([])
    expect(line).toEqual({
      level: 'info',
      time: expect.any(String),
      msg: 'request',
      method: 'POST',
      route: '/api/v1/subtasks/:subtask_id/log',
      url: `/api/v1/subtasks/${subtask}/log`,
      status: 201,
      ms: expect.any(Number),
      request_id: 'trace-42 from the worker',
    })
    expect(line!.ms as number).toBeGreaterThan(0)
  })

  test('without a valid X-Request-Id a new id is made, echoed and logged; errors are logged with their status', async () => {
    const ids: string[] = []
    for (const given of [undefined, 'x'.repeat(129)]) {
      const res = await fetch(`${server.url}/api/v1/tasks/not-a-task-id`, { headers: given ? { 'x-request-id': given } : {} })
      expect(res.status).toBe(422)
      const id = res.headers.get('x-request-id')!
      expect(id).toMatch(UUID)
      ids.push(id)
    }
    expect(ids[0]).not.toBe(ids[1])
    const logged = await accessLines(server, '/api/v1/tasks/not-a-task-id', 2)
    expect(logged.map((l) => [l.route, l.status, l.request_id])).toEqual(ids.map((id) => ['/api/v1/tasks/:task_id', 422, id]))
    // An unknown route is logged too, with its URL and no route pattern.
    const missing = await fetch(`${server.url}/no/such/route`)
    expect(missing.status).toBe(404)
    const [line] = await accessLines(server, '/no/such/route')
    expect(line).toMatchObject({ method: 'GET', status: 404, request_id: missing.headers.get('x-request-id') })
    expect(line).not.toHaveProperty('route')
  })

  test('a ?token= never reaches the log: its value is redacted from the URL', async () => {
    const secret = 'eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.s3cr3t-signature'
    const res = await fetch(`${server.url}/api/v1/tasks/${task.task_id}?a=1&token=${secret}&b=2`)
    expect(res.status).toBe(200)
    const [line] = await accessLines(server, `/api/v1/tasks/${task.task_id}?`)
    expect(line!.url).toBe(`/api/v1/tasks/${task.task_id}?a=1&token=[redacted]&b=2`)
    expect(server.proc.stdout()).not.toContain('s3cr3t')
  })

  test('a WebSocket is logged once, when it opens, as 101 with its request id, also echoed in the upgrade answer', async () => {
    const url = `${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?token=ws-secret-value`
    const head = await upgradeHead(url, { 'X-Request-Id': 'ws-upgrade-1' })
    expect(head).toStartWith('HTTP/1.1 101')
    expect(head.toLowerCase()).toContain('x-request-id: ws-upgrade-1')
    const watcher = await WsClient.connect(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?level=warning`)
    await watcher.nextOfType('subscribed')
    watcher.send({ action: 'ping' })
    await watcher.nextOfType('pong')
    watcher.close()
    await watcher.closed
    const logged = await accessLines(server, `/api/v1/ws/tasks/${task.task_id}/logs`, 2)
    expect(logged.map((l) => [l.method, l.route, l.status, l.url])).toEqual([
      ['GET', '/api/v1/ws/tasks/:task_id/logs', 101, `/api/v1/ws/tasks/${task.task_id}/logs?token=[redacted]`],
      ['GET', '/api/v1/ws/tasks/:task_id/logs', 101, `/api/v1/ws/tasks/${task.task_id}/logs?level=warning`],
    ])
    expect(logged[0]!.request_id).toBe('ws-upgrade-1')
    expect(server.proc.stdout()).not.toContain('ws-secret-value')
  })

  test('an SSE stream is logged once, when it opens, however many events it carries', async () => {
    const controller = new AbortController()
    const res = await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs/stream`, { signal: controller.signal })
    expect(res.status).toBe(200)
    const reader = res.body!.getReader()
    const subtask = task.subtasks[0]!.subtask_id
    for (let i = 0; i < 3; i++)
      await postJson(`${server.url}/api/v1/subtasks/${subtask}/log`, { level: 'info', message: `e${i}` })
    let text = ''
    while (!text.includes('e2')) text += new TextDecoder().decode((await reader.read()).value)
    controller.abort()
    const logged = await accessLines(server, `/api/v1/tasks/${task.task_id}/logs/stream`)
    await Bun.sleep(200)
    expect(await accessLines(server, `/api/v1/tasks/${task.task_id}/logs/stream`)).toHaveLength(1)
    expect(logged[0]).toMatchObject({
      route: '/api/v1/tasks/:task_id/logs/stream',
      status: 200,
      request_id: res.headers.get('x-request-id'),
    })
  })
})

describe('LOG_LEVEL and LOG_FORMAT', () => {
  test('LOG_LEVEL=warn drops the start-up line and answered requests, keeps warnings and failed requests', async () => {
    const redis = await startRedis()
    const port = await freePort()
    const server = startExample(['bun', 'src/index.ts'], {
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: 'sqlite://:memory:',
      REDIS_URL: redis.url,
      STORE_TIMEOUT_MS: '500',
      LOG_LEVEL: 'warn',
    })
    try {
      const url = `http://127.0.0.1:${port}`
      let ready = false
      for (let i = 0; i < 300 && !ready; i++) {
        ready = await fetch(`${url}/health`).then(
          (r) => r.ok,
          () => false,
        )
        if (!ready) await Bun.sleep(50)
      }
      expect(ready).toBe(true)
      const task = await (await postJson(`${url}/api/v1/tasks`, { description: 'quiet' })).json()
      const log = `${url}/api/v1/subtasks/${task.subtasks[0].subtask_id}/log`
      expect((await postJson(log, { level: 'info', message: 'stored' })).status).toBe(201)
      await redis.stop()
      const failed = await postJson(log, { level: 'info', message: 'not stored' }, { 'x-request-id': 'during-outage' })
      expect(failed.status).toBe(503)
      await server.waitFor('during-outage')
      const printed = server
        .stdout()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
      expect(printed.every((l) => l.level === 'warn' || l.level === 'error')).toBe(true)
      expect(printed).toContainEqual(expect.objectContaining({ msg: 'request', status: 503, request_id: 'during-outage' }))
      expect(printed).toContainEqual(expect.objectContaining({ level: 'warn', msg: expect.stringContaining('unavailable') }))
      expect(printed.filter((l) => l.msg === 'request')).toHaveLength(1)
    } finally {
      await server.stop('SIGKILL')
      await redis.stop()
    }
  })

  test('an invalid LOG_LEVEL stops start-up with one line naming it', async () => {
    const result = await startExample(['bun', 'src/index.ts'], { LOG_LEVEL: 'verbose' }).stop()
    expect(result.code).toBe(1)
    expect(result.stderr.trim()).toBe('tasklog: LOG_LEVEL=verbose is invalid: expected one of debug, info, warn, error')
  })

  test('LOG_FORMAT=pretty writes one compact human line per request', async () => {
    const server = await startServerProcess({ LOG_FORMAT: 'pretty' })
    try {
      const res = await postJson(`${server.url}/api/v1/tasks`, { description: 'pretty' }, { 'x-request-id': 'pretty-1' })
      expect(res.status).toBe(201)
      await server.proc.waitFor('request_id=pretty-1')
      const text = server.proc.stdout()
      expect(text).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  tasklog listening on http:\/\/127\.0\.0\.1:\d+ · /)
      expect(text).toMatch(/\n\d\d:\d\d:\d\d\.\d{3} INFO  POST \/api\/v1\/tasks 201 [\d.]+ ms request_id=pretty-1\n/)
      expect(text).not.toContain('{')
    } finally {
      await server.stop()
    }
  })
})

describe('the token subject', () => {
  test("whoever verifies a request's token sets its sub, and the access line carries it", async () => {
    const written: string[] = []
    const logger = pino({ base: undefined }, { write: (line: string) => void written.push(line) })
    const metrics = new Metrics({ subscriptions: 0, framesSent: 0, interruptions: 0 }, { usedMemory: async () => 0 })
    const app = new Elysia()
      .use(requestLog(metrics, logger))
      .onBeforeHandle(({ set, headers }) => {
        if (headers.authorization) requestInfo(set)!.sub = 'worker-7'
      })
      .get('/whoami', () => 'ok')
    await app.handle(new Request('http://localhost/whoami', { headers: { authorization: 'Bearer x' } }))
    await app.handle(new Request('http://localhost/whoami'))
    const [withToken, without] = written.map((line) => JSON.parse(line))
    expect(withToken).toMatchObject({ route: '/whoami', status: 200, sub: 'worker-7' })
    expect(without).not.toHaveProperty('sub')
    expect(written.join('')).not.toContain('Bearer')
  })
})

async function freePort(): Promise<number> {
  const server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response() })
  const port = server.port!
  await server.stop(true)
  return port
}

describe('access log in token mode', () => {
  test("each line names the token's subject, never the token, whether it came in a header or ?token=", async () => {
    const secret = 'request-log-secret-at-least-32-bytes-long'
    const server = await startServerProcess({ AUTH_SECRET: secret })
    try {
      const key = new TextEncoder().encode(secret)
      const sign = (sub: string) =>
        new SignJWT({ scope: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(key)
      const orchestrator = await sign('orchestrator-1')
      const created = await postJson(
        `${server.url}/api/v1/tasks`,
        { description: 'signed' },
        { authorization: `Bearer ${orchestrator}` },
      )
      expect(created.status).toBe(201)
      const task = await created.json()
      const viewer = await sign('viewer-7')
      const res = await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs?token=${viewer}`)
      expect(res.status).toBe(401) // ?token= is for streams only
      const controller = new AbortController()
      const sse = await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs/stream?token=${viewer}`, {
        signal: controller.signal,
      })
      expect(sse.status).toBe(200)
      controller.abort()
      const [create] = await accessLines(server, '/api/v1/tasks')
      expect(create).toMatchObject({ method: 'POST', status: 201, sub: 'orchestrator-1' })
      const [stream] = await accessLines(server, `/api/v1/tasks/${task.task_id}/logs/stream`)
      expect(stream).toMatchObject({
        status: 200,
        sub: 'viewer-7',
        url: `/api/v1/tasks/${task.task_id}/logs/stream?token=[redacted]`,
      })
      expect(server.proc.stdout()).not.toContain(viewer)
      expect(server.proc.stdout()).not.toContain(orchestrator)
    } finally {
      await server.stop()
    }
  })
})
