/**
 * How the Redis engine talks to Redis: `RedisConnection`, one interface over a single server
 * (`redis://`, `rediss://`: single-redis.ts) and a cluster (`redis+cluster://`, `rediss+cluster://`:
 * cluster-redis.ts), so that the rest of the engine never asks which one it has.
 */
import { ClusterRedis, isClusterUrl } from './cluster-redis'
import { SingleRedis } from './single-redis'

/** A message on a subscribed channel. */
export type ChannelListener = (message: string, channel: string) => void

export type PublishCommand = 'PUBLISH' | 'SPUBLISH'

/** How a command's reply is read. */
export interface SendOptions {
  /** Every string of the reply as bytes (a Buffer), not decoded to a JS string. */
  bytes?: boolean
}

export interface RedisConnection {
  /** Connected and usable (on a cluster: its slots are known). */
  readonly isReady: boolean
  readonly isOpen: boolean
  /** The command that publishes on a task's channel: PUBLISH, or SPUBLISH (sharded pub/sub) on a cluster. */
  readonly publishCommand: PublishCommand
  /** A command on `key` and keys of its slot (on a cluster: sent to the master serving the slot). */
  send(key: string, args: string[], options?: SendOptions): Promise<unknown>
  /** A command for all of Redis: the reply of each master (of the one server on a single one). */
  sendToEach(args: string[]): Promise<unknown[]>
  /**
   * The copy of `name`, a key shared by many tasks, that lives beside `key`: `name` itself on a
   * single server; on a cluster one per slot, `name:{<tag>}` with a tag of `key`'s slot, so that a
   * script on a task's keys can write it too (one slot per call).
   */
  slotCopy(name: string, key: string): string
  /** The copies of `name` that exist: `[name]` on a single server; on a cluster, found by SCAN on every master. */
  slotCopies(name: string): Promise<string[]>
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
