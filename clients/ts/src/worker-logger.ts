import { authorization, baseUrlFor, defaultToken, toApiError } from './api.js'
import { backoffDelay, retryAfterMs, sleep, type BackoffOptions } from './backoff.js'
import { canonicalUuid, isLevel, type BatchAccepted, type Level, type Metadata } from './types.js'

export interface WorkerLoggerOptions {
  /** Access token, sent as `Authorization: Bearer` (default: `TASKLOG_TOKEN` from the environment). */
  token?: string
  /** How long a line may wait for others to share its request, in ms (default 250). */
  flushIntervalMs?: number
  /** Lines per request (default 100; the server accepts up to MAX_BATCH, 1000 by default). */
  maxBatchSize?: number
  /** JSON bytes per request (default 1 MiB, well under the server's body limit). */
  maxBatchBytes?: number
  /** Lines held while the server cannot be reached; beyond it the oldest are dropped (default 10000). */
  maxQueueSize?: number
  /** Attempts per batch before its lines are given up (default 8); a `429` answer is not counted, as the server asks to wait, not to give up. */
  maxAttempts?: number
  /** Backoff between attempts (defaults 250 ms doubling up to 15 s); `Retry-After` takes precedence. */
  retry?: Partial<BackoffOptions>
  /** Per request, in ms (default 10000). */
  requestTimeoutMs?: number
  /** Told once per cause when lines are lost (default: console.warn). */
  onProblem?: (message: string) => void
}

export interface DeliveryError {
  /** HTTP status, absent for network errors. */
  status?: number
  code: string
  message: string
}

export interface LoggerStats {
  /** Lines the server stored. */
  sent: number
  /** Lines the server refused with a 4xx other than 429 (retrying would not help), or that could not be encoded. */
  rejected: number
  /** Oldest lines dropped because the queue was full. */
  overflowed: number
  /** Lines given up after `maxAttempts`, or still unsent when `close()` timed out. */
  failed: number
  /** Requests repeated after a network error, 5xx or 429. */
  retries: number
  /** Lines queued or in flight. */
  pending: number
  /** Subscribers reached by the last stored batch. */
  broadcasted: number
  /** Id of the newest stored line. */
  lastId: string | null
  lastError: DeliveryError | null
}

type Outcome =
  | { kind: 'stored'; body: BatchAccepted }
  | { kind: 'rejected'; error: DeliveryError; badIndexes: Set<number> }
  | { kind: 'retry'; error: DeliveryError; delayMs?: number; counted: boolean }

const BATCH_INDEX = /^\/logs\/(\d+)(\/|$)/

/**
 * Sends a subtask's log lines to tasklog without ever slowing down or failing the task.
 *
 * `debug/info/warning/error` return at once: the line is stamped with the current time (so a
 * retried line keeps the time it was logged) and queued. Lines go out in batches through
 * `POST /api/v1/subtasks/{id}/logs`, one request at a time so their order is kept. Network
 * errors, 5xx and 429 are retried with exponential backoff and jitter, honouring `Retry-After`
 * (a 429 is retried until it succeeds or `close()` times out); other 4xx answers are final (the
 * lines are counted as rejected). Each batch carries one `Idempotency-Key`, the same on every
 * retry, so a batch stored by a request whose answer was lost is not stored twice.
 */
export class WorkerLogger {
  readonly url: string
  private readonly options: Required<Omit<WorkerLoggerOptions, 'retry' | 'token'>> & { retry: BackoffOptions }
  /** Encoded lines (JSON objects), oldest first. */
  private queue: string[] = []
  private inFlight: string[] = []
  /** `Idempotency-Key` of the batch in flight: one per batch, reused by its retries. */
  private inFlightKey = ''
  private readonly headers: Record<string, string>
  private timer: ReturnType<typeof setTimeout> | undefined
  private draining: Promise<void> | undefined
  private closed = false
  /** Aborted when `close()` runs out of time: ends the request and backoff in progress. */
  private readonly stopping = new AbortController()
  private readonly reported = new Set<string>()
  private readonly counts: Omit<LoggerStats, 'pending'> = {
    sent: 0,
    rejected: 0,
    overflowed: 0,
    failed: 0,
    retries: 0,
    broadcasted: 0,
    lastId: null,
    lastError: null,
  }

