import type { Config } from './config'
import { openBackend, type LogBackend } from './logs/backend'
import { SqlTaskStore } from './tasks/sql-task-store'
import type { TaskStore } from './tasks/task-store'

export interface Stores {
  tasks: TaskStore
  logs: LogBackend
}

/**
 * Opens the stores the configuration names: SQLite or PostgreSQL for tasks; the log backend
 * (Redis, so that instances sharing it form one service, or memory) for history, feed and presence.
 */
export async function openStores(config: Config, logger?: Pick<Console, 'warn' | 'info'>): Promise<Stores> {
  const timeoutMs = config.storeTimeoutMs
  const tasks = await SqlTaskStore.open(config.databaseUrl, { timeoutMs })
  const logs = await openBackend({
    redisUrl: config.redisUrl,
    ttlSeconds: config.logTtlSeconds,
    maxPerTask: config.logHistoryMax,
    timeoutMs,
    memoryMaxBytes: config.memoryHistoryMaxBytes,
    logger,
    rateLimit: config.rateLimit,
  }).catch(async (error: Error) => {
    await tasks.close()
    throw error
  })
  return { tasks, logs }
}

/** Closes every store, whatever fails. */
export const closeStores = ({ tasks, logs }: Stores) => Promise.allSettled([tasks.close(), logs.close()])
