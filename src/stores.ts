import { ArchivedHistory } from './archive/archived-history'
import { Archiver } from './archive/archiver'
import { ArchiverThread } from './archive/archiver-thread'
import { LogArchive } from './archive/log-archive'
import type { RunningArchiver } from './archive/running-archiver'
import type { Config } from './config'
import { openBackend, type ArchiveSource, type LogBackend } from './logs/backend'
import { SqlTaskStore, parseDatabaseUrl } from './tasks/sql-task-store'
import type { TaskStore } from './tasks/task-store'

export interface Stores {
  tasks: TaskStore
  /** With ARCHIVE_DAYS > 0, its history reads across the archive too (archive/archived-history.ts). */
  logs: LogBackend
  /** Present with ARCHIVE_DAYS > 0 (unless ARCHIVER=off), running. */
  archiver?: RunningArchiver
}

/**
 * Starts the archiver. With Redis it runs on a thread of its own (archiver-thread.ts), with
 * connections of its own, so that no archive work holds up the event loop serving requests.
 * It runs on this thread with the memory engine (its history lives here) and with a SQLite in
 * memory (a database only this thread's connection reaches).
 */
function startArchiver(
  config: Config,
  source: ArchiveSource,
  archive: LogArchive,
  thread: { instanceId: string; leaseMs: number },
  logger?: Pick<Console, 'warn' | 'info'>,
): RunningArchiver {
  const options = { archiveDays: config.archiveDays, intervalMs: config.archiveIntervalMs, batchSize: config.archiveBatch }
  const { redisUrl, databaseUrl, storeTimeoutMs: timeoutMs, logTtlSeconds: ttlSeconds } = config
  const archiver =
    redisUrl && !parseDatabaseUrl(databaseUrl).inMemory
      ? new ArchiverThread(source, { redisUrl, databaseUrl, timeoutMs, ttlSeconds, ...thread, archiver: options }, { logger })
      : new Archiver(source, archive, { ...options, logger })
  archiver.start()
  return archiver
}

/**
 * Opens the stores the configuration names: SQLite or PostgreSQL for tasks; the log backend
 * (Redis, so that instances sharing it form one service, or memory) for history, feed and
 * presence; and, with ARCHIVE_DAYS > 0, the archive in the task database and its archiver.
 */
export async function openStores(config: Config, logger?: Pick<Console, 'warn' | 'info'>): Promise<Stores> {
  const timeoutMs = config.storeTimeoutMs
  const tasks = await SqlTaskStore.open(config.databaseUrl, { timeoutMs })
  const archiving = config.archiveDays > 0
  // A task leased by an instance that died is taken over after this; a live one renews it every batch.
  const leaseMs = 4 * timeoutMs
  // The id of this instance in Redis, which the archiver's thread shares.
  const instanceId = crypto.randomUUID()
  const logs = await openBackend({
    redisUrl: config.redisUrl,
    ttlSeconds: config.logTtlSeconds,
    maxPerTask: config.logHistoryMax,
    timeoutMs,
    memoryMaxBytes: config.memoryHistoryMaxBytes,
    logger,
    rateLimit: config.rateLimit,
    // The largest batch a request may send (routes/logs.ts): MAX_BATCH, RATE_LIMIT_BURST, MAX_BODY_BYTES.
    groupCommit: {
      logs: config.rateLimit.perSecond > 0 ? Math.min(config.maxBatch, config.rateLimit.burst) : config.maxBatch,
      chars: config.maxBodyBytes,
    },
    instanceId,
    ...(archiving && { archive: { leaseMs } }),
  }).catch(async (error: Error) => {
    await tasks.close()
    throw error
  })
  if (!archiving) return { tasks, logs }
  const archive = await LogArchive.open(config.databaseUrl, timeoutMs).catch(async (error: Error) => {
    await Promise.allSettled([tasks.close(), logs.close()])
    throw error
  })
  // ARCHIVER=off: this instance reads the archive, and instances sharing its Redis archive (leases split the work).
  const archiver =
    config.archiver === 'on' ? startArchiver(config, logs.archiveSource!, archive, { instanceId, leaseMs }, logger) : undefined
  const history = new ArchivedHistory(logs.history, archive, { archiveDays: config.archiveDays })
  const archived: LogBackend = {
    ...logs,
    history,
    async close() {
      await archiver?.stop()
      await Promise.allSettled([logs.close(), archive.close()])
    },
  }
  return { tasks, logs: archived, ...(archiver && { archiver }) }
}

/** Closes every store, whatever fails. */
export const closeStores = ({ tasks, logs }: Stores) => Promise.allSettled([tasks.close(), logs.close()])
