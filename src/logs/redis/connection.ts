/**
 * How the Redis engine talks to Redis: `RedisConnection`, one interface over a single server
 * (`redis://`, `rediss://`: single-redis.ts) and a cluster (`redis+cluster://`, `rediss+cluster://`:
 * cluster-redis.ts), so that the rest of the engine asks which one it has only where a key
 * shared by tasks has to be split by slot (keys.ts archivePendingKey).
 */
import { ClusterRedis, isClusterUrl } from './cluster-redis'
import { SingleRedis } from './single-redis'

/** A message on a subscribed channel. */
export type ChannelListener = (message: string, channel: string) => void

export type PublishCommand = 'PUBLISH' | 'SPUBLISH'

export interface RedisConnection {
  /** Connected and usable (on a cluster: its slots are known). */
  readonly isReady: boolean
  readonly isOpen: boolean
  /** Keys live in slots spread over masters: a key shared by tasks has a copy per slot (keys.ts archivePendingKey). */
  readonly isCluster: boolean
  /** The command that publishes on a task's channel: PUBLISH, or SPUBLISH (sharded pub/sub) on a cluster. */
  readonly publishCommand: PublishCommand
  /** A command on `key` and keys of its slot (on a cluster: sent to the master serving the slot). */
  send(key: string, args: string[]): Promise<unknown>
  /** As send, with the reply's strings as Buffers: bytes passed on as they are build no JS string. */
  sendForBytes(key: string, args: string[]): Promise<unknown>
  /** A command for all of Redis: the reply of each master (of the one server on a single one). */
  sendToEach(args: string[]): Promise<unknown[]>
  /**
   * Work across slots: `visit` runs once per master (on a single server, once) with a `send` to
   * that master alone and the slots it serves as this connection last learnt them (none on a
   * single server); a script flagged `allow-cross-slot-keys` sent there may read keys of them all.
   */
  eachMaster<T>(visit: (send: (args: string[]) => Promise<unknown>, slots: number[]) => Promise<T>): Promise<T[]>
  /** Commands on keys of `key`'s slot, in one MULTI/EXEC transaction. */
  transaction(key: string, commands: string[][]): Promise<unknown>
  /** Subscribes to a channel (on a cluster: a shard channel, on the master serving its slot). */
  subscribe(channel: string, listener: ChannelListener): Promise<void>
  unsubscribe(channel: string, listener: ChannelListener): Promise<void>
  /** A PING on every subscribed connection: each answers it after the messages it queued before. */
  pingSubscribers(): Promise<void>
  /**
   * A connection failed: commands on it fail, messages to it may be lost (a single server's
   * client reports each failed reconnection too; a cluster only a node that had been ready, once).
   */
  on(event: 'error', listener: (err: Error) => void): void
  /** A connection is (again) ready. */
  on(event: 'ready', listener: () => void): void
  /** Connects once; rejects when Redis cannot be reached. */
  connect(): Promise<void>
  /** Drops every connection and connects again in the background, until it succeeds or is closed. */
  reconnect(): void
  /** Another connection to the same Redis, not connected yet, subscribed to nothing. */
  fresh(): RedisConnection
  close(): Promise<void>
  destroy(): void
}

/** A connection to the Redis `url` names (client-options.ts says how it behaves); connecting is left to the caller. */
export function createRedisConnection(url: string, timeoutMs: number): RedisConnection {
  return isClusterUrl(url) ? new ClusterRedis(url, timeoutMs) : new SingleRedis(url, timeoutMs)
}

/** The URL without its password, for logs and /ready. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url)
    u.password = ''
    return u.toString()
  } catch {
    return 'redis (unparsable URL)'
  }
}
