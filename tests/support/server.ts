/**
 * Test harness: the real app on a free port with its own stores (SQLite in memory, and
 * history in memory or in a real redis-server), plus small HTTP and WebSocket helpers.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createApp, type App } from '../../src/app'
import { loadConfig, type Config } from '../../src/config'
import type { LogBackend, HistoryStore } from '../../src/logs/backend'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { closeStores, openStores } from '../../src/stores'
import type { TaskStore } from '../../src/tasks/task-store'
import { ServerFrame, StatusChange, SubscribedFrame } from '../../src/schemas/frames'
import { LogMessage } from '../../src/schemas/log'
import type { Task } from '../../src/schemas/task'

export interface TestServer {
  app: App
  config: Config
  /** The app's log backend (its history wrapped when `wrapHistory` asked for it). */
  logs: LogBackend
  tasks: TaskStore
  /** `http://127.0.0.1:<port>` (or the hostname asked for) */
  url: string
  /** `ws://127.0.0.1:<port>` (or the hostname asked for) */
  wsUrl: string
  stop(): Promise<void>
}

/**
 * Starts the app. `redisUrl` selects Redis history; `env` overrides configuration variables;
 * `wrapHistory` may decorate the real history store (e.g. to slow it down); `port` (default:
 * a free one) lets a new instance take over the address of a stopped one.
 */
export async function startServer(
  options: {
    redisUrl?: string
    env?: Record<string, string>
    wrapHistory?: (h: HistoryStore) => HistoryStore
    port?: number
    /** The address to listen on (default 127.0.0.1); `url` and `wsUrl` name it. */
    hostname?: string
  } = {},
): Promise<TestServer> {
  const config = loadConfig({ DATABASE_URL: 'sqlite://:memory:', ...options.env, REDIS_URL: options.redisUrl })
  const stores = await openStores(config)
  const { tasks } = stores
  const logs = options.wrapHistory ? { ...stores.logs, history: options.wrapHistory(stores.logs.history) } : stores.logs
  const hostname = options.hostname ?? '127.0.0.1'
  const app = createApp({ config, tasks, logs, archiver: stores.archiver }).listen({ hostname, port: options.port ?? 0 })
  const port = app.server!.port
  return {
    app,
    config,
    logs,
    tasks,
    url: `http://${hostname}:${port}`,
    wsUrl: `ws://${hostname}:${port}`,
    async stop() {
      if (!app.server) return // stopped already (a test may stop an instance the suite also stops)
      await app.stop(true)
      await closeStores(stores)
    },
  }
}

/**
 * Two instances of tasklog forming one service, as in production: one Redis for history and
 * the live feed, one task store (a SQLite file here, in a fresh temporary folder); `config`
 * sets further variables of every instance.
 */
export async function startInstances(redisUrl: string, n = 2, config: Record<string, string> = {}): Promise<TestServer[]> {
  const dir = mkdtempSync(join(tmpdir(), 'tasklog-instances-'))
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  const env = { ...config, DATABASE_URL: `sqlite://${join(dir, 'tasks.sqlite')}` }
  const servers: TestServer[] = []
  for (let i = 0; i < n; i++) servers.push(await startServer({ redisUrl, env }))
  return servers
}

export async function json(res: Response): Promise<any> {
  const text = await res.text()
  try {
    return JSON.parse(text)
  } catch {
    throw new Error(`expected JSON, got ${res.status}: ${text.slice(0, 200)}`)
  }
}

export const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

/** Creates a task through the API. */
export async function createTask(
  server: TestServer,
  body: object = { description: 'Test task for WebSocket logging' },
): Promise<Task> {
  const res = await post(`${server.url}/api/v1/tasks`, body)
  if (res.status !== 201) throw new Error(`create task: ${res.status} ${await res.text()}`)
  return json(res)
}

