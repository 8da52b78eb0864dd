/**
 * Access control against a real server: token mode over every route and both streams (a matrix
 * of tokens), minting never wider, cross-site origins and CORS preflights, the connection limit,
 * token expiry on open streams, and local mode from loopback and from another network namespace.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SignJWT, decodeJwt } from 'jose'
import { startRedis, type RedisServer } from './support/redis-server'
import { WsClient, json, startServer, type TestServer } from './support/server'
import type { Task } from '../src/schemas/task'
import { loadConfig } from '../src/config'
import { Tokens } from '../src/auth/tokens'
import { haveChromium, launchChromium } from './support/browser'

const SECRET = 'test-secret-that-is-at-least-32-bytes-long'
const OTHER_SECRET = 'another-secret-that-is-at-least-32-bytes-long'
const SCOPES = ['tasks:read', 'tasks:write', 'logs:read', 'logs:write', 'admin'] as const
type Scope = (typeof SCOPES)[number]

/** A token signed here, independently of the server's own signing. */
async function sign(
  claims: { scope: string; tasks?: string[]; sub?: string },
  options: { secret?: string; expiresIn?: number } = {},
): Promise<string> {
  const { sub = 'tester', ...rest } = claims
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT(rest)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + (options.expiresIn ?? 3600))
    .sign(new TextEncoder().encode(options.secret ?? SECRET))
}

const bearer = (token: string | undefined): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {})

