/**
 * The archiver's thread (archiver-thread.ts starts it as a Bun Worker): given its settings, it
 * opens a Redis connection and a database connection of its own, runs an Archiver on them, and
 * posts the archiver's state and counters to the main thread whenever one changes. Stores it
 * cannot open are tried again until they open. Asked to stop, it finishes the round under way,
 * closes its connections and exits.
 */
import { createRedisConnection, type RedisConnection } from '../logs/redis/connection'
import { RedisArchiveSource } from '../logs/redis/archive-source'
import { Archiver } from './archiver'
import type { ArchiverThreadSettings, FromThread, ToThread } from './archiver-thread'
import { withTimeout } from '../timeout'
import { LogArchive } from './log-archive'

declare const self: Worker

const post = (message: FromThread) => self.postMessage(message)

/** The archiver's lines go to the main thread's logger. */
const logger = {
  warn: (message: string) => post({ type: 'log', level: 'warn', message }),
  info: (message: string) => post({ type: 'log', level: 'info', message }),
}

/** The fields of an Archiver the main thread shows. */
const SHOWN = ['state', 'lastError', 'rowsWritten', 'errors', 'gaps'] as const

/**
 * Posts the archiver's shown fields whenever one changes, once per turn of this thread's loop:
 * each becomes an accessor over its value (the Archiver itself knows nothing of threads).
 */
function mirror(archiver: Archiver): void {
  let queued = false
  const send = () => {
    queued = false
    const { state, lastError, rowsWritten, errors, gaps } = archiver
    post({ type: 'status', state, lastError, rowsWritten, errors, gaps })
  }
  for (const field of SHOWN) {
    let value: unknown = archiver[field]
    Object.defineProperty(archiver, field, {
      get: () => value,
      set: (changed: unknown) => {
        value = changed
        if (!queued) queueMicrotask(send)
        queued = true
      },
    })
  }
}

interface Running {
  archiver: Archiver
  redis: RedisConnection
  archive: LogArchive
}

/** Pauses between two attempts to open the stores, doubled after each failure up to the max (ms). */
const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 10_000

let stopping = false
/** Ends the pause between two attempts to open the stores, on stop. */
let wake = () => {}

/**
 * Opens a Redis connection and the archive, again and again until both open (or the thread is
 * asked to stop): the thread outlives stores that are down, shown `failing` with the error.
 * Returns undefined when stopped first.
 */
async function openStores(settings: ArchiverThreadSettings): Promise<Omit<Running, 'archiver'> & { errors: number } | undefined> {
  for (let errors = 0; !stopping; errors++) {
    const redis = createRedisConnection(settings.redisUrl, settings.timeoutMs)
    // The client reconnects on its own; meanwhile the archiver's rounds fail and show it (`failing`).
    redis.on('error', () => {})
    try {
      // A Redis that cannot be reached is tried again by the client forever: this attempt ends.
      await withTimeout(redis.connect(), settings.timeoutMs, `no connection to Redis within ${settings.timeoutMs} ms`)
      return { redis, archive: await LogArchive.open(settings.databaseUrl, settings.timeoutMs), errors }
    } catch (error) {
      redis.destroy()
      const lastError = `cannot open the archive's stores: ${(error as Error).message}`
      if (errors === 0) logger.warn(`[archive] ${lastError}; retrying`)
      post({ type: 'status', state: 'failing', lastError, rowsWritten: 0, errors: errors + 1, gaps: 0 })
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** errors))
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }
  return undefined
}

async function start(settings: ArchiverThreadSettings): Promise<Running | undefined> {
  const opened = await openStores(settings)
  if (!opened) return undefined
  const { redis, archive, errors } = opened
  const { instanceId, ttlSeconds, leaseMs, timeoutMs } = settings
  const source = new RedisArchiveSource({ client: redis, instanceId, ttlSeconds, leaseMs, timeoutMs })
  const archiver = new Archiver(source, archive, { ...settings.archiver, logger })
  // Failed attempts to open the stores count as failed rounds.
  archiver.errors = errors
  mirror(archiver)
  archiver.start()
  return { archiver, redis, archive }
}

async function stop(running: Promise<Running | undefined> | undefined): Promise<never> {
  stopping = true
  wake()
  const stores = await running
  if (stores) {
    await stores.archiver.stop()
    await Promise.allSettled([stores.redis.close(), stores.archive.close()])
  }
  process.exit(0)
}

let running: Promise<Running | undefined> | undefined
self.onmessage = ({ data }: MessageEvent<ToThread>) => {
  if (data.type === 'start') running = start(data.settings)
  else void stop(running)
}
