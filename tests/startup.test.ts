import { describe, expect, test } from 'bun:test'
import { createClient } from 'redis'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../src/config'
import { subscribersKey } from '../src/logs/redis/keys'
import { startRedis } from './support/redis-server'
import { WsClient } from './support/server'

const ROOT = join(import.meta.dir, '..')

function freePort(): number {
  const server = Bun.serve({ port: 0, fetch: () => new Response() })
  const port = server.port!
  server.stop(true)
  return port
}

/** Runs `bun run src/index.ts` with the given environment. */
function start(env: Record<string, string>) {
  return Bun.spawn(['bun', 'run', 'src/index.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  })
}

async function readLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader()
  let text = ''
  while (!text.includes('\n')) {
    const { value, done } = await reader.read()
    if (done) break
    text += new TextDecoder().decode(value)
  }
  reader.releaseLock()
  return text.split('\n')[0]!
}

describe('configuration', () => {
  test('defaults are the documented ones', () => {
    expect(loadConfig({})).toMatchObject({
      port: 8000,
      host: '0.0.0.0',
      redisUrl: undefined,
      databaseUrl: 'sqlite://data/tasklog.sqlite',
      logTtlSeconds: 3600,
      logHistoryMax: 10_000,
      maxMessageBytes: 65_536,
      maxMetadataBytes: 16_384,
      maxBatch: 1000,
      rateLimit: { perSecond: 10_000, burst: 100_000 },
    })
  })

  test('the burst defaults to 10x the rate; a rate of 0 turns the limit off', () => {
    expect(loadConfig({ RATE_LIMIT_LOGS_PER_SECOND: '50' }).rateLimit).toEqual({ perSecond: 50, burst: 500 })
    expect(loadConfig({ RATE_LIMIT_LOGS_PER_SECOND: '50', RATE_LIMIT_BURST: '60' }).rateLimit).toEqual({
      perSecond: 50,
      burst: 60,
    })
    expect(loadConfig({ RATE_LIMIT_LOGS_PER_SECOND: '0' }).rateLimit.perSecond).toBe(0)
  })

  test.each([
    ['PORT', 'abc', 'PORT=abc is invalid: expected a whole number from 0 to 65535'],
    ['PORT', '70000', 'PORT=70000 is invalid'],
    [
      'DATABASE_URL',
      'mysql://x',
      'DATABASE_URL=mysql://x is invalid: expected a URL starting with sqlite://, postgres://, postgresql://',
    ],
    ['REDIS_URL', 'localhost:6379', 'REDIS_URL=localhost:6379 is invalid'],
    ['LOG_TTL_SECONDS', '0', 'LOG_TTL_SECONDS=0 is invalid'],
    ['MAX_BATCH', '-5', 'MAX_BATCH=-5 is invalid'],
    ['RATE_LIMIT_LOGS_PER_SECOND', '1.5', 'RATE_LIMIT_LOGS_PER_SECOND=1.5 is invalid'],
    ['RATE_LIMIT_BURST', '0', 'RATE_LIMIT_BURST=0 is invalid'],
    [
      'HOST',
      'bad_host!',
      'HOST=bad_host! is invalid: expected an IPv4 or IPv6 address or a host name (letters, digits, dots and hyphens)',
    ],
    ['HOST', 'http://localhost', 'HOST=http://localhost is invalid'],
    ['HOST', '-bad.example', 'HOST=-bad.example is invalid'],
  ])('%s=%s is refused', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(message)
  })

  test.each(['127.0.0.1', '::', '::1', 'localhost', 'my-host.internal'])('HOST=%s is accepted', (host) => {
    expect(loadConfig({ HOST: host }).host).toBe(host)
  })

  test('a bad value stops start-up with one line naming the variable, exit code 1', async () => {
    const proc = start({ PORT: 'abc' })
    expect(await proc.exited).toBe(1)
    const stderr = await new Response(proc.stderr).text()
    expect(stderr.trim()).toBe('tasklog: PORT=abc is invalid: expected a whole number from 0 to 65535')
  })

  test('a bad HOST stops start-up with one line naming it, not a stack trace', async () => {
    const proc = start({ HOST: 'bad_host!' })
    expect(await proc.exited).toBe(1)
    const stderr = await new Response(proc.stderr).text()
    expect(stderr.trim()).toBe(
      'tasklog: HOST=bad_host! is invalid: expected an IPv4 or IPv6 address or a host name (letters, digits, dots and hyphens)',
    )
  })
})

