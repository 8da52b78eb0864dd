import type { Subprocess } from 'bun'
import type { Config } from './config'
import { createLogger } from './logger'
import { closeStores, openStores } from './stores'

/** A worker that dies is started again after this long, doubled for each death in a row, up to MAX. */
const MIN_BACKOFF_MS = 100
const MAX_BACKOFF_MS = 10_000
/** A worker that ran this long before it died starts again with the shortest backoff. */
const STABLE_MS = 30_000
/** A worker still running this long after the supervisor passed on SIGTERM is killed. */
const STOP_GRACE_MS = 15_000

/** The message a worker sends its supervisor once it listens. */
export const LISTENING = 'listening'

/**
 * Why `config.workers` processes cannot serve this configuration together, or undefined. They
 * share history and live delivery through Redis, and tasks through the task database: SQLite is
 * one file in WAL mode with a busy timeout, which processes on one host share safely; an
 * in-memory one would be a database per process.
 */
function workersRefusal({ workers, redisUrl, databaseUrl, port }: Config): string | undefined {
  if (!redisUrl) return `WORKERS=${workers} needs REDIS_URL: the workers share history and live delivery through Redis`
  if (/^sqlite:(\/\/)?:memory:$/i.test(databaseUrl))
    return `WORKERS=${workers} cannot share DATABASE_URL=${databaseUrl} (a database per process): use a SQLite file or PostgreSQL`
  if (port === 0) return `WORKERS=${workers} needs a fixed PORT: with PORT=0 each worker would listen on a port of its own`
  if (process.platform !== 'linux') return `WORKERS=${workers} needs Linux, where the workers can share one port (SO_REUSEPORT)`
  return undefined
}

/** This program again: a compiled binary is its own entry point; otherwise Bun runs the script. */
const workerCommand = () => (Bun.main.startsWith('/$bunfs/') ? [process.execPath] : [process.execPath, Bun.main])

interface Worker {
  readonly id: number
  proc: Subprocess | undefined
  startedAt: number
  /** It has listened at least once: a later exit is a crash to recover from, not a bad start. */
  listened: boolean
  /** Deaths in a row, each within STABLE_MS of its start. */
  failures: number
  restart: ReturnType<typeof setTimeout> | undefined
}

/**
 * Runs `config.workers` processes of this program on one port (each a full instance, joined
 * through Redis), starts again one that dies (with backoff), passes SIGTERM and SIGINT on to all
 * of them, and exits once all have stopped: 0 when each stopped cleanly. Their output goes
 * through as it is. Never returns.
 */
export async function supervise(config: Config): Promise<never> {
  const refusal = workersRefusal(config)
  if (refusal) {
    console.error(`tasklog: ${refusal}`)
    process.exit(1)
  }
  const logger = createLogger({ level: config.logLevel, format: config.logFormat })
  // Opened once before the workers: a store that cannot be reached is one line here, not one per
  // worker, and the schema (and SQLite's WAL mode) is in place before they race to create it.
  await openStores(config, logger)
    .then(closeStores)
    .catch((error: Error) => {
      console.error(`tasklog: cannot open stores: ${error.message}`)
      process.exit(1)
    })

  const workers: Worker[] = Array.from({ length: config.workers }, (_, i) => ({
    id: i + 1,
    proc: undefined,
    startedAt: 0,
    listened: false,
    failures: 0,
    restart: undefined,
  }))
  let stopping = false
  let failed = false

  const finishIfDone = () => {
    if (workers.every((w) => w.proc === undefined && w.restart === undefined)) process.exit(failed ? 1 : 0)
  }

  const stopAll = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    logger.info(`tasklog: ${signal} received, stopping ${workers.length} workers`)
    for (const w of workers) {
      clearTimeout(w.restart)
      w.restart = undefined
      w.proc?.kill(signal)
    }
    setTimeout(() => {
      for (const w of workers) w.proc?.kill('SIGKILL')
    }, STOP_GRACE_MS).unref()
    finishIfDone()
  }

  const start = (w: Worker) => {
    w.restart = undefined
    w.startedAt = performance.now()
    w.proc = Bun.spawn(workerCommand(), {
      env: { ...process.env, TASKLOG_WORKER: String(w.id) },
      stdio: ['ignore', 'inherit', 'inherit'],
      ipc: (message) => {
        if (message === LISTENING) w.listened = true
      },
      onExit: (_, code, signal) => exited(w, code, signal),
    })
  }

  const exited = (w: Worker, code: number | null, signal: number | NodeJS.Signals | null) => {
    w.proc = undefined
    const how = signal ? `signal ${signal}` : `code ${code}`
    if (stopping) {
      if (code !== 0) failed = true
      return finishIfDone()
    }
    if (!w.listened) {
      // It never served: the configuration or the port is at fault, and a restart fails alike.
      // Its own message is on stderr already.
      logger.error({ worker: w.id }, `tasklog: worker ${w.id} exited with ${how} before listening; stopping`)
      failed = true
      return stopAll('SIGTERM')
    }
    if (performance.now() - w.startedAt >= STABLE_MS) w.failures = 0
    const delay = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** w.failures)
    w.failures++
    logger.warn({ worker: w.id }, `tasklog: worker ${w.id} exited with ${how}; starting it again in ${delay} ms`)
    w.restart = setTimeout(() => start(w), delay)
  }

  process.on('SIGTERM', () => stopAll('SIGTERM'))
  process.on('SIGINT', () => stopAll('SIGINT'))
  logger.info(`tasklog: starting ${workers.length} workers on port ${config.port}`)
  for (const w of workers) start(w)
  return new Promise<never>(() => {})
}
