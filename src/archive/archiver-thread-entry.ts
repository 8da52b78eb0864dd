/**
 * The archiver's thread (archiver-thread.ts starts it as a Bun Worker): given its settings, it
 * opens a Redis connection and a database connection of its own, runs an Archiver on them, and
 * posts the archiver's state and counters to the main thread whenever one changes. Asked to
 * stop, it finishes the round under way, closes its connections and exits. Stores it cannot open
 * end the thread (the main thread starts another later).
 */
import { createRedisConnection, type RedisConnection } from '../logs/redis/connection'
import { RedisArchiveSource } from '../logs/redis/archive-source'
import { Archiver } from './archiver'
import type { ArchiverThreadSettings, FromThread, ToThread } from './archiver-thread'
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

async function start({ redisUrl, databaseUrl, timeoutMs, ttlSeconds, leaseMs, instanceId, archiver }: ArchiverThreadSettings): Promise<Running> {
  const redis = createRedisConnection(redisUrl, timeoutMs)
  // The client reconnects on its own; meanwhile the archiver's rounds fail and show it (`failing`).
  redis.on('error', () => {})
  let archive: LogArchive | undefined
  try {
    await redis.connect()
    archive = await LogArchive.open(databaseUrl, timeoutMs)
  } catch (error) {
    redis.destroy()
    post({ type: 'failed', error: `archiver thread cannot start: ${(error as Error).message}` })
    process.exit(1)
  }
  const source = new RedisArchiveSource({ client: redis, instanceId, ttlSeconds, leaseMs, timeoutMs })
  const running = { archiver: new Archiver(source, archive, { ...archiver, logger }), redis, archive }
  mirror(running.archiver)
  running.archiver.start()
  return running
}

async function stop(running: Promise<Running> | undefined): Promise<never> {
  if (running) {
    const { archiver, redis, archive } = await running
    await archiver.stop()
    await Promise.allSettled([redis.close(), archive.close()])
  }
  process.exit(0)
}

let running: Promise<Running> | undefined
self.onmessage = ({ data }: MessageEvent<ToThread>) => {
  if (data.type === 'start') running = start(data.settings)
  else void stop(running)
}
