import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../src/config'
import { startExample, type RunningExample } from './support/example-process'
import { freePort, startRedis, type RedisServer } from './support/redis-server'
import { WsClient, json } from './support/server'

describe('WORKERS and --workers', () => {
  test('--workers wins over WORKERS; 0 means one per core; the default is one process', () => {
    expect(loadConfig({}).workers).toBe(1)
    expect(loadConfig({ WORKERS: '3' }).workers).toBe(3)
    expect(loadConfig({ WORKERS: '3' }, ['--workers', '2']).workers).toBe(2)
    expect(loadConfig({}, ['--workers=0']).workers).toBe(availableParallelism())
    expect(() => loadConfig({}, ['--workers', 'many'])).toThrow('WORKERS=many is invalid')
  })

  /** Runs `bun src/index.ts --workers 2` with `env` until it exits. */
  const refused = async (env: Record<string, string>) => {
    const { code, stdout, stderr } = await startExample(['bun', 'src/index.ts', '--workers', '2'], {
      HOST: '127.0.0.1',
      PORT: String(freePort()),
      REDIS_URL: '',
      DATABASE_URL: 'sqlite://data/never-created.sqlite',
      ...env,
    }).stop()
    expect(code).toBe(1)
    expect(stdout).not.toContain('listening')
    expect(stderr.trim().split('\n')).toHaveLength(1)
    return stderr.trim()
  }

  test('more than one worker without Redis, with an in-memory SQLite or on PORT=0 is refused in one line', async () => {
    expect(await refused({})).toBe(
      'tasklog: WORKERS=2 needs REDIS_URL: the workers share history and live delivery through Redis',
    )
    expect(await refused({ REDIS_URL: 'redis://127.0.0.1:1', DATABASE_URL: 'sqlite://:memory:' })).toContain(
      'tasklog: WORKERS=2 cannot share DATABASE_URL=sqlite://:memory: (a database per process)',
    )
    expect(await refused({ REDIS_URL: 'redis://127.0.0.1:1', PORT: '0' })).toContain('tasklog: WORKERS=2 needs a fixed PORT')
  }, 60_000)

  test('workers that cannot listen stop the supervisor, with exit code 1', async () => {
    const redis = await startRedis()
    const dir = mkdtempSync(join(tmpdir(), 'tasklog-workers-'))
    const taken = Bun.serve({ hostname: '127.0.0.1', port: 0, reusePort: false, fetch: () => new Response() })
    try {
      const { code, stderr } = await startExample(['bun', 'src/index.ts', '--workers', '2'], {
        HOST: '127.0.0.1',
        PORT: String(taken.port),
        REDIS_URL: redis.url,
        DATABASE_URL: `sqlite://${join(dir, 'tasks.sqlite')}`,
      }).stop()
      expect(code).toBe(1)
      expect(stderr).toContain(`tasklog: cannot listen on 127.0.0.1:${taken.port}: the port is already in use`)
    } finally {
      taken.stop(true)
      await redis.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe('--workers 2 writing to a pipe read slowly', () => {
  test("the workers' JSON lines stay whole, none split by the other's", async () => {
    const redis = await startRedis()
    const dir = mkdtempSync(join(tmpdir(), 'tasklog-workers-'))
    const port = freePort()
    // The supervisor's stdout is a pipe whose reader waits 4 s before it reads: the pipe fills,
    // and the workers' writes go through in pieces when it drains.
    const proc = Bun.spawn(['sh', '-c', 'bun src/index.ts --workers 2 | { sleep 4; cat; }'], {
      cwd: join(import.meta.dir, '..'),
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(port),
        REDIS_URL: redis.url,
        DATABASE_URL: `sqlite://${join(dir, 'tasks.sqlite')}`,
        LOG_FORMAT: 'json',
      },
      stdout: 'pipe',
      stderr: 'ignore',
    })
    const output = new Response(proc.stdout).text()
    try {
      const answered = new Set<string | null>()
      // Until both workers listen (the second starts a moment after the first).
      for (let i = 0; i < 500 && answered.size < 2; i++) {
        const res = await fetch(`http://127.0.0.1:${port}/health`, { keepalive: false }).catch(() => undefined)
        if (res) answered.add(res.headers.get('x-tasklog-worker'))
        await Bun.sleep(30)
      }
      expect([...answered].sort()).toEqual(['1', '2'])
      // Long access lines (a padded URL), over many connections spread across both workers.
      const url = `http://127.0.0.1:${port}/health?pad=${'x'.repeat(2000)}`
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let i = 0; i < 250; i++) await (await fetch(url)).arrayBuffer()
        }),
      )
      const supervisor = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .map(Number)
        .find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('src/index.ts'))!
      process.kill(supervisor, 'SIGTERM')
      expect(await proc.exited).toBe(0)
      const lines = (await output).trimEnd().split('\n')
      expect(lines.length).toBeGreaterThan(4000)
      const broken = lines.filter((line) => {
        try {
          JSON.parse(line)
          return false
        } catch {
          return true
        }
      })
      expect(broken.map((line) => line.slice(0, 120))).toEqual([])
    } finally {
      proc.kill('SIGKILL')
      await redis.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

/** A task's WebSocket watcher that resumes with `since` whenever its connection drops. */
class ResumingWatcher {
  readonly ids: string[] = []
  closes: number[] = []
  private client: WsClient | undefined
  private stopped = false

  constructor(
    private readonly wsUrl: string,
    private readonly taskId: string,
  ) {}

  async connect(): Promise<void> {
    const since = this.ids.at(-1)
    const client = await WsClient.connect(`${this.wsUrl}/api/v1/ws/tasks/${this.taskId}/logs${since ? `?since=${since}` : ''}`)
    this.client = client
    client.socket.addEventListener('message', () => this.take(client))
    void client.closed.then(async ({ code }) => {
      this.take(client)
      this.closes.push(code)
      while (!this.stopped) {
        try {
          return await this.connect()
        } catch {
          await Bun.sleep(50)
        }
      }
    })
    await client.nextOfType('subscribed')
  }

  /** Moves the log frames `client` has queued to `ids`. */
  private take(client: WsClient): void {
    const frames = client.frames
    for (let i = 0; i < frames.length;) {
      if (frames[i]!.type === 'log') this.ids.push(frames.splice(i, 1)[0]!.data.id)
      else i++
    }
  }

  stop(): void {
    this.stopped = true
    this.client?.close()
  }
}

describe('--workers 2', () => {
  let redis: RedisServer
  let dir: string
  let supervisor: RunningExample
  let url: string
  let wsUrl: string

  beforeAll(async () => {
    redis = await startRedis()
    dir = mkdtempSync(join(tmpdir(), 'tasklog-workers-'))
    const port = freePort()
    url = `http://127.0.0.1:${port}`
    wsUrl = `ws://127.0.0.1:${port}`
    supervisor = startExample(['bun', 'src/index.ts', '--workers', '2'], {
      HOST: '127.0.0.1',
      PORT: String(port),
      REDIS_URL: redis.url,
      DATABASE_URL: `sqlite://${join(dir, 'tasks.sqlite')}`,
      LOG_FORMAT: 'json',
    })
    await supervisor.waitFor(/"worker":1,[^\n]*listening on/, 20_000)
    await supervisor.waitFor(/"worker":2,[^\n]*listening on/, 20_000)
  }, 60_000)
  afterAll(async () => {
    await supervisor?.stop('SIGKILL')
    await redis?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  /** A request on a connection of its own, so that the kernel may hand it to either worker. */
  const request = (path: string, init: RequestInit = {}) =>
    fetch(`${url}${path}`, { ...init, keepalive: false, headers: { connection: 'close', ...init.headers } })
  const post = (path: string, body: unknown) =>
    request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  /** Each worker's open WebSocket connections, from /metrics, asked until both workers answered. */
  const connectionsPerWorker = async () => {
    const counts = new Map<string, number>()
    for (let i = 0; i < 200 && counts.size < 2; i++) {
      const text = await (await request('/metrics')).text()
      const sample = /^tasklog_websocket_connections\{worker="(\d+)"\} (\d+)$/m.exec(text)
      if (sample) counts.set(sample[1]!, Number(sample[2]))
    }
    return counts
  }

  /** Opens watchers of `taskId` until both workers hold some (by their /metrics). */
  const watchersOnBothWorkers = async <W>(factory: () => Promise<W>): Promise<W[]> => {
    const watchers = [await factory()]
    for (let i = 0; i < 40; i++) {
      const counts = await connectionsPerWorker()
      if ([...counts.values()].filter((n) => n > 0).length === 2) return watchers
      watchers.push(await factory())
    }
    throw new Error('the watchers never spread over both workers')
  }

  const createTask = async () => {
    const res = await post('/api/v1/tasks', { description: 'workers', subtasks: [{ description: 'x' }] })
    expect(res.status).toBe(201)
    return (await json(res)) as { task_id: string; subtasks: { subtask_id: string }[] }
  }

  test('both workers answer on the one port, each naming itself in a header and in every metric sample', async () => {
    const answered = new Set<string | null>()
    for (let i = 0; i < 200 && answered.size < 2; i++) answered.add((await request('/health')).headers.get('x-tasklog-worker'))
    expect([...answered].sort()).toEqual(['1', '2'])
    const samples = (await (await request('/metrics')).text()).split('\n').filter((line) => line && !line.startsWith('#'))
    expect(samples.length).toBeGreaterThan(10)
    for (const line of samples) expect(line).toMatch(/^[a-z_]+\{worker="[12]"[,}]/)
  })

  test('tasks created through both workers at once are all stored in the shared SQLite file', async () => {
    const created = await Promise.all(Array.from({ length: 40 }, () => post('/api/v1/tasks', { description: 'concurrent' })))
    expect(created.map((res) => res.status)).toEqual(created.map(() => 201))
    expect(new Set(created.map((res) => res.headers.get('x-tasklog-worker')))).toEqual(new Set(['1', '2']))
    const ids = new Set<string>()
    for (const res of created) ids.add(((await json(res)) as { task_id: string }).task_id)
    let cursor = ''
    const listed = new Set<string>()
    do {
      const page = await json(await request(`/api/v1/tasks?limit=100${cursor && `&cursor=${cursor}`}`))
      for (const task of page.tasks) listed.add(task.task_id)
      cursor = page.next_cursor ?? ''
    } while (cursor)
    for (const id of ids) expect(listed.has(id)).toBe(true)
  })

  test('a log posted to either worker reaches the watchers on both', async () => {
    const task = await createTask()
    const watchers = await watchersOnBothWorkers(async () => {
      const w = new ResumingWatcher(wsUrl, task.task_id)
      await w.connect()
      return w
    })
    const storedBy = new Set<string | null>()
    const acked: string[] = []
    for (let i = 0; i < 100 && (storedBy.size < 2 || i < 20); i++) {
      const res = await post(`/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`, { level: 'info', message: `line ${i}` })
      expect(res.status).toBe(201)
      storedBy.add(res.headers.get('x-tasklog-worker'))
      acked.push((await json(res)).id)
    }
    expect([...storedBy].sort()).toEqual(['1', '2'])
    for (let i = 0; i < 200 && watchers.some((w) => w.ids.length < acked.length); i++) await Bun.sleep(25)
    for (const w of watchers) {
      expect(w.ids).toEqual(acked)
      w.stop()
    }
  })

  /** The pids of the supervisor's workers, by worker number (from each process's environment). */
  const workerPids = () => {
    const pid = supervisor.proc.pid
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number)
    return new Map(
      children.map((child) => [/(?:^|\0)TASKLOG_WORKER=(\d+)/.exec(readFileSync(`/proc/${child}/environ`, 'utf8'))![1]!, child]),
    )
  }

  test('a worker killed with SIGKILL is started again, and its watchers resume with since, missing nothing', async () => {
    const task = await createTask()
    const subtask = task.subtasks[0]!.subtask_id
    const watchers = await watchersOnBothWorkers(async () => {
      const w = new ResumingWatcher(wsUrl, task.task_id)
      await w.connect()
      return w
    })
    let producing = true
    let sent = 0
    const producer = (async () => {
      while (producing) {
        // A request that dies with its worker may or may not have been stored: history decides.
        await post(`/api/v1/subtasks/${subtask}/log`, { level: 'info', message: `line ${sent++}` }).catch(() => {})
        await Bun.sleep(5)
      }
    })()
    while (sent < 30) await Bun.sleep(10)
    const killed = workerPids().get('1')!
    process.kill(killed, 'SIGKILL')
    await supervisor.waitFor(/"worker":1,[^\n]*worker 1 exited with signal SIGKILL; starting it again/, 10_000)
    // Started again: a new process answers as worker 1.
    let again = false
    for (let i = 0; i < 400 && !again; i++) {
      again = (await request('/health').catch(() => undefined))?.headers.get('x-tasklog-worker') === '1'
      if (!again) await Bun.sleep(25)
    }
    expect(again).toBe(true)
    expect(workerPids().get('1')).not.toBe(killed)
    const before = sent
    while (sent < before + 30) await Bun.sleep(10)
    producing = false
    await producer

    const history = await json(await request(`/api/v1/tasks/${task.task_id}/logs?order=asc&limit=1000`))
    const stored: string[] = history.logs.map((log: { id: string }) => log.id)
    expect(stored.length).toBeGreaterThanOrEqual(60)
    for (let i = 0; i < 400 && watchers.some((w) => w.ids.length < stored.length); i++) await Bun.sleep(25)
    // The killed worker's watchers lost their connection (1006) and came back with since.
    expect(watchers.some((w) => w.closes.includes(1006))).toBe(true)
    for (const w of watchers) {
      expect(w.ids).toEqual(stored)
      w.stop()
    }
  }, 60_000)

  test('SIGTERM closes every watcher on both workers with 1012, and the supervisor exits 0', async () => {
    const task = await createTask()
    const watchers = await watchersOnBothWorkers(() =>
      WsClient.connect(`${wsUrl}/api/v1/ws/tasks/${task.task_id}/logs`).then((client) => ({
        client,
        stop: () => client.close(),
      })),
    )
    const { code, stdout } = await supervisor.stop('SIGTERM')
    expect(code).toBe(0)
    for (const { client } of watchers) expect((await client.closed).code).toBe(1012)
    expect(stdout).toMatch(/"worker":1,[^\n]*SIGTERM received/)
    expect(stdout).toMatch(/"worker":2,[^\n]*SIGTERM received/)
    // The workers' lines shared one pipe and none was split by another's.
    const lines = stdout.trimEnd().split('\n')
    expect(lines.length).toBeGreaterThan(100)
    const records = lines.map((line) => JSON.parse(line) as { msg: string; worker?: number })
    // Access lines name the worker that served the request, as its other lines do.
    const requests = records.filter((record) => record.msg === 'request')
    expect(requests.length).toBeGreaterThan(50)
    for (const record of requests) expect([1, 2]).toContain(record.worker!)
  })
})
