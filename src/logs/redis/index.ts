/**
 * The Redis engine, for instances that share a Redis or a Redis Cluster (connection.ts): history
 * in one stream per task, the live feed on one pub/sub channel per task, presence in one hash per
 * task (keys.ts). Two connections per instance (on a cluster, two per master): one for commands
 * (history, status publishes, presence) and one subscribed to the channels of the tasks this
 * instance follows, which on a single Redis also carries this instance's appends of those
 * tasks (feed.ts).
 */
import { withTimeout } from '../../timeout'
import type { BackendLimits, LogBackend } from '../backend'
import { GroupCommit, type GroupBound } from '../group-commit'
import { RedisArchiveSource } from './archive-source'
import { createRedisConnection } from './connection'
import { RedisFeed } from './feed'
import { RedisHistory } from './history'
import { RedisPresence } from './presence'

export interface RedisBackendOptions extends BackendLimits {
  url: string
  /** Upper bound for every call, in ms (default 2000). */
  timeoutMs?: number
  /** How long connecting waits, in ms (default 5000). */
  startupTimeoutMs?: number
  /** Where outage/reconnect messages go (default console). */
  logger?: Pick<Console, 'warn' | 'info'>
  /** The id of this instance in Redis (presence, feed, archive leases); default: a new one. */
  instanceId?: string
  /** Keeps track of the logs to archive (archive-source.ts). */
  archive?: { leaseMs: number }
  /** Appends to one task arriving in one event-loop turn go as one, up to this (group-commit.ts); unset: each alone. */
  groupCommit?: GroupBound
}

/** Connects; rejects with StoreUnavailableError (and leaves nothing open) when Redis cannot be used. */
export async function connectRedisBackend(opts: RedisBackendOptions): Promise<LogBackend> {
  const timeoutMs = opts.timeoutMs ?? 2000
  const client = createRedisConnection(opts.url, timeoutMs)
  const instanceId = opts.instanceId ?? crypto.randomUUID()
  const feed = await RedisFeed.connect({ ...opts, publisher: client, instanceId })
  // The feed tells the history's appends whether another instance may have subscribers to count.
  const history = await RedisHistory.connect({ ...opts, client, follower: feed, archive: opts.archive !== undefined }).catch(
    async (error: Error) => {
      await feed.close()
      throw error
    },
  )
  const presence = new RedisPresence(client, instanceId)
  const archiveSource =
    opts.archive &&
    new RedisArchiveSource({ client, instanceId, ttlSeconds: opts.ttlSeconds, leaseMs: opts.archive.leaseMs, timeoutMs })
  return {
    history: opts.groupCommit ? new GroupCommit(history, opts.groupCommit) : history,
    feed,
    presence,
    ...(archiveSource && { archiveSource }),
    async close() {
      await withTimeout(presence.withdraw(), timeoutMs, 'Redis did not answer in time').catch(() => {})
      await feed.close()
      await history.close()
    },
  }
}