  /** In canonical form, whatever form it was given in. */
  readonly subtaskId: string

  constructor(subtaskId: string, baseUrl = 'http://localhost:8000', options: WorkerLoggerOptions = {}) {
    const id = canonicalUuid(subtaskId)
    if (!id) throw new TypeError(`Invalid subtask id ${JSON.stringify(subtaskId)}: expected a UUID`)
    this.subtaskId = id
    this.url = `${baseUrlFor(baseUrl, 'http')}/api/v1/subtasks/${id}/logs`
    this.headers = { 'content-type': 'application/json', ...authorization(options.token ?? defaultToken()) }
    this.options = {
      flushIntervalMs: options.flushIntervalMs ?? 250,
      maxBatchSize: options.maxBatchSize ?? 100,
      maxBatchBytes: options.maxBatchBytes ?? 1024 * 1024,
      maxQueueSize: options.maxQueueSize ?? 10_000,
      maxAttempts: options.maxAttempts ?? 8,
      retry: { baseDelayMs: 250, maxDelayMs: 15_000, ...options.retry },
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      onProblem: options.onProblem ?? ((message) => console.warn(`tasklog: ${message}`)),
    }
  }

  debug(message: string, metadata?: Metadata): void {
    this.log('debug', message, metadata)
  }
  info(message: string, metadata?: Metadata): void {
    this.log('info', message, metadata)
  }
  warning(message: string, metadata?: Metadata): void {
    this.log('warning', message, metadata)
  }
  error(message: string, metadata?: Metadata): void {
    this.log('error', message, metadata)
  }

  /** Queues one line; never throws. */
  log(level: Level, message: string, metadata?: Metadata | null): void {
    if (this.closed) return this.report('closed', 'a line was logged after close() and is ignored')
    let line: string
    try {
      if (!isLevel(level)) throw new Error(`unknown level ${JSON.stringify(level)}`)
      line = JSON.stringify({ level, message: String(message), metadata, timestamp: new Date().toISOString() })
    } catch (error) {
      this.counts.rejected++
      return this.report('encode', `a line could not be encoded and is dropped: ${(error as Error).message}`)
    }
    this.queue.push(line)
    const excess = this.queue.length - this.options.maxQueueSize
    if (excess > 0) {
      this.queue.splice(0, excess)
      this.counts.overflowed += excess
      this.report('overflow', `more than ${this.options.maxQueueSize} lines waiting: dropping the oldest (see stats.overflowed)`)
    }
    this.schedule()
  }

  get stats(): LoggerStats {
    return { ...this.counts, pending: this.queue.length + this.inFlight.length }
  }

  /** Sends everything queued now and resolves when it is stored or given up. Never rejects. */
  async flush(): Promise<LoggerStats> {
    while (this.queue.length > 0 || this.draining) {
      this.startDraining()
      await this.draining
    }
    return this.stats
  }

  /**
   * Flushes and stops accepting lines. After `timeoutMs` (default: no limit beyond
   * `maxAttempts`) the lines still unsent are counted as failed. Never rejects.
   */
  async close(timeoutMs = Infinity): Promise<LoggerStats> {
    this.closed = true
    const deadline = Number.isFinite(timeoutMs) ? setTimeout(() => this.stopping.abort(), timeoutMs) : undefined
    const stats = await this.flush()
    clearTimeout(deadline)
    return stats
  }

  private schedule(): void {
    if (this.draining) return // the running loop takes new lines as they come
    if (this.queue.length >= this.options.maxBatchSize) this.startDraining()
    else this.timer ??= setTimeout(() => this.startDraining(), this.options.flushIntervalMs)
  }

