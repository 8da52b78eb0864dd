import type { ServerWebSocket } from 'bun'
import { errorFrame, frame, rawFrame, type LiveLog } from '../logs/frames'
import type { Hub } from '../logs/hub'
import type { LiveDelivery, ReplayRequest, Watcher } from '../logs/watcher'
import type { Logger } from '../logger'
import type { Metrics } from '../metrics'
import { LEVELS, type Level } from '../schemas/common'
import { canonicalId } from '../../clients/ts/src/ids'
import type { FrameErrorCode } from '../schemas/frames'
import type { KnownTasks } from '../tasks/known-tasks'
import { parseLogId } from '../../clients/ts/src/log-id'
import { textDepthExceeds } from '../http/json-depth'
import type { Access } from '../auth/access'
import type { Caller } from '../auth/caller'
import type { ClientConnections } from '../auth/connection-limit'

/** A client's value in an error message: a string as given, anything else by its JSON type, briefly. */
const describe = (value: unknown): string =>
  typeof value === 'string' ? JSON.stringify(value.slice(0, 100)) : Array.isArray(value) ? 'an array' : `a ${typeof value}`

/** At most this many task subscriptions per WebSocket connection. */
export const MAX_SUBSCRIPTIONS = 100
/** How often sockets are checked for readers that fall behind. */
const SLOW_READER_CHECK_MS = 250

/** What every connection shares; one pointer per connection keeps idle sockets small. */
export interface StreamContext {
  tasks: KnownTasks
  hub: Hub
  metrics: Metrics
  historyMax: number
  maxJsonDepth: number
  sockets: OpenSockets
  logger: Logger
  access: Access
}

/**
 * How a connection was let in: a caller, with its client's connection count (which it releases
 * when it ends); or refused by its token, to be closed with `close` (4001, 4003) on open.
 */
export type Admission = { caller: Caller; client: ClientConnections } | { close: number; reason: string }

type Socket = ServerWebSocket<WebSocketConnection>

/**
 * The open WebSockets. Closes those whose unsent frames exceed `limitBytes` with 1013, so a
 * slow reader learns to reconnect with `since` instead of growing server memory (Bun's own
 * closeOnBackpressureLimit, set at 16 times this limit in app.ts, only catches bursts and
 * closes abruptly with 1006), and those whose token has expired with 4001; the checks run on
 * a timer, never on the fan-out path. On shutdown, `closeAll` tells every client to come back
 * (1012) rather than dropping it.
 */
export class OpenSockets {
  private readonly sockets = new Set<Socket>()
  private timer: ReturnType<typeof setInterval> | undefined

  constructor(
    private readonly limitBytes: number,
    private readonly metrics: Pick<Metrics, 'slowReadersClosed'>,
  ) {}

  add(socket: Socket): void {
    this.sockets.add(socket)
    this.timer ??= setInterval(() => this.sweep(), SLOW_READER_CHECK_MS)
    this.timer.unref?.()
  }

  delete(socket: Socket): void {
    this.sockets.delete(socket)
    if (this.sockets.size === 0 && this.timer) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  closeAll(code: number, reason: string): void {
    for (const socket of this.sockets) socket.close(code, reason)
  }

  /** Closes the sockets subscribed to at least one task. */
  closeWatching(code: number, reason: string): void {
    for (const socket of this.sockets) if (socket.data.watching) socket.close(code, reason)
  }

  private sweep(): void {
    const now = Date.now()
    for (const socket of this.sockets) {
      if (socket.data.expires <= now) {
        this.delete(socket)
        socket.close(4001, 'The token has expired: reconnect with a new one and since=<last id>')
      } else if (socket.getBufferedAmount() > this.limitBytes) {
        this.delete(socket)
        this.metrics.slowReadersClosed.websocket++
        socket.close(1013, 'Too slow: reconnect with since=<last id> to resume')
      }
    }
  }
}

/** Stream options from the URL or a subscribe action, validated. */
interface StreamOptions extends ReplayRequest {
  minLevel: Level
}

class InvalidOption extends Error {}

function parseOptions(raw: Record<string, unknown>, defaultLevel: Level, historyMax: number): StreamOptions {
  const { since, history, level } = raw
  if (since !== undefined && (typeof since !== 'string' || !parseLogId(since)))
    throw new InvalidOption('since must be a log id like 1764152130123-0')
  const n = history === undefined || history === '' ? 0 : Number(history)
  if (!Number.isInteger(n) || n < 0 || n > historyMax)
    throw new InvalidOption(`history must be a whole number from 0 to ${historyMax}`)
  if (level !== undefined && !LEVELS.includes(level as Level))
    throw new InvalidOption(`level must be one of ${LEVELS.join(', ')}`)
  return { since: since as string | undefined, history: n, minLevel: (level as Level | undefined) ?? defaultLevel }
}

/** Why a subscription failed: the `code` and `message` of the error frame. */
interface Problem {
  code: 'not_found' | 'already_subscribed' | 'too_many_subscriptions' | 'unavailable' | 'forbidden'
  message: string
}

/** One task subscription of one connection, as the hub sees it: live, it is a subscriber of the task's Bun topic. */
class Subscription implements Watcher {
  constructor(
    private readonly conn: WebSocketConnection,
    readonly taskId: string,
    readonly minLevel: Level,
  ) {}