export async function sendLog(server: TestServer, subtaskId: string, log: object): Promise<any> {
  const res = await post(`${server.url}/api/v1/subtasks/${subtaskId}/log`, log)
  if (res.status !== 201) throw new Error(`send log: ${res.status} ${await res.text()}`)
  return json(res)
}

export interface Frame {
  type: string
  data?: any
  timestamp: string
}

/**
 * A schema as the server's output must match it: an object may not carry a field its schema
 * does not name, unless the schema says so (metadata). The schemas themselves leave that open.
 */
function closed<T>(schema: T): T {
  if (Array.isArray(schema)) return schema.map(closed) as T
  if (typeof schema !== 'object' || schema === null) return schema
  const copy: any = {}
  for (const key of Reflect.ownKeys(schema)) copy[key] = closed((schema as any)[key])
  if (copy.type === 'object' && copy.properties && copy.additionalProperties === undefined) copy.additionalProperties = false
  return copy
}

type Checker = ReturnType<typeof TypeCompiler.Compile>
const checkerOf = (schema: object): Checker => TypeCompiler.Compile(closed(schema) as any)

/** What breaks a schema, naming the field at fault, or undefined. */
function mismatch(checker: Checker, value: unknown): string | undefined {
  const error = checker.Errors(value).First()
  return error && `${error.path || '/'}: ${error.message}, got ${JSON.stringify(error.value)}`
}

/** A checker per frame type, so that a mismatch names the field at fault rather than the whole union. */
const frameCheckers = new Map<unknown, Checker>(
  ServerFrame.anyOf.map((schema) => [schema.properties.type.enum[0], checkerOf(schema)]),
)

/** How a received message breaks the wire contract (schemas/frames.ts ServerFrame), or undefined. */
function frameMismatch(frame: any): string | undefined {
  const checker = frameCheckers.get(frame?.type)
  if (!checker) return `unknown frame type ${JSON.stringify(frame?.type)}`
  return mismatch(checker, frame)
}

/** The data of each Server-Sent Event type, as the WebSocket frame of the same type carries it. */
const sseCheckers: Record<string, Checker> = {
  subscribed: checkerOf(SubscribedFrame.properties.data),
  log: checkerOf(LogMessage),
  status: checkerOf(StatusChange),
}

/** How one Server-Sent Event (a blank-line separated block) breaks the wire contract, or undefined. */
function sseMismatch(event: string): string | undefined {
  const fields = event.split('\n')
  const type = fields.find((f) => f.startsWith('event: '))?.slice(7)
  const data = fields.find((f) => f.startsWith('data: '))?.slice(6)
  if (type === undefined && data === undefined) return // comments and `retry:` only: `: heartbeat`
  const checker = type === undefined ? undefined : sseCheckers[type]
  if (!checker || data === undefined) return `unknown event ${JSON.stringify(event)}`
  let value
  try {
    value = JSON.parse(data)
  } catch {
    return 'data is not JSON'
  }
  const problem = mismatch(checker, value)
  if (problem) return problem
  const id = fields.find((f) => f.startsWith('id: '))?.slice(4)
  if (type === 'log' && id !== value.id) return `id: ${id} is not the log's id ${value.id}`
}

/**
 * A real WebSocket client that queues the frames it receives. Every frame is checked against
 * the ServerFrame schema: after one that does not match, reading `frames` (and so every `next`,
 * pending or later) throws an error quoting it.
 */
export class WsClient {
  readonly socket: WebSocket
  private readonly queue: Frame[] = []
  private mismatch: Error | undefined
  private waiters: (() => void)[] = []
  readonly opened: Promise<void>
  readonly closed: Promise<{ code: number; reason: string }>

