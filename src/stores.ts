import { ArchivedHistory } from './archive/archived-history'
import { Archiver } from './archive/archiver'
import { LogArchive } from './archive/log-archive'
import type { Config } from './config'
import { openBackend, type LogBackend } from './logs/backend'
import { SqlTaskStore } from './tasks/sql-task-store'
import type { TaskStore } from './tasks/task-store'

export interface Stores {
  tasks: TaskStore
  /** With ARCHIVE_DAYS > 0, its history reads across the archive too (archive/archived-history.ts). */
  logs: LogBackend
  /** Present with ARCHIVE_DAYS > 0 (unless ARCHIVER=off), running. */
  archiver?: Archiver
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
    config.archiver === 'on'
      ? new Archiver(logs.archiveSource!, archive, {
          archiveDays: config.archiveDays,
          intervalMs: config.archiveIntervalMs,
          batchSize: config.archiveBatch,
          logger,
        })
      : undefined
  archiver?.start()
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