  private get socket(): Socket {
    return this.conn.socket
  }

  subscribed(recovered: boolean | undefined): void {
    const task_id = this.taskId
    this.socket.send(frame('subscribed', recovered === undefined ? { task_id } : { task_id, recovered }))
  }

  sendLog(log: LiveLog): boolean {
    return this.conn.send(rawFrame('log', log.data))
  }

  sendStatus(data: string): boolean {
    return this.conn.send(rawFrame('status', data))
  }

  drained(): Promise<void> {
    return this.conn.drained()
  }

  batch(send: () => void): void {
    this.socket.cork(send)
  }

  lost(reason: string): void {
    this.socket.close(1013, reason)
  }

  join(taskId: string, live: LiveDelivery): void {
    this.socket.subscribe(live.topic(taskId, this.minLevel))
  }

  leave(taskId: string, live: LiveDelivery): void {
    this.socket.unsubscribe(live.topic(taskId, this.minLevel))
  }
}

/**
 * One WebSocket connection, and the socket's `data`: Elysia's Bun WebSocket handler calls
 * `open`, `message`, `drain` and `close` on it. Kept small, with no per-connection closures,
 * since idle connections are most of a server's memory.
 */
export class WebSocketConnection {
  socket!: Socket
  /** At most MAX_SUBSCRIPTIONS, usually one: an array is smaller than a Map. */
  private subscriptions: Subscription[] = []
  /** Actions wait until the URL's own subscription is set up, so frames keep their order. */
  private ready: Promise<void> | undefined
  private closed = false
  private drainWaiters: (() => void)[] | undefined

  constructor(
    private readonly ctx: StreamContext,
    /** The URL's task and query, until `open` has used them. */
    private taskId: string | undefined,
    private query: Record<string, string | undefined> | undefined,
    private readonly admission: Admission,
  ) {}

  /** When the connection's token expires (ms since the epoch); OpenSockets closes it then. */
  get expires(): number {
    return 'caller' in this.admission ? this.admission.caller.expires : 0
  }

  open(socket: Socket): void {
    this.socket = socket
    const { metrics, historyMax, sockets } = this.ctx
    metrics.connections++
    if ('close' in this.admission) return socket.close(this.admission.close, this.admission.reason)
    sockets.add(socket)
    let options: StreamOptions
    try {
      options = parseOptions(this.query ?? {}, 'debug', historyMax)
    } catch (e) {
      socket.send(errorFrame('validation', (e as Error).message))
      return socket.close(1008, (e as Error).message)
    } finally {
      this.query = undefined
    }
    const taskId = this.taskId
    this.taskId = undefined
    // 1008 tells clients to give up (unknown task); 1013 to come back later (a store is down).
    this.ready = this.subscribe(taskId, options).then((problem) => {
      this.ready = undefined
      if (problem && !this.closed) socket.close(problem.code === 'unavailable' ? 1013 : 1008, problem.message)
    })
  }

  /** Never rejects: whatever a message holds, the client gets a frame and the connection stays open. */
  async message(_socket: Socket, raw: string | Buffer): Promise<void> {
    // A refused connection is closing: nothing it sends is acted on.
    if (!('caller' in this.admission)) return
    if (this.ready) await this.ready
    if (typeof raw !== 'string') return this.error('invalid_message', 'Messages must be text frames of JSON, not binary')
    const { maxJsonDepth } = this.ctx
    if (textDepthExceeds(raw, maxJsonDepth))
      return this.error('invalid_message', `Messages may nest objects and arrays at most ${maxJsonDepth} levels deep`)
    let message: unknown
    try {
      message = JSON.parse(raw)
    } catch {
      return this.error('invalid_message', 'Messages must be JSON objects like {"action":"ping"}')
    }
    if (typeof message !== 'object' || message === null || Array.isArray(message))
      return this.error('invalid_message', 'Messages must be JSON objects like {"action":"ping"}')
    try {
      await this.act(message as Record<string, unknown>)
    } catch (error) {
      this.ctx.logger.error({ err: error }, 'WebSocket action failed')
      if (!this.closed) this.error('internal', 'The action failed on the server; try again')
    }
  }

