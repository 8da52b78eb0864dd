import { Elysia, t } from 'elysia'
import type { ServerWebSocket } from 'bun'
import { notFound } from '../errors'
import { errorFrame, frame } from '../logs/frames'
import type { Hub, ReplayRequest, Watcher } from '../logs/hub'
import type { Metrics } from '../metrics'
import { LEVELS, LevelSchema, LogId, type Level } from '../schemas/common'
import { ErrorBody } from '../schemas/error'
import type { TaskStore } from '../tasks/task-store'
import { TaskParams } from './tasks'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i
const LOG_ID = /^\d{1,15}-\d{1,15}$/
/** At most this many task subscriptions per WebSocket connection. */
export const MAX_SUBSCRIPTIONS = 100
/** SSE comment heartbeat, so proxies and clients see a live connection. */
const SSE_HEARTBEAT_MS = 15_000
/** How often sockets are checked for readers that fall behind. */
const SLOW_READER_CHECK_MS = 250

/**
 * Closes WebSockets whose unsent frames exceed `limitBytes` with 1013, so a slow reader
 * learns to reconnect with `since` instead of growing server memory. (Bun's own
 * closeOnBackpressureLimit, set at 16 times this limit in app.ts, only catches bursts and
 * closes abruptly with 1006.) The check runs on a timer, never on the fan-out path.
 */
class SlowReaderGuard {
  private readonly sockets = new Set<ServerWebSocket<unknown>>()
  private timer: ReturnType<typeof setInterval> | undefined

  constructor(private readonly limitBytes: number) {}

  add(socket: ServerWebSocket<unknown>): void {
    this.sockets.add(socket)
    this.timer ??= setInterval(() => this.check(), SLOW_READER_CHECK_MS)
    this.timer.unref?.()
  }

  delete(socket: ServerWebSocket<unknown>): void {
    this.sockets.delete(socket)
    if (this.sockets.size === 0 && this.timer) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  private check(): void {
    for (const socket of this.sockets) {
      if (socket.getBufferedAmount() > this.limitBytes) {
        this.delete(socket)
        socket.close(1013, 'Too slow: reconnect with since=<last id> to resume')
      }
    }
  }
}

/** Validated stream options, shared by the WebSocket URL, its subscribe action and SSE. */
interface StreamOptions extends ReplayRequest {
  minLevel: Level
}

class InvalidOption extends Error {}

/** Why a subscription failed: the `code` and `message` of the error frame. */
interface Problem {
  code: 'not_found' | 'already_subscribed' | 'too_many_subscriptions' | 'unavailable'
  message: string
}

function parseOptions(raw: Record<string, unknown>, defaults: { minLevel: Level }, historyMax: number): StreamOptions {
  const { since, history, level } = raw
  if (since !== undefined && (typeof since !== 'string' || !LOG_ID.test(since)))
    throw new InvalidOption('since must be a log id like 1764152130123-0')
  const n = history === undefined || history === '' ? 0 : Number(history)
  if (!Number.isInteger(n) || n < 0 || n > historyMax)
    throw new InvalidOption(`history must be a whole number from 0 to ${historyMax}`)
  if (level !== undefined && !LEVELS.includes(level as Level))
    throw new InvalidOption(`level must be one of ${LEVELS.join(', ')}`)
  return { since: since as string | undefined, history: n, minLevel: (level as Level | undefined) ?? defaults.minLevel }
}

/** One WebSocket connection: its subscriptions, at most one per task. */
class Connection {
  readonly subscriptions = new Map<string, Watcher>()
  /** Actions wait until the URL's own subscription is set up, so frames keep their order. */
  ready: Promise<void> = Promise.resolve()
  closed = false
  private drainWaiters: (() => void)[] = []
  constructor(
    readonly socket: ServerWebSocket<unknown>,
    readonly minLevel: Level,
  ) {}

  /** Bun's send() returns -1 when the frame was queued behind unsent data. */
  private send = (text: string): boolean => this.socket.send(text) === -1

  /** Wakes replays waiting for this socket to catch up; also called on close. */
  drained(): void {
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const wake of waiters) wake()
  }

  watcher(minLevel: Level): Watcher {
    const socket = this.socket
    return {
      minLevel,
      socket,
      subscribed: (task_id, recovered) =>
        socket.send(frame('subscribed', recovered === undefined ? { task_id } : { task_id, recovered })),
      sendLog: (_log, text) => this.send(text),
      sendStatus: (_data, text) => this.send(text),
      drained: () => (this.closed ? Promise.resolve() : new Promise((wake) => this.drainWaiters.push(wake))),
      overflow: () => socket.close(1013, 'Too slow: live logs overflowed while history was replayed'),
    }
  }
}

