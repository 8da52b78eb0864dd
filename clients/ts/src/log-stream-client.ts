import { compareLogIds } from './log-id.js'
import { baseUrlFor, defaultToken } from './api.js'
import { backoffDelay, type BackoffOptions } from './backoff.js'
import { canonicalUuid, type Level, type LogMessage, type StatusChange } from './types.js'

export interface LogStreamOptions {
  /** Access token, sent as `?token=` (default: `TASKLOG_TOKEN` from the environment). */
  token?: string
  /** Only logs of this level and above, for every task of the client (default: all). */
  level?: Level
  /** Interval of `{"action":"ping"}`, in ms (default 15000). */
  heartbeatIntervalMs?: number
  /** A connection that sends nothing for this long after a ping, or after it was opened, is replaced (ms, default 10000). */
  pongTimeoutMs?: number
  /** Delay between reconnection attempts (defaults 500 ms doubling up to 15 s). */
  reconnect?: Partial<BackoffOptions> & {
    /** Consecutive failed attempts before giving up (default: never give up). */
    maxAttempts?: number
  }
}

export interface SubscribeOptions {
  /** Replay every log after this id, then follow. */
  since?: string
  /** Replay the newest n logs, then follow. */
  history?: number
}

export interface StreamEvents {
  /** A connection was opened (the first one or a reconnection). */
  open: { url: string }
  /** The server confirmed a subscription; `recovered` answers a `since`. */
  subscribed: { task_id: string; recovered?: boolean }
  unsubscribed: { task_id: string }
  log: LogMessage
  status: StatusChange
  /**
   * An `error` frame: a refused subscription (`task_id` set when known) or a refused action; or the
   * server closed with 4001 (`unauthorized`: no valid token) or 4003 (`forbidden`), which ends the client.
   */
  error: { message: string; code: string; task_id?: string }
  /** History no longer held every log after `since`: some lines of the task are lost to this client. */
  gap: { task_id: string; since: string }
  /** A connection closed; `reconnecting` says whether another will be opened. */
  close: { code: number; reason: string; reconnecting: boolean }
  /** The next connection attempt is scheduled. */
  reconnecting: { attempt: number; delayMs: number }
}

type Listener<E extends keyof StreamEvents> = (event: StreamEvents[E]) => void

/** What the client knows of one subscribed task. */
interface TaskCursor {
  /** Replay asked for when the task was subscribed; used until the task has a resume point. */
  requested: SubscribeOptions
  /** Id of the newest log delivered to listeners: later logs must be greater. */
  lastId?: string
  /** Resume point of a task that has shown no log yet: just before it went live. */
  liveSince?: string
  /** A `subscribed` frame was received on the current connection. */
  confirmed: boolean
}

/**
 * Close codes after which retrying cannot help: an unknown task or an invalid stream option
 * (1008), a missing or invalid token (4001), a token that may not read the task (4003).
 */
const FINAL_CLOSES: Record<number, string> = { 1008: 'policy_violation', 4001: 'unauthorized', 4003: 'forbidden' }
/** Close code the client uses when it replaces a silent connection. */
const DEAD_PEER = 4000

/**
 * Follows the logs of one or more tasks over one WebSocket, across reconnections.
 *
 * The first task goes in the URL (`/api/v1/ws/tasks/{id}/logs`), the others are added with
 * `{"action":"subscribe"}`. After a lost connection every task is resubscribed with
 * `since=<the last id seen>`, so lines written meanwhile are replayed once, and any log not
 * newer than the last one seen is dropped: listeners see each task's logs without gaps or
 * duplicates, in id order. When history no longer holds a task's missed lines, `gap` says so.
 * A close with code 1008 (unknown task, invalid option), 4001 (no valid token) or 4003 (token
 * not allowed) ends the client without retrying.
 */
export class LogStreamClient {
  readonly baseUrl: string
  /** Resolves once the client stops for good: `close()`, a 1008/4001/4003 close, or reconnection given up. */
  readonly closed: Promise<{ code: number; reason: string }>
  private readonly options: Required<Omit<LogStreamOptions, 'level' | 'token' | 'reconnect'>> & {
    level?: Level
    token?: string
    reconnect: BackoffOptions & { maxAttempts: number }
  }
  private readonly tasks = new Map<string, TaskCursor>()
  private readonly listeners = new Map<keyof StreamEvents, Set<Listener<any>>>()
  private socket: WebSocket | undefined
  private failedAttempts = 0
  private heartbeat: ReturnType<typeof setInterval> | undefined
  private watchdog: ReturnType<typeof setTimeout> | undefined
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  private stopped = false
  private resolveClosed!: (result: { code: number; reason: string }) => void