  drain(): void {
    const waiters = this.drainWaiters
    this.drainWaiters = undefined
    for (const wake of waiters ?? []) wake()
  }

  close(): void {
    const { hub, metrics, sockets } = this.ctx
    this.closed = true
    this.drain()
    metrics.connections--
    sockets.delete(this.socket)
    if ('client' in this.admission) this.admission.client.release()
    for (const subscription of this.subscriptions) hub.unwatch(subscription.taskId, subscription)
    this.subscriptions = []
  }

  get watching(): boolean {
    return this.subscriptions.length > 0
  }

  /** Sends a frame; true when it was queued behind unsent data (Bun's send() returns -1). */
  send(text: string): boolean {
    return this.socket.send(text) === -1
  }

  /** Resolves when the socket has caught up, or closed. */
  drained(): Promise<void> {
    if (this.closed) return Promise.resolve()
    return new Promise((wake) => (this.drainWaiters ??= []).push(wake))
  }

  private forget(subscription: Subscription): void {
    this.subscriptions = this.subscriptions.filter((s) => s !== subscription)
  }

  private error(code: FrameErrorCode, message: string): void {
    this.socket.send(errorFrame(code, message))
  }

  /**
   * The actions are schemas/frames.ts ClientAction, checked by hand rather than with its
   * compiled validator so that each mistake gets a message saying how to fix it.
   */
  private async act(message: Record<string, unknown>): Promise<void> {
    const { action, task_id: named, ...rest } = message
    if ((action === 'subscribe' || action === 'unsubscribe') && named !== undefined && typeof named !== 'string')
      return this.error('validation', `${action} needs task_id as a string: a task id such as 0195f0c2-9a6e-7d4b-8f3a-2c1d0e9b8a7f`)
    // Ids in any form paths take (schemas/common.ts UuidInput).
    const taskId = typeof named === 'string' ? canonicalId(named) : undefined
    switch (action) {
      case 'ping':
        return void this.socket.send(frame('pong'))
      case 'subscribe': {
        if (taskId === undefined) return this.error('validation', 'subscribe needs a task_id')
        if (!('caller' in this.admission) || !this.ctx.access.mayRead(this.admission.caller, taskId))
          return this.error('forbidden', `This token may not read task ${taskId}`)
        let options: StreamOptions
        try {
          options = parseOptions(rest, 'debug', this.ctx.historyMax)
        } catch (e) {
          return this.error('validation', (e as Error).message)
        }
        const problem = await this.subscribe(taskId, options)
        if (problem) this.error(problem.code, problem.message)
        return
      }
      case 'unsubscribe': {
        if (taskId === undefined) return this.error('validation', 'unsubscribe needs a task_id')
        const subscription = this.subscriptions.find((s) => s.taskId === taskId)
        if (!subscription) return this.error('not_subscribed', `Not subscribed to task ${taskId}`)
        this.forget(subscription)
        this.ctx.hub.unwatch(subscription.taskId, subscription)
        return void this.socket.send(frame('unsubscribed', { task_id: subscription.taskId }))
      }
      case undefined:
        return this.error('validation', 'Missing "action": one of ping, subscribe, unsubscribe')
      default:
        return this.error('unknown_action', `Unknown action ${describe(action)}: use ping, subscribe or unsubscribe`)
    }
  }

  /** Subscribes to a task; returns what went wrong for the client, or undefined. */
  private async subscribe(taskId: unknown, options: StreamOptions): Promise<Problem | undefined> {
    const notFound: Problem = { code: 'not_found', message: `Task ${String(taskId)} not found` }
    if (typeof taskId !== 'string') return notFound
    if (this.subscriptions.some((s) => s.taskId === taskId))
      return { code: 'already_subscribed', message: `Already subscribed to task ${taskId}` }
    if (this.subscriptions.length >= MAX_SUBSCRIPTIONS)
      return { code: 'too_many_subscriptions', message: `At most ${MAX_SUBSCRIPTIONS} subscriptions per connection` }
    try {
      if (!(await this.ctx.tasks.exists(taskId))) return notFound
    } catch {
      return { code: 'unavailable', message: 'The task store is unavailable; subscribe again later' }
    }
    if (this.closed) return
    const subscription = new Subscription(this, this.ctx.hub.sharedTaskId(taskId), options.minLevel)
    this.subscriptions.push(subscription)
    try {
      await this.ctx.hub.watch(taskId, subscription, options)
    } catch {
      this.forget(subscription)
      return { code: 'unavailable', message: `History of task ${taskId} is unavailable; subscribe again later` }
    }
  }
}