export const streamRoutes = (
  tasks: TaskStore,
  hub: Hub,
  metrics: Metrics,
  limits: { historyMax: number; backpressureBytes: number },
) => {
  const { historyMax } = limits
  const connections = new WeakMap<object, Connection>()
  const slowReaders = new SlowReaderGuard(limits.backpressureBytes)

  /** Subscribes a connection to a task; returns what went wrong for the client, or undefined. */
  async function subscribe(conn: Connection, taskId: unknown, options: StreamOptions): Promise<Problem | undefined> {
    if (typeof taskId !== 'string' || !UUID.test(taskId))
      return { code: 'not_found', message: `Task ${String(taskId)} not found` }
    if (conn.subscriptions.has(taskId)) return { code: 'already_subscribed', message: `Already subscribed to task ${taskId}` }
    if (conn.subscriptions.size >= MAX_SUBSCRIPTIONS)
      return { code: 'too_many_subscriptions', message: `At most ${MAX_SUBSCRIPTIONS} subscriptions per connection` }
    try {
      if (!(await tasks.getTask(taskId))) return { code: 'not_found', message: `Task ${taskId} not found` }
    } catch {
      return { code: 'unavailable', message: 'The task store is unavailable; subscribe again later' }
    }
    if (conn.closed) return
    const watcher = conn.watcher(options.minLevel)
    conn.subscriptions.set(taskId, watcher)
    try {
      await hub.watch(taskId, watcher, options)
    } catch {
      if (conn.subscriptions.get(taskId) === watcher) conn.subscriptions.delete(taskId)
      return { code: 'unavailable', message: `History of task ${taskId} is unavailable; subscribe again later` }
    }
  }

  async function act(conn: Connection, message: unknown): Promise<void> {
    const send = (code: string, text: string) => conn.socket.send(errorFrame(code, text))
    if (typeof message !== 'object' || message === null || Array.isArray(message))
      return void send('invalid_message', 'Messages must be JSON objects like {"action":"ping"}')
    const { action, task_id: taskId, ...rest } = message as Record<string, unknown>
    switch (action) {
      case 'ping':
        return void conn.socket.send(frame('pong'))
      case 'subscribe': {
        if (taskId === undefined) return void send('validation', 'subscribe needs a task_id')
        let options: StreamOptions
        try {
          options = parseOptions(rest, conn, historyMax)
        } catch (e) {
          return void send('validation', (e as Error).message)
        }
        const problem = await subscribe(conn, taskId, options)
        if (problem) send(problem.code, problem.message)
        return
      }
      case 'unsubscribe': {
        if (taskId === undefined) return void send('validation', 'unsubscribe needs a task_id')
        const watcher = typeof taskId === 'string' ? conn.subscriptions.get(taskId) : undefined
        if (!watcher) return void send('not_subscribed', `Not subscribed to task ${String(taskId)}`)
        conn.subscriptions.delete(taskId as string)
        hub.unwatch(taskId as string, watcher)
        return void conn.socket.send(frame('unsubscribed', { task_id: taskId }))
      }
      case undefined:
        return void send('validation', 'Missing "action": one of ping, subscribe, unsubscribe')
      default:
        return void send('unknown_action', `Unknown action ${JSON.stringify(action)}: use ping, subscribe or unsubscribe`)
    }
  }

  return new Elysia({ name: 'stream', prefix: '/api/v1' })
    .ws('/ws/tasks/:task_id/logs', {
      detail: {
        tags: ['stream'],
        summary: 'Follow a task over WebSocket',
        description:
          'Sends `subscribed`, then replayed logs (with `since` or `history`), then live `log` and `status` frames. Actions: `{"action":"ping"}`, `{"action":"subscribe","task_id":…}`, `{"action":"unsubscribe","task_id":…}`. Unknown tasks are closed with code 1008.',
      },
      open(ws) {
        const { task_id: taskId } = ws.data.params as { task_id: string }
        let options: StreamOptions
        try {
          options = parseOptions(ws.data.query as Record<string, unknown>, { minLevel: 'debug' }, historyMax)
        } catch (e) {
          ws.send(errorFrame('validation', (e as Error).message))
          return ws.close(1008, (e as Error).message)
        }
        const conn = new Connection(ws.raw as ServerWebSocket<unknown>, options.minLevel)
        connections.set(ws.raw, conn)
        slowReaders.add(conn.socket)
        metrics.connections++
        // 1008 tells clients to give up (unknown task); 1013 to come back later (a store is down).
        conn.ready = subscribe(conn, taskId, options).then((problem) => {
          if (problem && !conn.closed) ws.close(problem.code === 'unavailable' ? 1013 : 1008, problem.message)
        })
      },
      async message(ws, message) {
        const conn = connections.get(ws.raw)
        if (!conn) return
        await conn.ready
        await act(conn, message)
      },
      drain(ws) {
        connections.get(ws.raw)?.drained()
      },
      close(ws) {
        const conn = connections.get(ws.raw)
        if (!conn) return
        conn.closed = true
        conn.drained()
        slowReaders.delete(conn.socket)
        for (const [taskId, watcher] of conn.subscriptions) hub.unwatch(taskId, watcher)
        conn.subscriptions.clear()
      },
    })
    .get(
      '/tasks/:task_id/logs/stream',
      async ({ params, query, headers }) => {
        if (!(await tasks.getTask(params.task_id))) throw notFound('Task', params.task_id)
        const since = headers['last-event-id'] ?? query.since
        const options: StreamOptions = { since, history: query.history, minLevel: query.level ?? 'debug' }
        return sseResponse(hub, params.task_id, options)
      },
      {
        params: TaskParams,
        query: t.Object({
          since: t.Optional(LogId),
          history: t.Optional(t.Integer({ minimum: 0, maximum: historyMax })),
          level: t.Optional(LevelSchema),
        }),
        headers: t.Object({ 'last-event-id': t.Optional(LogId) }),
        response: { 404: ErrorBody, 422: ErrorBody },
        detail: {
          tags: ['stream'],
          summary: 'Follow a task with Server-Sent Events',
          description:
            'For clients that cannot use WebSocket. Events: `log` (with `id:` = log id) and `status`. Resumes after `Last-Event-ID` or `?since=`; a comment heartbeat every 15 s.',
        },
      },
    )
}