  constructor(baseUrl = 'ws://localhost:8000', options: LogStreamOptions = {}) {
    this.baseUrl = baseUrlFor(baseUrl, 'ws')
    this.options = {
      level: options.level,
      token: options.token ?? defaultToken(),
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 15_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 10_000,
      reconnect: { baseDelayMs: 500, maxDelayMs: 15_000, maxAttempts: Infinity, ...options.reconnect },
    }
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve))
  }

  /** Adds a listener; returns a function that removes it. */
  on<E extends keyof StreamEvents>(event: E, listener: Listener<E>): () => void {
    let set = this.listeners.get(event)
    if (!set) this.listeners.set(event, (set = new Set()))
    set.add(listener)
    return () => set.delete(listener)
  }

  /**
   * Follows a task (connecting if needed). Throws a TypeError for an id that is not a UUID. Events
   * name the task in canonical form (`canonicalUuid`), whatever form it was given in here.
   */
  subscribe(named: string, options: SubscribeOptions = {}): void {
    const taskId = canonicalUuid(named)
    if (!taskId) throw new TypeError(`Invalid task id ${JSON.stringify(named)}: expected a UUID`)
    if (this.stopped || this.tasks.has(taskId)) return
    this.tasks.set(taskId, { requested: options, lastId: options.since, confirmed: false })
    if (!this.socket) {
      if (!this.reconnectTimer) this.connect()
    } else if (this.socket.readyState === WebSocket.OPEN) this.sendSubscribe(taskId)
    // while connecting, the `open` handler subscribes every task not in the URL
  }

  unsubscribe(named: string): void {
    const taskId = canonicalUuid(named)
    if (!taskId || !this.tasks.delete(taskId)) return
    if (this.socket?.readyState === WebSocket.OPEN) this.send({ action: 'unsubscribe', task_id: taskId })
  }

  /** Tasks currently followed. */
  get taskIds(): string[] {
    return [...this.tasks.keys()]
  }

  /** Stops for good: closes the connection and cancels any reconnection. */
  close(): void {
    this.stop(1000, 'client closed')
  }

  private connect(): void {
    this.reconnectTimer = undefined
    const [first] = this.tasks
    if (this.stopped || !first) return
    const [taskId, cursor] = first
    const url = new URL(`${this.baseUrl}/api/v1/ws/tasks/${taskId}/logs`)
    const { level, token } = this.options
    for (const [key, value] of Object.entries({ ...this.replayOf(cursor), level, token }))
      if (value !== undefined) url.searchParams.set(key, String(value))
    for (const c of this.tasks.values()) c.confirmed = false

    const socket = new WebSocket(url)
    this.socket = socket
    this.armWatchdog()
    socket.addEventListener('open', () => {
      if (socket !== this.socket) return
      if (!this.tasks.has(taskId)) this.send({ action: 'unsubscribe', task_id: taskId }) // dropped while connecting
      for (const id of this.tasks.keys()) if (id !== taskId) this.sendSubscribe(id)
      this.heartbeat = setInterval(() => {
        this.send({ action: 'ping' })
        if (!this.watchdog) this.armWatchdog()
      }, this.options.heartbeatIntervalMs)
      const shown = new URL(url)
      shown.searchParams.delete('token') // listeners may print it
      this.emit('open', { url: shown.toString() })
    })
    socket.addEventListener('message', (event) => {
      if (socket !== this.socket) return
      clearTimeout(this.watchdog) // any frame proves the connection alive
      this.watchdog = undefined
      this.handleFrame(String(event.data))
    })
    socket.addEventListener('close', (event) => {
      if (socket === this.socket) this.connectionLost(event.code, event.reason)
    })
  }

  /** Replay to ask for on (re)subscription: resume after what was seen, else what the caller asked for. */
  private replayOf(cursor: TaskCursor): SubscribeOptions {
    const since = cursor.lastId ?? cursor.liveSince
    return since !== undefined ? { since } : cursor.requested
  }

  private sendSubscribe(taskId: string): void {
    this.send({ action: 'subscribe', task_id: taskId, ...this.replayOf(this.tasks.get(taskId)!), level: this.options.level })
  }

  private handleFrame(text: string): void {
    let frame: { type?: string; data?: any; timestamp?: string }
    try {
      frame = JSON.parse(text)
    } catch {
      return
    }
    const data = frame.data
    switch (frame.type) {
      case 'subscribed': {
        const cursor = this.tasks.get(data?.task_id)
        if (!cursor) return
        cursor.confirmed = true
        this.failedAttempts = 0
        const resumedFrom = this.replayOf(cursor).since
        // A task that has shown no log resumes from the moment it went live: a log id made of
        // the frame's time (server clock) minus 1 ms, so a log written in the same ms is not missed.
        // Only the first time: a reconnection that dies before its replay arrives must not skip it.
        const live = Date.parse(frame.timestamp ?? '')
        if (cursor.lastId === undefined && cursor.liveSince === undefined && !Number.isNaN(live))
          cursor.liveSince = `${live - 1}-0`
        this.emit('subscribed', data)
        if (data.recovered === false && resumedFrom !== undefined) this.emit('gap', { task_id: data.task_id, since: resumedFrom })
        return
      }
      case 'log': {
        const cursor = this.tasks.get(data?.task_id)
        if (!cursor || (cursor.lastId !== undefined && compareLogIds(data.id, cursor.lastId) <= 0)) return
        cursor.lastId = data.id
        return this.emit('log', data as LogMessage)
      }
      case 'status':
        if (this.tasks.has(data?.task_id)) this.emit('status', data as StatusChange)
        return
      case 'unsubscribed':
        return this.emit('unsubscribed', data)
      case 'error': {
        // A refused subscription names its task in the message; an unknown task is forgotten so
        // reconnections skip it (other refusals are retried by the next reconnection).
        const refused = [...this.tasks].find(([id, c]) => !c.confirmed && String(data?.message).includes(id))?.[0]
        if (refused && data?.code === 'not_found') this.tasks.delete(refused)
        return this.emit('error', { message: String(data?.message), code: String(data?.code), task_id: refused })
      }
      // `pong` only feeds the watchdog
    }
  }

  /** (Re)starts the timer that replaces a connection that stays silent. */
  private armWatchdog(): void {
    clearTimeout(this.watchdog)
    const socket = this.socket
    this.watchdog = setTimeout(() => {
      if (socket !== this.socket || !socket) return
      socket.close(DEAD_PEER, 'no answer to ping')
      // A dead peer never completes the closing handshake: move on without waiting for it.
      this.connectionLost(DEAD_PEER, 'no answer to ping')
    }, this.options.pongTimeoutMs)
  }

  private connectionLost(code: number, reason: string): void {
    this.detach()
    if (this.stopped) return
    const attempt = ++this.failedAttempts
    const idle = this.tasks.size === 0 // nothing to follow: the next subscribe() connects again
    const final = FINAL_CLOSES[code]
    const reconnecting = !idle && !final && attempt <= this.options.reconnect.maxAttempts
    this.emit('close', { code, reason, reconnecting })
    if (code === 4001 || code === 4003) this.emit('error', { code: final!, message: reason || final! })
    if (final && code !== 1008) return this.stop(code, reason) // a token problem ends the client even when idle
    if (idle) return
    if (!reconnecting) return this.stop(code, reason)
    const delayMs = backoffDelay(attempt - 1, this.options.reconnect)
    this.emit('reconnecting', { attempt, delayMs })
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs)
  }

  private stop(code: number, reason: string): void {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.reconnectTimer)
    const socket = this.socket
    this.detach()
    socket?.close(1000, 'client closed')
    this.resolveClosed({ code, reason })
  }

  /** Forgets the current socket and its timers; its late events are ignored. */
  private detach(): void {
    clearInterval(this.heartbeat)
    clearTimeout(this.watchdog)
    this.heartbeat = this.watchdog = undefined
    this.socket = undefined
  }

  private send(message: object): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message))
  }

  private emit<E extends keyof StreamEvents>(event: E, payload: StreamEvents[E]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        listener(payload)
      } catch (error) {
        // A throwing listener must not break the stream for the others.
        queueMicrotask(() => {
          throw error
        })
      }
    }
  }
}