function call(
  server: TestServer,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  return fetch(`${server.url}${path}`, {
    method,
    headers: { ...bearer(token), ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
}

async function createTaskAs(server: TestServer, token: string | undefined, description = 'Build then test'): Promise<Task> {
  const res = await call(server, 'POST', '/api/v1/tasks', token, { description })
  if (res.status !== 201) throw new Error(`create task: ${res.status} ${await res.text()}`)
  return json(res)
}

/** Opens a WebSocket and reports how it went: the first frame's type, or the close code when it closed before any frame. */
async function wsOutcome(url: string, headers?: Record<string, string>): Promise<{ frame?: string; close?: number }> {
  const socket = new WebSocket(url, headers ? ({ headers } as any) : undefined)
  return new Promise((resolve) => {
    socket.addEventListener('message', (e) => {
      resolve({ frame: JSON.parse(String(e.data)).type })
      socket.close()
    })
    socket.addEventListener('close', (e) => resolve({ close: e.code }))
  })
}

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => redis.stop())

describe('token mode: every route and stream against a matrix of tokens', () => {
  let server: TestServer
  let admin: string
  let task: Task
  let other: Task
  beforeAll(async () => {
    server = await startServer({ redisUrl: redis.url, env: { AUTH_SECRET: SECRET } })
    admin = await sign({ scope: 'admin' })
    task = await createTaskAs(server, admin)
    other = await createTaskAs(server, admin, 'Another task')
  })
  afterAll(() => server.stop())

  /** Each route: how to call it, the scope it needs, and whether it touches `task`. */
  interface Route {
    name: string
    scope: Scope | 'any'
    touchesTask: boolean
    /** The HTTP status of a call, or of a WebSocket: 200 for a first frame, the close code else. */
    run(token: string | undefined): Promise<{ status: number; response?: Response }>
  }
  const http = (method: string, path: () => string, body?: () => unknown) => async (token: string | undefined) => {
    const response = await call(server, method, path(), token, body?.())
    return { status: response.status, response }
  }
  const routes: Route[] = [
    {
      name: 'POST /tasks',
      scope: 'tasks:write',
      touchesTask: false,
      run: http(
        'POST',
        () => '/api/v1/tasks',
        () => ({ description: 'x' }),
      ),
    },
    { name: 'GET /tasks', scope: 'tasks:read', touchesTask: false, run: http('GET', () => '/api/v1/tasks') },
    { name: 'GET /tasks/{id}', scope: 'tasks:read', touchesTask: true, run: http('GET', () => `/api/v1/tasks/${task.task_id}`) },
    {
      name: 'GET /subtasks/{id}',
      scope: 'tasks:read',
      touchesTask: true,
      run: http('GET', () => `/api/v1/subtasks/${task.subtasks[0]!.subtask_id}`),
    },
    {
      name: 'PATCH /subtasks/{id}',
      scope: 'tasks:write',
      touchesTask: true,
      run: http(
        'PATCH',
        () => `/api/v1/subtasks/${task.subtasks[0]!.subtask_id}`,
        () => ({ worker_name: 'w1' }),
      ),
    },
    {
      name: 'POST /subtasks/{id}/log',
      scope: 'logs:write',
      touchesTask: true,
      run: http(
        'POST',
        () => `/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`,
        () => ({ level: 'info', message: 'hi' }),
      ),
    },
    {
      name: 'POST /subtasks/{id}/logs',
      scope: 'logs:write',
      touchesTask: true,
      run: http(
        'POST',
        () => `/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/logs`,
        () => ({ logs: [{ level: 'info', message: 'hi' }] }),
      ),
    },
    {
      name: 'GET /tasks/{id}/logs',
      scope: 'logs:read',
      touchesTask: true,
      run: http('GET', () => `/api/v1/tasks/${task.task_id}/logs`),
    },
    {
      name: 'SSE /tasks/{id}/logs/stream?token=',
      scope: 'logs:read',
      touchesTask: true,
      async run(token) {
        const controller = new AbortController()
        const query = token ? `?token=${encodeURIComponent(token)}` : ''
        const response = await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs/stream${query}`, {
          signal: controller.signal,
        })
        if (response.status === 200) controller.abort()
        return { status: response.status, response: response.status === 200 ? undefined : response }
      },
    },
    {
      name: 'POST /tokens',
      scope: 'any',
      touchesTask: false,
      // Asks for the caller's own scopes and tasks: never wider, so any valid token may.
      async run(token) {
        let claims: { scope?: string; tasks?: string[] } = {}
        try {
          claims = decodeJwt(token!) as typeof claims
        } catch {}
        const body = { scopes: claims.scope?.split(' ') ?? ['logs:read'], task_ids: claims.tasks, ttl_seconds: 60 }
        const response = await call(server, 'POST', '/api/v1/tokens', token, body)
        return { status: response.status, response }
      },
    },
    { name: 'GET /metrics', scope: 'admin', touchesTask: false, run: http('GET', () => '/metrics') },
    {
      name: 'WebSocket ?token=',
      scope: 'logs:read',
      touchesTask: true,
      async run(token) {
        const query = token ? `?token=${encodeURIComponent(token)}` : ''
        const outcome = await wsOutcome(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs${query}`)
        return { status: outcome.frame === 'subscribed' ? 200 : outcome.close! }
      },
    },
  ]

  const OK: Record<string, number> = {
    'POST /tasks': 201,
    'POST /subtasks/{id}/log': 201,
    'POST /subtasks/{id}/logs': 201,
    'POST /tokens': 201,
  }
  const ok = (route: Route) => OK[route.name] ?? 200
  const isWs = (route: Route) => route.name.startsWith('WebSocket')
  const unauthorized = (route: Route) => (isWs(route) ? 4001 : 401)
  const forbidden = (route: Route) => (isWs(route) ? 4003 : 403)

  const badTokens: [string, () => Promise<string | undefined>, boolean][] = [
    ['no token', async () => undefined, false],
    ['a malformed token', async () => 'not-a-jwt', true],
    ['an expired token', () => sign({ scope: 'admin' }, { expiresIn: -60 }), true],
    ['a token signed with another secret', () => sign({ scope: 'admin' }, { secret: OTHER_SECRET }), true],
  ]

  for (const [label, make, given] of badTokens) {
    test(`${label}: 401 on every route (with WWW-Authenticate), WebSocket closed with 4001 before any frame`, async () => {
      const token = await make()
      for (const route of routes) {
        const { status, response } = await route.run(token)
        expect({ route: route.name, status }).toEqual({ route: route.name, status: unauthorized(route) })
        if (!response) continue
        const body = await json(response)
        expect(body.error).toBe('unauthorized')
        const challenge = response.headers.get('www-authenticate')!
        expect(challenge.startsWith('Bearer')).toBe(true)
        expect(challenge.includes('error="invalid_token"')).toBe(given)
      }
    })
  }

  for (const scope of SCOPES) {
    test(`a token with only ${scope}: allowed where that scope is needed, 403 (or 4003) elsewhere`, async () => {
      const token = await sign({ scope })
      for (const route of routes) {
        const allowed = route.scope === 'any' || scope === 'admin' || route.scope === scope
        const { status, response } = await route.run(token)
        expect({ route: route.name, status }).toEqual({ route: route.name, status: allowed ? ok(route) : forbidden(route) })
        if (!allowed && response) expect((await json(response)).error).toBe('forbidden')
      }
    })
  }

  test('a token limited to another task: 403 (or 4003) on this task; lists only its own task; cannot create tasks', async () => {
    const token = await sign({ scope: 'tasks:read tasks:write logs:read logs:write', tasks: [other.task_id] })
    for (const route of routes) {
      const { status } = await route.run(token)
      const expected =
        route.touchesTask || route.name === 'POST /tasks' ? forbidden(route) : route.scope === 'admin' ? 403 : ok(route)
      expect({ route: route.name, status }).toEqual({ route: route.name, status: expected })
    }
    const list = await json(await call(server, 'GET', '/api/v1/tasks', token))
    expect(list.tasks.map((t: Task) => t.task_id)).toEqual([other.task_id])
    // The same token on its own task works.
    const own = await call(server, 'POST', `/api/v1/subtasks/${other.subtasks[0]!.subtask_id}/log`, token, {
      level: 'info',
      message: 'ok',
    })
    expect(own.status).toBe(201)
  })

  test('a refused log is not stored', async () => {
    const fresh = await createTaskAs(server, admin)
    const reader = await sign({ scope: 'logs:read' })
    const res = await call(server, 'POST', `/api/v1/subtasks/${fresh.subtasks[0]!.subtask_id}/log`, reader, {
      level: 'info',
      message: 'no',
    })
    expect(res.status).toBe(403)
    const history = await json(await call(server, 'GET', `/api/v1/tasks/${fresh.task_id}/logs`, admin))
    expect(history.count).toBe(0)
  })

  test('WebSocket: the Authorization header works as ?token= does; subscribing to a task the token may not read is an error frame, the connection stays', async () => {
    const token = await sign({ scope: 'logs:read', tasks: [task.task_id] })
    const client = new WsClient(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?token=${token}`)
    await client.opened
    await client.nextOfType('subscribed')
    client.send({ action: 'subscribe', task_id: other.task_id })
    const error = await client.nextOfType('error')
    expect(error.data.code).toBe('forbidden')
    client.send({ action: 'ping' })
    await client.nextOfType('pong')
    client.close()

    const viaHeader = await wsOutcome(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs`, bearer(token))
    expect(viaHeader).toEqual({ frame: 'subscribed' })
    const otherTask = await wsOutcome(`${server.wsUrl}/api/v1/ws/tasks/${other.task_id}/logs`, bearer(token))
    expect(otherTask).toEqual({ close: 4003 })
  })

  test('public without a token: /health, /ready, /swagger, the viewer', async () => {
    for (const path of ['/health', '/ready', '/swagger', '/swagger/json', '/', `/tasks/${task.task_id}`]) {
      const res = await fetch(`${server.url}${path}`)
      expect({ path, status: res.status }).toEqual({ path, status: 200 })
    }
  })

  test('a token expiring while a WebSocket is open closes it with 4001; an SSE stream ends', async () => {
    const token = await sign({ scope: 'logs:read' }, { expiresIn: 2 })
    const client = new WsClient(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?token=${token}`)
    await client.opened
    await client.nextOfType('subscribed')
    const sse = await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs/stream?token=${token}`)
    expect(sse.status).toBe(200)
    const closed = await Promise.race([client.closed, Bun.sleep(10_000).then(() => ({ code: 0, reason: 'still open' }))])
    expect(closed.code).toBe(4001)
    // The stream ends (its body completes) rather than staying open.
    const body = await Promise.race([sse.text(), Bun.sleep(10_000).then(() => 'still open')])
    expect(body).not.toBe('still open')
  })
})

describe('minting', () => {
  let server: TestServer
  let task: Task
  let other: Task
  beforeAll(async () => {
    server = await startServer({ env: { AUTH_SECRET: SECRET } })
    const admin = await sign({ scope: 'admin' })
    task = await createTaskAs(server, admin)
    other = await createTaskAs(server, admin)
  })
  afterAll(() => server.stop())

  /** Every non-empty set of scopes. */
  const subsets: Scope[][] = []
  for (let mask = 1; mask < 1 << SCOPES.length; mask++) subsets.push(SCOPES.filter((_, i) => mask & (1 << i)))
  const effective = (scopes: Scope[]) => new Set<string>(scopes.includes('admin') ? SCOPES : scopes)

  test('a token never mints a wider one: every caller scope set against every requested set', async () => {
    let minted = 0
    for (const held of subsets) {
      const token = await sign({ scope: held.join(' ') })
      const mine = effective(held)
      for (const asked of subsets) {
        const res = await call(server, 'POST', '/api/v1/tokens', token, { scopes: asked, ttl_seconds: 60 })
        const narrower = [...effective(asked)].every((s) => mine.has(s))
        expect({ held, asked, status: res.status }).toEqual({ held, asked, status: narrower ? 201 : 403 })
        if (res.status !== 201) continue
        minted++
        const body = await json(res)
        const claims = decodeJwt(body.token)
        expect([...effective(String(claims.scope).split(' ') as Scope[])].every((s) => mine.has(s))).toBe(true)
        expect(claims.sub).toBe('tester')
      }
    }
    expect(minted).toBeGreaterThan(0)
  })

  test('tasks and expiry: a limited token mints only for its tasks, and never past its own expiry', async () => {
    const limited = await sign({ scope: 'logs:read logs:write', tasks: [task.task_id] }, { expiresIn: 600 })
    const mint = (body: object) =>
      call(server, 'POST', '/api/v1/tokens', limited, { scopes: ['logs:write'], ttl_seconds: 60, ...body })
    expect((await mint({})).status).toBe(403) // every task: wider
    expect((await mint({ task_ids: [task.task_id, other.task_id] })).status).toBe(403)
    expect((await mint({ task_ids: [other.task_id] })).status).toBe(403)
    expect((await mint({ ttl_seconds: 3600, task_ids: [task.task_id] })).status).toBe(403)
    const res = await mint({ task_ids: [task.task_id.toUpperCase()], sub: 'worker-1' })
    expect(res.status).toBe(201)
    const body = await json(res)
    expect(body).toMatchObject({ sub: 'worker-1', scopes: ['logs:write'], task_ids: [task.task_id] })
    // The minted token does what it says, and no more.
    const post = (t: Task) =>
      call(server, 'POST', `/api/v1/subtasks/${t.subtasks[0]!.subtask_id}/log`, body.token, {
        level: 'info',
        message: 'from worker',
      })
    expect((await post(task)).status).toBe(201)
    expect((await post(other)).status).toBe(403)
    expect((await call(server, 'GET', `/api/v1/tasks/${task.task_id}/logs`, body.token)).status).toBe(403)
  })

  test('without AUTH_SECRET there is nothing to sign with: a 403 saying to set it', async () => {
    const local = await startServer()
    try {
      const res = await call(local, 'POST', '/api/v1/tokens', undefined, { scopes: ['admin'], ttl_seconds: 60 })
      expect(res.status).toBe(403)
      expect((await json(res)).message).toContain('AUTH_SECRET')
    } finally {
      await local.stop()
    }
  })
})

describe('cross-site requests', () => {
  let server: TestServer
  let task: Task
  let token: string
  const LISTED = 'https://dash.example.com'
  beforeAll(async () => {
    server = await startServer({ env: { AUTH_SECRET: SECRET, CORS_ORIGINS: LISTED } })
    token = await sign({ scope: 'admin' })
    task = await createTaskAs(server, token)
  })
  afterAll(() => server.stop())

  const wsUrl = () => `${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?token=${token}`
  const sseUrl = () => `${server.url}/api/v1/tasks/${task.task_id}/logs/stream?token=${token}`

  test('WebSocket and SSE from another site: 403 before the upgrade; own origin, a listed one and none are accepted', async () => {
    const cross = { origin: 'https://evil.example' }
    // The upgrade request as a plain GET shows the status it is refused with.
    const refused = await fetch(wsUrl().replace('ws://', 'http://'), { headers: cross })
    expect(refused.status).toBe(403)
    expect((await json(refused)).error).toBe('forbidden')
    expect(await wsOutcome(wsUrl(), cross)).not.toEqual({ frame: 'subscribed' })
    const sse = await fetch(sseUrl(), { headers: cross })
    expect(sse.status).toBe(403)

    for (const headers of [{ origin: server.url }, { origin: LISTED }, undefined]) {
      expect(await wsOutcome(wsUrl(), headers)).toEqual({ frame: 'subscribed' })
      const controller = new AbortController()
      const ok = await fetch(sseUrl(), { headers, signal: controller.signal })
      expect(ok.status).toBe(200)
      controller.abort()
    }
  })

  test('a preflight from a listed origin is answered with CORS headers; from an unlisted one without', async () => {
    const preflight = (origin: string) =>
      fetch(`${server.url}/api/v1/tasks`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type',
        },
      })
    const listed = await preflight(LISTED)
    expect(listed.headers.get('access-control-allow-origin')).toBe(LISTED)
    expect(listed.headers.get('access-control-allow-headers')).toContain('authorization')
    const unlisted = await preflight('https://evil.example')
    expect(unlisted.headers.get('access-control-allow-origin')).toBeNull()
    // Actual requests from the listed origin carry the header too, refusals included, so its page can read them.
    const res = await call(server, 'GET', '/api/v1/tasks', token, undefined, { origin: LISTED })
    expect(res.headers.get('access-control-allow-origin')).toBe(LISTED)
    const refused = await call(server, 'GET', '/api/v1/tasks', undefined, undefined, { origin: LISTED })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('access-control-allow-origin')).toBe(LISTED)
  })
})