/** Frames queued for one SSE reader before it is dropped; EventSource then reconnects with Last-Event-ID. */
const SSE_QUEUE_MAX = 1_000
/** Replay pauses while more than this many frames wait for the reader. */
const SSE_QUEUE_REPLAY = 64

function sseResponse(hub: Hub, taskId: string, options: StreamOptions): Response {
  const encoder = new TextEncoder()
  let controller!: ReadableStreamDefaultController<Uint8Array>
  let heartbeat: ReturnType<typeof setInterval> | undefined
  let open = true
  let pullWaiters: (() => void)[] = []
  const wake = () => {
    const waiters = pullWaiters
    pullWaiters = []
    for (const w of waiters) w()
  }
  const stop = () => {
    if (!open) return
    open = false
    clearInterval(heartbeat)
    hub.unwatch(taskId, watcher)
    wake()
  }
  const end = () => {
    stop()
    controller.close()
  }
  /** Queues one event; true when the reader is behind. */
  const write = (text: string): boolean => {
    if (!open) return false
    const queued = -(controller.desiredSize ?? 0)
    if (queued >= SSE_QUEUE_MAX) {
      end()
      return false
    }
    controller.enqueue(encoder.encode(text))
    return queued >= SSE_QUEUE_REPLAY
  }
  const watcher: Watcher = {
    minLevel: options.minLevel,
    subscribed: (_taskId, recovered) =>
      write(`retry: 2000\n: subscribed${recovered === false ? ' (history has a gap)' : ''}\n\n`),
    sendLog: (log) => write(`id: ${log.id}\nevent: log\ndata: ${log.data}\n\n`),
    sendStatus: (data) => write(`event: status\ndata: ${data}\n\n`),
    drained: () => (open ? new Promise((resolve) => pullWaiters.push(resolve)) : Promise.resolve()),
    overflow: end,
  }
  const stream = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c
        heartbeat = setInterval(() => write(': heartbeat\n\n'), SSE_HEARTBEAT_MS)
        hub.watch(taskId, watcher, options).catch(() => {
          open = false // the hub has already forgotten this watcher
          clearInterval(heartbeat)
          controller.close()
        })
      },
      pull: wake,
      cancel: stop,
    },
    { highWaterMark: 0 },
  )
  return new Response(stream, {
    headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' },
  })
}