  constructor(url: string) {
    this.socket = new WebSocket(url)
    this.opened = new Promise((resolve, reject) => {
      this.socket.addEventListener('open', () => resolve(), { once: true })
      this.socket.addEventListener('error', () => reject(new Error(`cannot connect to ${url}`)), { once: true })
    })
    this.closed = new Promise((resolve) =>
      this.socket.addEventListener('close', (e) => {
        resolve({ code: e.code, reason: e.reason })
        this.wake()
      }),
    )
    this.socket.addEventListener('message', (e) => {
      const text = String(e.data)
      let frame: Frame | undefined
      try {
        frame = JSON.parse(text)
      } catch {}
      const problem = frame === undefined ? 'not JSON' : frameMismatch(frame)
      if (problem) this.mismatch ??= new Error(`frame does not match the ServerFrame schema (${problem}): ${text.slice(0, 500)}`)
      else this.queue.push(frame!)
      this.wake()
    })
  }

  /** The frames received and not yet taken by `next`; throws once a frame broke the schema. */
  get frames(): Frame[] {
    if (this.mismatch) throw this.mismatch
    return this.queue
  }

  static async connect(url: string): Promise<WsClient> {
    const client = new WsClient(url)
    await client.opened
    return client
  }

  send(message: unknown): void {
    this.socket.send(typeof message === 'string' ? message : JSON.stringify(message))
  }

  /** Waits for (and removes) the next frame matching `predicate`; frames before it stay queued. */
  async next(predicate: (f: Frame) => boolean = () => true, timeoutMs = 5_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const i = this.frames.findIndex(predicate)
      if (i >= 0) return this.frames.splice(i, 1)[0]!
      if (this.socket.readyState === WebSocket.CLOSED) throw new Error('socket closed while waiting for a frame')
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no matching frame in ${timeoutMs} ms; queued: ${JSON.stringify(this.frames).slice(0, 500)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  nextOfType(type: string, timeoutMs?: number): Promise<Frame> {
    return this.next((f) => f.type === type, timeoutMs)
  }

  /** Waits until `n` log frames are queued and removes them. */
  async logs(n: number, timeoutMs = 5_000): Promise<any[]> {
    const out: any[] = []
    while (out.length < n) out.push((await this.nextOfType('log', timeoutMs)).data)
    return out
  }

  close(): void {
    this.socket.close()
  }

  private wake() {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }
}

/** Opens a task's log stream and waits for its `subscribed` frame. */
export async function watch(server: TestServer, taskId: string, query = ''): Promise<WsClient> {
  const client = await WsClient.connect(`${server.wsUrl}/api/v1/ws/tasks/${taskId}/logs${query}`)
  await client.nextOfType('subscribed')
  return client
}

/** A task's Server-Sent Events stream, read as text as it arrives. */
export class SseStream {
  text = ''
  private readonly decoder = new TextDecoder()

  private constructor(
    readonly response: Response,
    private readonly controller: AbortController,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
  ) {}

  /** Opens the stream; `response` tells its status and headers. */
  static async open(server: TestServer, taskId: string, query = '', headers: Record<string, string> = {}) {
    const controller = new AbortController()
    const response = await fetch(`${server.url}/api/v1/tasks/${taskId}/logs/stream${query}`, {
      headers,
      signal: controller.signal,
    })
    return new SseStream(response, controller, response.body!.getReader())
  }

  /** Reads until the text holds `needle`. Throws for an event that breaks the wire contract. */
  async until(needle: string): Promise<void> {
    while (!this.text.includes(needle)) {
      const { value, done } = await this.reader.read()
      if (done) throw new Error(`stream ended before ${needle}`)
      this.text += this.decoder.decode(value)
      this.check()
    }
  }

  /** Complete events already checked against the schemas. */
  private checked = 0

  private check(): void {
    const complete = this.text.split('\n\n').slice(0, -1)
    for (const event of complete.slice(this.checked)) {
      const problem = sseMismatch(event)
      if (problem) throw new Error(`event does not match the wire contract (${problem}): ${event.slice(0, 500)}`)
    }
    this.checked = complete.length
  }

  /** The events read so far (blank-line separated blocks with an `event:` line). */
  events(): string[] {
    return this.text.split('\n\n').filter((e) => e.includes('event:'))
  }

  close(): void {
    this.controller.abort()
  }
}