describe('MAX_CONNECTIONS_PER_CLIENT', () => {
  let server: TestServer
  let task: Task
  beforeAll(async () => {
    server = await startServer({ env: { AUTH_SECRET: SECRET, MAX_CONNECTIONS_PER_CLIENT: '2' } })
    task = await createTaskAs(server, await sign({ scope: 'admin' }))
  })
  afterAll(() => server.stop())

  test("a token's subject holds at most that many WebSocket and SSE streams; the next is a 429 before the upgrade; closing one frees a place", async () => {
    const alice = await sign({ scope: 'logs:read', sub: 'alice' })
    const bob = await sign({ scope: 'logs:read', sub: 'bob' })
    const ws = (token: string) => `${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?token=${token}`
    const first = new WsClient(ws(alice))
    await first.nextOfType('subscribed')
    const controller = new AbortController()
    const sse = await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs/stream?token=${alice}`, {
      signal: controller.signal,
    })
    expect(sse.status).toBe(200)

    const refused = await fetch(ws(alice).replace('ws://', 'http://'))
    expect(refused.status).toBe(429)
    expect(refused.headers.get('retry-after')).toBe('1')
    expect((await json(refused)).error).toBe('rate_limited')
    expect(await wsOutcome(ws(alice))).not.toEqual({ frame: 'subscribed' })
    // Another subject has its own count.
    expect(await wsOutcome(ws(bob))).toEqual({ frame: 'subscribed' })

    first.close()
    await first.closed
    let again = { frame: undefined as string | undefined }
    for (let i = 0; i < 50 && again.frame !== 'subscribed'; i++) {
      again = (await wsOutcome(ws(alice))) as typeof again
      if (again.frame !== 'subscribed') await Bun.sleep(100)
    }
    expect(again.frame).toBe('subscribed')
    controller.abort()
  })
})

describe('local mode (the default)', () => {
  test('loopback clients get every scope without a token, /metrics and streams included', async () => {
    const server = await startServer()
    try {
      const task = await createTaskAs(server, undefined)
      expect((await call(server, 'GET', '/metrics')).status).toBe(200)
      expect(await wsOutcome(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs`)).toEqual({ frame: 'subscribed' })
    } finally {
      await server.stop()
    }
  })

  /**
   * A client on another network: a namespace joined to this one by a veth pair, with private
   * addresses that exist only inside this machine. The server listens on the host side.
   */
  describe('from a non-loopback address (a network namespace)', () => {
    const ns = `tl20-${process.pid}`
    const hostIf = `tl20h${process.pid % 10000}`
    const HOST_ADDRESS = '10.231.20.1'
    let server: TestServer | undefined
    let refusedNamespace = ''

    const sh = (...cmd: string[]) => {
      const result = Bun.spawnSync(cmd, { stderr: 'pipe' })
      if (result.exitCode !== 0) throw new Error(`${cmd.join(' ')}: ${result.stderr.toString()}`)
    }
    beforeAll(async () => {
      try {
        sh('ip', 'netns', 'add', ns)
        sh('ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'tl20n', 'netns', ns)
        sh('ip', 'addr', 'add', `${HOST_ADDRESS}/30`, 'dev', hostIf)
        sh('ip', 'link', 'set', hostIf, 'up')
        sh('ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', '10.231.20.2/30', 'dev', 'tl20n')
        sh('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'tl20n', 'up')
        sh('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up')
      } catch (error) {
        refusedNamespace = (error as Error).message
      }
      server = await startServer({ hostname: refusedNamespace ? '127.0.0.1' : HOST_ADDRESS })
    })
    afterAll(async () => {
      await server?.stop()
      Bun.spawnSync(['ip', 'netns', 'del', ns])
      Bun.spawnSync(['ip', 'link', 'del', hostIf])
    })

    /** Runs a client in the namespace: each request's status, or the WebSocket's first frame type or close code. */
    async function fromNamespace(taskId: string, subtaskId: string): Promise<Record<string, unknown>> {
      const script = `
        const base = ${JSON.stringify(server!.url)}
        const out = {}
        const status = async (name, path, init) => { out[name] = (await fetch(base + path, init)).status }
        await status('health', '/health')
        await status('list', '/api/v1/tasks')
        await status('log', '/api/v1/subtasks/${subtaskId}/log', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"level":"info","message":"x"}' })
        await status('sse', '/api/v1/tasks/${taskId}/logs/stream')
        await status('metrics', '/metrics')
        const body = await (await fetch(base + '/api/v1/tasks')).json()
        out.message = body.message
        out.ws = await new Promise((resolve) => {
          const ws = new WebSocket(base.replace('http', 'ws') + '/api/v1/ws/tasks/${taskId}/logs')
          ws.onmessage = (e) => resolve(JSON.parse(e.data).type)
          ws.onerror = () => resolve('refused')
          ws.onclose = (e) => resolve(e.code)
        })
        console.log(JSON.stringify(out))
        process.exit(0)
      `
      const proc = Bun.spawn(['ip', 'netns', 'exec', ns, process.execPath, '-e', script], { stdout: 'pipe', stderr: 'pipe' })
      const [stdout, stderr, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ])
      if (code !== 0) throw new Error(`client in namespace failed: ${stderr}`)
      return JSON.parse(stdout)
    }

    test('a client from another address gets 403 forbidden saying to set AUTH_SECRET, on every API route and stream; /health stays public', async () => {
      if (refusedNamespace) {
        console.warn(`network namespace refused (${refusedNamespace}); the address rule is checked on Bun's own addresses`)
        return
      }
      // The task is made directly in the store: no client of this machine's loopback reaches this server.
      const task = await server!.tasks.createTask('made in the store', ['one'])
      const result = await fromNamespace(task.task_id, task.subtasks[0]!.subtask_id)
      expect(result).toMatchObject({ health: 200, list: 403, log: 403, sse: 403, metrics: 403, ws: 'refused' })
      expect(result.message).toContain('AUTH_SECRET')
      expect(result.message).toContain('AUTH_MODE=open')
      expect((await server!.logs.history.read(task.task_id, { limit: 10, order: 'asc' })).length).toBe(0)
    })

    test('AUTH_MODE=open lets the same client in', async () => {
      if (refusedNamespace) return
      const open = await startServer({ hostname: HOST_ADDRESS, env: { AUTH_MODE: 'open' } })
      const saved = server
      server = open
      try {
        const task = await open.tasks.createTask('made in the store', ['one'])
        const result = await fromNamespace(task.task_id, task.subtasks[0]!.subtask_id)
        expect(result).toMatchObject({ health: 200, list: 200, log: 201, sse: 200, metrics: 200, ws: 'subscribed' })
      } finally {
        server = saved
        await open.stop()
      }
    })
  })
})

