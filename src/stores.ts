import type { Config } from './config'
import type { HistoryStore } from './logs/history-store'
import type { LogFeed } from './logs/log-feed'
import { MemoryFeed } from './logs/memory-feed'
import { MemoryHistory } from './logs/memory-history'
import { RedisFeed } from './logs/redis-feed'
import { RedisHistory } from './logs/redis-history'
import { SqlTaskStore } from './tasks/sql-task-store'
import type { TaskStore } from './tasks/task-store'

export interface Stores {
  tasks: TaskStore
  history: HistoryStore
  feed: LogFeed
}

/**
 * Opens the stores the configuration names: SQLite or PostgreSQL for tasks; Redis for history
 * and the live feed (so that instances sharing it form one service), or memory for both.
 */
export async function openStores(config: Config): Promise<Stores> {
  const timeoutMs = config.storeTimeoutMs
  const tasks = await SqlTaskStore.open(config.databaseUrl, { timeoutMs })
  const limits = { ttlSeconds: config.logTtlSeconds, maxPerTask: config.logHistoryMax }
  if (!config.redisUrl) {
    const feed = new MemoryFeed()
    return { tasks, history: new MemoryHistory({ ...limits, maxBytes: config.memoryHistoryMaxBytes, feed }), feed }
  }
  const feed = await RedisFeed.connect({ url: config.redisUrl, timeoutMs })
  // The feed tells the history's appends whose announced subscribers to count (redis-subscribers.ts).
  const history = await RedisHistory.connect({ url: config.redisUrl, ...limits, timeoutMs, follower: feed }).catch(async (error: Error) => {
    await feed.close()
    throw error
  })
  return { tasks, history, feed }
}
