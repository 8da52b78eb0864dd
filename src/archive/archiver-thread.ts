/**
 * The archiver on a thread of its own (a Bun Worker running archiver-thread-entry.ts, with its
 * own Redis and database connections), so that reading batches from Redis and handing them to
 * the database never holds up the event loop that serves requests. The thread posts its state
 * and counters as they change; this side shows them (RunningArchiver) and reads the backlog
 * with this instance's own archive source. A thread that dies (an exception nothing caught) is
 * started again with backoff, the archiver shown `failing` meanwhile; its counters carry over.
 * Stores that are down do not end it: it retries them itself.
 */
import type { ArchiveSource } from '../logs/backend'
import type { ArchiverOptions } from './archiver'
import {
  backlogOf,
  readinessOf,
  type ArchiveBacklog,
  type ArchiveReadiness,
  type ArchiverState,
  type RunningArchiver,
} from './running-archiver'

/** What the thread is given: the configuration it works with, from this thread. */
export interface ArchiverThreadSettings {
  redisUrl: string
  databaseUrl: string
  /** Every call to Redis and the database answers within this many ms, or fails. */
  timeoutMs: number
  ttlSeconds: number
  /** How long a task stays leased to an instance that stopped renewing it. */
  leaseMs: number
  /** The id this instance's leases carry in Redis. */
  instanceId: string
  archiver: Pick<ArchiverOptions, 'archiveDays' | 'intervalMs' | 'batchSize'>
}

interface Counters {
  rowsWritten: number
  errors: number
  gaps: number
}

/** A message from this thread to the archiver's. */
export type ToThread = { type: 'start'; settings: ArchiverThreadSettings } | { type: 'stop' }

/** A message from the archiver's thread: its state and counters, or a line for the log. */
export type FromThread =
  | ({ type: 'status'; state: ArchiverState; lastError: string | undefined } & Counters)
  | { type: 'log'; level: 'warn' | 'info'; message: string }

/**
 * A thread that died is started again after this long, doubled for each death in a row, up to
 * MAX: a new thread costs its start-up CPU, and Bun keeps some memory of every thread that ended.
 */
const MIN_RESTART_MS = 1000
const MAX_RESTART_MS = 60_000
/** A thread that ran this long before it died starts again with the shortest backoff. */
const STABLE_MS = 60_000
/** A thread still running this long after it was asked to stop is terminated (its batches in flight are archived again later). */
const STOP_GRACE_MS = 10_000

/**
 * The thread's program: beside this file, or in a compiled binary (one of the build's entry
 * points: package.json `build`) where the build put it, below the folder of src/index.ts.
 */
const ENTRY = Bun.main.startsWith('/$bunfs/')
  ? new URL('archive/archiver-thread-entry.js', new URL('.', `file://${Bun.main}`)).pathname
  : new URL('./archiver-thread-entry.ts', import.meta.url).href

export class ArchiverThread implements RunningArchiver {
  state: ArchiverState = 'starting'
  lastError: string | undefined
  /** Counters of the threads that ended, and of the one running. */
  #ended: Counters = { rowsWritten: 0, errors: 0, gaps: 0 }
  #running: Counters = { rowsWritten: 0, errors: 0, gaps: 0 }
  #worker: Worker | undefined
  #exited: Promise<void> = Promise.resolve()
  #restart: ReturnType<typeof setTimeout> | undefined
  /** Deaths in a row, each within STABLE_MS of its start. */
  #failures = 0
  #startedAt = 0
  /** Why the thread is dying: the exception nothing caught in it. */
  #cause: string | undefined
  #stopping = false
  readonly #logger: Pick<Console, 'warn' | 'info'> | undefined
  readonly #entry: string

  /** `entry`: the thread's program (ENTRY; a test gives one that fails). */
  constructor(
    private readonly source: ArchiveSource,
    private readonly settings: ArchiverThreadSettings,
    { logger, entry = ENTRY }: { logger?: Pick<Console, 'warn' | 'info'>; entry?: string } = {},
  ) {
    this.#logger = logger
    this.#entry = entry
  }

  get rowsWritten(): number {
    return this.#ended.rowsWritten + this.#running.rowsWritten
  }

  get errors(): number {
    return this.#ended.errors + this.#running.errors
  }

  get gaps(): number {
    return this.#ended.gaps + this.#running.gaps
  }

  start(): void {
    this.#restart = undefined
    this.#startedAt = performance.now()
    this.#cause = undefined
    const worker = new Worker(this.#entry)
    this.#worker = worker
    this.#exited = new Promise((resolve) =>
      worker.addEventListener('close', () => {
        this.#closed()
        resolve()
      }),
    )
    worker.addEventListener('message', ({ data }: MessageEvent<FromThread>) => this.#receive(data))
    // An exception nothing caught in the thread: it closes next. Bun's message shows the source
    // around the throw, then `error: <message>`.
    worker.addEventListener('error', (event) => {
      const line = event.message.split('\n').findLast((l) => l.startsWith('error: '))
      this.#cause = line === undefined ? event.message : line.slice('error: '.length)
    })
    worker.postMessage({ type: 'start', settings: this.settings } satisfies ToThread)
  }

  backlog(): Promise<ArchiveBacklog> {
    return backlogOf(this.source, Date.now())
  }

  readiness(): Promise<ArchiveReadiness> {
    return readinessOf(this)
  }

  /** Asks the thread to finish its round and close its connections, and waits until it has exited. */
  async stop(): Promise<void> {
    this.#stopping = true
    clearTimeout(this.#restart)
    const worker = this.#worker
    if (worker) {
      worker.postMessage({ type: 'stop' } satisfies ToThread)
      const hung = setTimeout(() => worker.terminate(), STOP_GRACE_MS)
      await this.#exited
      clearTimeout(hung)
    }
    this.state = 'stopped'
  }

  #receive(message: FromThread): void {
    if (message.type === 'log') return this.#logger?.[message.level](message.message)
    const { state, lastError, rowsWritten, errors, gaps } = message
    this.#running = { rowsWritten, errors, gaps }
    this.state = state
    this.lastError = lastError
  }

  /** The thread ended: on stop, as asked; otherwise it died, and starts again after a backoff. */
  #closed(): void {
    this.#worker = undefined
    this.#ended = { rowsWritten: this.rowsWritten, errors: this.errors + (this.#stopping ? 0 : 1), gaps: this.gaps }
    this.#running = { rowsWritten: 0, errors: 0, gaps: 0 }
    if (this.#stopping) return
    if (performance.now() - this.#startedAt >= STABLE_MS) this.#failures = 0
    const delay = Math.min(MAX_RESTART_MS, MIN_RESTART_MS * 2 ** this.#failures)
    this.#failures++
    this.state = 'failing'
    this.lastError = `archiver thread ${this.#cause ? `failed: ${this.#cause}` : 'exited'}`
    this.#logger?.warn(`[archive] ${this.lastError}; starting the archiver thread again in ${delay} ms`)
    this.#restart = setTimeout(() => this.start(), delay)
  }
}