describe('configuration and the token cache', () => {
  test('AUTH_SECRET shorter than 32 bytes, an unknown AUTH_MODE, token mode without a secret, a malformed origin stop start-up', () => {
    expect(() => loadConfig({ AUTH_SECRET: 'short' })).toThrow('AUTH_SECRET is too short')
    expect(() => loadConfig({ AUTH_MODE: 'none' })).toThrow('AUTH_MODE=none is invalid')
    expect(() => loadConfig({ AUTH_MODE: 'token' })).toThrow('AUTH_MODE=token needs AUTH_SECRET')
    expect(() => loadConfig({ CORS_ORIGINS: 'https://a.example/path' })).toThrow('CORS_ORIGINS')
    expect(loadConfig({})).toMatchObject({ authMode: 'local', corsOrigins: [], maxConnectionsPerClient: 10_000 })
    expect(loadConfig({ AUTH_SECRET: SECRET })).toMatchObject({ authMode: 'token' })
    expect(loadConfig({ CORS_ORIGINS: 'https://a.example, http://b.example:8080' }).corsOrigins).toEqual([
      'https://a.example',
      'http://b.example:8080',
    ])
  })

  test('a verified token is remembered until it expires, at most maxCached of them, the oldest forgotten first', async () => {
    const tokens = new Tokens(SECRET, 2)
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((sub) => sign({ scope: 'logs:read', sub })))
    expect(tokens.cached(a!)).toBeUndefined()
    const caller = await tokens.verify(a!)
    expect(tokens.cached(a!)).toBe(caller)
    await tokens.verify(b!)
    await tokens.verify(c!)
    expect(tokens.cached(a!)).toBeUndefined()
    expect(tokens.cached(c!)?.sub).toBe('c')
    const short = await sign({ scope: 'logs:read' }, { expiresIn: 1 })
    await tokens.verify(short)
    await Bun.sleep(1100)
    expect(tokens.cached(short)).toBeUndefined()
    await expect(tokens.verify(short)).rejects.toThrow('expired')
  })
})