  private startDraining(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.draining ??= this.drain().finally(() => {
      this.draining = undefined
      if (this.queue.length > 0) this.schedule() // logged between the loop's last check and now
    })
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      if (this.stopping.signal.aborted) {
        this.giveUp(this.queue.splice(0).length, { code: 'closed', message: 'close() timed out before these lines were sent' })
        return
      }
      this.inFlight = this.takeBatch()
      this.inFlightKey = crypto.randomUUID()
      await this.deliver()
      this.inFlight = []
    }
  }

  /** The oldest lines that fit in one request (at least one). */
  private takeBatch(): string[] {
    let n = 0
    let bytes = 0
    while (n < this.queue.length && n < this.options.maxBatchSize) {
      bytes += this.queue[n]!.length + 1
      if (n > 0 && bytes > this.options.maxBatchBytes) break
      n++
    }
    return this.queue.splice(0, n)
  }

  /** Delivers `inFlight` until it is stored, refused or given up. */
  private async deliver(): Promise<void> {
    // `tries` counts towards maxAttempts (429s do not), `retries` paces the backoff (all of them).
    for (let tries = 1, retries = 0; ;) {
      const outcome = await this.post(this.inFlight, this.inFlightKey)
      if (outcome.kind === 'stored') {
        this.counts.sent += outcome.body.accepted
        this.counts.broadcasted = outcome.body.broadcasted
        this.counts.lastId = outcome.body.last_id
        return
      }
      this.counts.lastError = outcome.error
      if (outcome.kind === 'rejected') {
        // A batch is all or nothing: when the server names the bad lines, drop only those.
        const { badIndexes } = outcome
        const rejected = badIndexes.size > 0 && badIndexes.size < this.inFlight.length ? badIndexes.size : this.inFlight.length
        this.counts.rejected += rejected
        const { status, message } = outcome.error
        this.report(
          `rejected:${status}`,
          `the server refused ${rejected} line(s) with ${status} (${message}); they are dropped, not retried`,
        )
        if (rejected === this.inFlight.length) return
        this.inFlight = this.inFlight.filter((_, i) => !badIndexes.has(i))
        this.inFlightKey = crypto.randomUUID() // another body: another batch
        tries = 1
        retries = 0
        continue
      }
      if ((outcome.counted && tries >= this.options.maxAttempts) || this.stopping.signal.aborted) {
        this.giveUp(this.inFlight.length, outcome.error)
        return
      }
      if (outcome.counted) tries++
      this.counts.retries++
      await sleep(outcome.delayMs ?? backoffDelay(retries++, this.options.retry), this.stopping.signal)
    }
  }

  private async post(lines: string[], idempotencyKey: string): Promise<Outcome> {
    let res: Response
    try {
      res = await fetch(this.url, {
        method: 'POST',
        headers: { ...this.headers, 'idempotency-key': idempotencyKey },
        body: `{"logs":[${lines.join(',')}]}`,
        signal: AbortSignal.any([this.stopping.signal, AbortSignal.timeout(this.options.requestTimeoutMs)]),
      })
    } catch (error) {
      return { kind: 'retry', error: { code: 'network', message: (error as Error).message }, counted: true }
    }
    if (res.status === 201) {
      try {
        return { kind: 'stored', body: (await res.json()) as BatchAccepted }
      } catch (error) {
        // The connection broke while reading the answer: the batch may or may not be stored.
        return { kind: 'retry', error: { code: 'network', message: (error as Error).message }, counted: true }
      }
    }
    const failure = await toApiError(res)
    const error = { status: res.status, code: failure.code, message: failure.message }
    if (res.status === 429 || res.status === 408 || res.status >= 500)
      return { kind: 'retry', error, delayMs: retryAfterMs(res.headers.get('retry-after')), counted: res.status !== 429 }
    const badIndexes = new Set<number>()
    for (const detail of failure.details ?? []) {
      const index = BATCH_INDEX.exec(detail.path)?.[1]
      if (index !== undefined && Number(index) < lines.length) badIndexes.add(Number(index))
    }
    return { kind: 'rejected', error, badIndexes }
  }

  private giveUp(lines: number, error: DeliveryError): void {
    this.counts.failed += lines
    this.counts.lastError = error
    this.report('failed', `gave up on ${lines} line(s): ${error.message}`)
  }

  private report(cause: string, message: string): void {
    if (this.reported.has(cause)) return
    this.reported.add(cause)
    try {
      this.options.onProblem(message)
    } catch {}
  }
}
