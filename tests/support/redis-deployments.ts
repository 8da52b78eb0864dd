/**
 * The Redis deployments the engine runs on, for suites that run against each (`describe.each`):
 * one redis-server, and a Redis Cluster of three masters. Each offers what the suites check
 * Redis with, whichever node holds the key.
 *
 *   describe.each(redisDeployments)('on %s', (_name, start) => { ... const redis = await start() ... })
 */
import { $ } from 'bun'
import { startRedisCluster } from './redis-cluster'
import { startRedis, type RedisServer } from './redis-server'

const REDIS_CLI = process.env.REDIS_CLI_BIN ?? '/usr/bin/redis-cli'

export interface RedisDeployment {
  readonly url: string
  /** When its newest server started (Date.now()): what it holds was written since. */
  readonly startedAt: number
  /** A task's channel is a shard channel (a cluster): PUBSUB SHARDNUMSUB counts its subscribers. */
  readonly sharded: boolean
  /** Runs a command on the server that holds `key`; its reply as redis-cli prints it. */
  command(key: string, ...args: string[]): Promise<string>
  /** Runs a command on every master. */
  commandOnEach(...args: string[]): Promise<string[]>
  stop(): Promise<void>
}

const cli = (port: number, args: string[]) => $`${REDIS_CLI} -p ${port} ${args}`.text()

/** A redis-server the harness started, as a deployment. */
export function asDeployment(redis: RedisServer): RedisDeployment {
  return {
    url: redis.url,
    get startedAt() {
      return redis.startedAt
    },
    sharded: false,
    command: (_key, ...args) => cli(redis.port, args),
    commandOnEach: async (...args) => [await cli(redis.port, args)],
    stop: () => redis.stop(),
  }
}

/** A Redis Cluster of three masters, as a deployment. */
export async function startClusterDeployment(): Promise<RedisDeployment> {
  const redis = await startRedisCluster({ masters: 3 })
  return {
    url: redis.url,
    startedAt: redis.startedAt,
    sharded: true,
    command: async (key, ...args) => cli((await redis.masterOf(key)).port, args),
    commandOnEach: async (...args) => Promise.all((await redis.masters()).map((node) => cli(node.port, args))),
    stop: () => redis.stop(),
  }
}

export const redisDeployments: [string, () => Promise<RedisDeployment>][] = [
  ['redis', async () => asDeployment(await startRedis())],
  ['a redis cluster', startClusterDeployment],
]