describe('the web viewer in token mode (Chromium)', () => {
  test('asks for a token once when the API answers 401, then lists tasks and follows a task with it', async () => {
    if (!haveChromium) return
    const server = await startServer({ env: { AUTH_SECRET: SECRET } })
    const browser = await launchChromium()
    try {
      const admin = await sign({ scope: 'admin' })
      const task = await createTaskAs(server, admin, 'Seen through a token')
      const viewer = await sign({ scope: 'tasks:read logs:read', sub: 'viewer' })
      const page = await browser.newPage()
      const dialogs: string[] = []
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.type())
        void dialog.accept(viewer)
      })
      const sockets: string[] = []
      page.on('websocket', (ws) => sockets.push(ws.url()))
      await page.goto(server.url)
      await page.waitForSelector(`[data-task-id="${task.task_id}"]`, { timeout: 10_000 })
      expect(dialogs).toEqual(['prompt'])
      expect(await page.evaluate(() => sessionStorage.getItem('tasklog-token'))).toBe(viewer)
      // The list follows its tasks' status with the token asked for on this very page.
      const patched = await call(server, 'PATCH', `/api/v1/subtasks/${task.subtasks[0]!.subtask_id}`, admin, { status: 'failed' })
      expect(patched.status).toBe(200)
      await page.locator(`[data-task-id="${task.task_id}"] .status-failed`).waitFor({ timeout: 10_000 })

      await page.goto(`${server.url}/tasks/${task.task_id}`)
      await page.getByText('Seen through a token').first().waitFor({ timeout: 10_000 })
      const res = await call(server, 'POST', `/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`, admin, {
        level: 'info',
        message: 'a line through the token',
      })
      expect(res.status).toBe(201)
      await page.getByText('a line through the token').waitFor({ timeout: 10_000 })
      // The token was kept for the tab: no second question, and the stream carried it.
      expect(dialogs).toEqual(['prompt'])
      expect(sockets.some((url) => new URL(url).searchParams.get('token') === viewer)).toBe(true)
    } finally {
      await browser.close()
      await server.stop()
    }
  })
})