describe('the server process', () => {
  test('a port in use stops start-up with one line saying so, exit code 1', async () => {
    const busy = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response() })
    try {
      const proc = start({ PORT: String(busy.port), HOST: '127.0.0.1', DATABASE_URL: 'sqlite://:memory:' })
      expect(await proc.exited).toBe(1)
      const stderr = await new Response(proc.stderr).text()
      expect(stderr.trim()).toBe(
        `tasklog: cannot listen on 127.0.0.1:${busy.port}: the port is already in use; set PORT to a free port`,
      )
    } finally {
      busy.stop(true)
    }
  })

  test('a HOST that is not an address of this machine stops start-up with one line saying so', async () => {
    // 192.0.2.0/24 is reserved for documentation (RFC 5737), so no machine has it.
    const port = freePort()
    const proc = start({ PORT: String(port), HOST: '192.0.2.1', DATABASE_URL: 'sqlite://:memory:' })
    expect(await proc.exited).toBe(1)
    const stderr = await new Response(proc.stderr).text()
    expect(stderr.trim()).toBe(
      `tasklog: cannot listen on 192.0.2.1:${port}: 192.0.2.1 is not, or does not resolve to, an address of this machine; set HOST`,
    )
  })

  test('starts with embedded defaults, says where things are stored, serves, and shuts down on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasklog-'))
    const port = freePort()
    const proc = start({ PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: `sqlite://${dir}/nested/tasklog.sqlite` })
    try {
      const line = JSON.parse(await readLine(proc.stdout))
      expect(line.msg).toBe(
        `tasklog listening on http://127.0.0.1:${port} · tasks: sqlite:${dir}/nested/tasklog.sqlite · history: memory (in-process; lost on restart) · auth: local (loopback clients only; set AUTH_SECRET for tokens) · docs: /swagger`,
      )
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ description: 'Test task for WebSocket logging' }),
      })
      expect(res.status).toBe(201)
      expect(await Bun.file(`${dir}/nested/tasklog.sqlite`).exists()).toBe(true)
      // A watcher is told to come back (1012), not dropped, when the server shuts down.
      const task = await res.json()
      const watcher = await WsClient.connect(`ws://127.0.0.1:${port}/api/v1/ws/tasks/${task.task_id}/logs`)
      await watcher.nextOfType('subscribed')
      proc.kill('SIGTERM')
      expect((await watcher.closed).code).toBe(1012)
      expect(await proc.exited).toBe(0)
    } finally {
      proc.kill('SIGKILL')
    }
  }, 20_000)

  test('with Redis, Ctrl-C (SIGINT) tells watchers to come back and withdraws what the instance announced', async () => {
    const redis = await startRedis()
    const raw = createClient({ url: redis.url })
    await raw.connect()
    const port = freePort()
    const proc = start({ PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: 'sqlite://:memory:', REDIS_URL: redis.url })
    try {
      expect(await readLine(proc.stdout)).toContain(`history: ${redis.url}`)
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ description: 'watched' }),
      })
      const task = await res.json()
      const watcher = await WsClient.connect(`ws://127.0.0.1:${port}/api/v1/ws/tasks/${task.task_id}/logs`)
      await watcher.nextOfType('subscribed')
      // Other instances count this watcher in broadcasted once the instance has announced it.
      let announced = {}
      for (let i = 0; i < 100 && Object.keys(announced).length === 0; i++) {
        await Bun.sleep(20)
        announced = await raw.hGetAll(subscribersKey(task.task_id))
      }
      expect(Object.values(announced)).toEqual([expect.stringMatching(/^\d+ 1 1 1 1$/)])
      proc.kill('SIGINT')
      expect((await watcher.closed).code).toBe(1012)
      expect(await proc.exited).toBe(0)
      expect(await raw.exists(subscribersKey(task.task_id))).toBe(0)
    } finally {
      proc.kill('SIGKILL')
      await raw.close()
      await redis.stop()
    }
  }, 20_000)
})
