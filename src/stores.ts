import type { Config } from './config'
import type { HistoryStore } from './logs/history-store'
import { MemoryHistory } from './logs/memory-history'
import { RedisHistory } from './logs/redis-history'
import { SqlTaskStore } from './tasks/sql-task-store'
import type { TaskStore } from './tasks/task-store'

/** Opens the stores the configuration names: Redis or memory for history, SQLite or PostgreSQL for tasks. */
export async function openStores(config: Config): Promise<{ tasks: TaskStore; history: HistoryStore }> {
  const tasks = await SqlTaskStore.open(config.databaseUrl)
  const limits = { ttlSeconds: config.logTtlSeconds, maxPerTask: config.logHistoryMax }
  const history = config.redisUrl ? await RedisHistory.connect({ url: config.redisUrl, ...limits }) : new MemoryHistory(limits)
  return { tasks, history }
}