describe("Swagger UI's Authorize in token mode (Chromium)", () => {
  test('a token entered in Authorize is sent by "Try it out": the log is stored', async () => {
    if (!haveChromium) return
    const server = await startServer({ env: { AUTH_SECRET: SECRET } })
    const browser = await launchChromium()
    try {
      const admin = await sign({ scope: 'admin' })
      const task = await createTaskAs(server, admin)
      const worker = await sign({ scope: 'logs:write', tasks: [task.task_id] })
      const page = await browser.newPage()
      await page.goto(`${server.url}/swagger#/logs/postApiV1SubtasksBySubtask_idLog`)
      await page.locator('button.authorize').first().click({ timeout: 15_000 })
      await page.locator('.auth-container input').first().fill(worker)
      await page.locator('.auth-btn-wrapper button.authorize').click()
      await page.locator('.auth-btn-wrapper button.btn-done').click()
      const operation = page.locator('#operations-logs-postApiV1SubtasksBySubtask_idLog')
      await operation.locator('.try-out__btn').click({ timeout: 15_000 })
      await operation.locator('tr[data-param-name="subtask_id"] input').fill(task.subtasks[0]!.subtask_id)
      await operation.locator('button.execute').click()
      const status = operation.locator('.live-responses-table tbody .response-col_status').first()
      await status.waitFor({ timeout: 10_000 })
      expect((await status.innerText()).trim()).toBe('201')
      const history = await json(await call(server, 'GET', `/api/v1/tasks/${task.task_id}/logs`, admin))
      expect(history.count).toBe(1)
    } finally {
      await browser.close()
      await server.stop()
    }
  }, 60_000)
})

describe('the token command', () => {
  const run = (args: string[], env: Record<string, string>) =>
    Bun.spawnSync([process.execPath, 'run', 'src/index.ts', 'token', ...args], {
      cwd: `${import.meta.dir}/..`,
      env: { PATH: process.env.PATH!, DATABASE_URL: 'sqlite://:memory:', ...env },
    })

  test('prints a token signed with AUTH_SECRET that the server accepts, with the scopes, tasks, subject and lifetime asked for', async () => {
    const task = '01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f'
    const result = run(['--scope', 'logs:read,logs:write', '--ttl', '2h', '--tasks', task.toUpperCase(), '--sub', 'ci'], {
      AUTH_SECRET: SECRET,
    })
    expect(result.exitCode).toBe(0)
    const token = result.stdout.toString().trim()
    const caller = await new Tokens(SECRET).verify(token)
    expect(caller.sub).toBe('ci')
    expect([...caller.tasks!]).toEqual([task])
    const claims = decodeJwt(token)
    expect(claims.scope).toBe('logs:read logs:write')
    expect(claims.exp! - claims.iat!).toBe(7200)
  })

  test('without AUTH_SECRET, or with an unknown scope or lifetime, it says what to fix and prints no token', () => {
    const noSecret = run(['--scope', 'admin', '--ttl', '30d'], {})
    expect(noSecret.exitCode).toBe(1)
    expect(noSecret.stderr.toString()).toContain('set AUTH_SECRET')
    for (const args of [
      ['--scope', 'root', '--ttl', '30d'],
      ['--scope', 'admin', '--ttl', 'forever'],
    ]) {
      const result = run(args, { AUTH_SECRET: SECRET })
      expect(result.exitCode).toBe(2)
      expect(result.stdout.toString()).toBe('')
      expect(result.stderr.toString()).toContain('usage:')
    }
  })
})
