import { StoreUnavailableError } from '../../store-errors'
import type { Level } from '../../schemas/common'
import { withTimeout } from '../../timeout'
import type { FeedListener, LogFeed, StoredLog } from '../backend'
import { createRedisConnection, redactRedisUrl, type RedisConnection } from './connection'
import { DeliveryOrder, type Answer } from './delivery-order'
import type { Follower, FollowingConnection } from './history'
import { logKey, newestIdKey, taskOfChannel } from './keys'

export interface RedisFeedOptions {
  url: string
  /** Upper bound for a subscribe or publish, in ms (default 2000). */
  timeoutMs?: number
  /** How long connect() waits for the first connection, in ms (default 5000). */
  startupTimeoutMs?: number
  /** Where outage/reconnect messages go (default console). */
  logger?: Pick<Console, 'warn' | 'info'>
  /** The connection status changes are published on, shared with the engine's history; by default one of its own. */
  publisher?: RedisConnection
  /** This instance's id in the engine's presence (default: a new one). */
  instanceId?: string
}

const FEED_NAME = 'Live log feed (Redis)'
const STATUS_PREFIX = 'status\n'

/** What precedes the level in a body (encode.ts): the first such key is the log's own. */
const LEVEL_KEY = '"level":"'

/**
 * Decodes a message published on a task's channel: the logs of one append,
 * `<first id>\n<body>\n<body>...` (append.lua; a body has no raw newline), the others' ids
 * following the first (`<ms>-<seq + 1>`, ...) and each level read from its body; or a status
 * change (`status\n<data>`; a log id starts with a digit).
 */
export function decodePublished(message: string): StoredLog[] | { status: string } {
  if (message.startsWith(STATUS_PREFIX)) return { status: message.slice(STATUS_PREFIX.length) }
  const first = message.indexOf('\n')
  const dash = message.indexOf('-')
  const seq = Number(message.slice(dash + 1, first))
  if (!(dash > 0 && dash < first && first + 1 < message.length && Number.isInteger(seq))) throw new TypeError('malformed log message')
  const ms = message.slice(0, dash + 1)
  const logs: StoredLog[] = []
  for (let at = first + 1; at < message.length; ) {
    let end = message.indexOf('\n', at)
    if (end < 0) end = message.length
    const level = message.indexOf(LEVEL_KEY, at) + LEVEL_KEY.length
    const quote = message.indexOf('"', level)
    if (level < LEVEL_KEY.length || quote < 0 || quote > end) throw new TypeError('malformed log message')
    logs.push({ id: ms + (seq + logs.length), level: message.slice(level, quote) as Level, body: message.slice(at, end) })
    at = end + 1
  }
  return logs
}

/**
 * The feed of instances that share Redis. An instance follows a task by subscribing to its
 * channel (keys.ts `logKey`), on which the append script publishes every log it stores, inside
 * the script and so in id order. Logs appended here reach this instance's watchers from the
 * same ordered source: delivered on the spot, they could overtake another instance's earlier
 * log still on its way.
 *
 * On a single Redis the connection that follows a task also carries this instance's appends of
 * it (`followingConnection`), so that the reply to each comes on that one ordered source too.
 * When the connection is the channel's only subscriber, the append script publishes nothing
 * and the logs are delivered here from its reply (delivery-order.ts keeps them in order with
 * the channel's messages): a task watched on one instance costs Redis no message per append,
 * and this instance no message to read.
 *
 * On a cluster the channel is a shard channel, subscribed on the master serving the task's
 * slot, on another connection than that master's commands: every append publishes.
 *
 * Pub/sub keeps no history, so a dropped connection may have lost messages: the feed then
 * replaces the connection (a fresh one, subscribed to nothing; on a cluster, every shard's) and
 * reports `interrupted`, and the hub tells every watcher here to resume with `since` from history.
 */
export class RedisFeed implements LogFeed, Follower {
  readonly description: string
  /** This instance, in the subscriber counts its presence announces (presence.ts). */
  readonly instanceId: string
  readonly #timeoutMs: number
  readonly #logger: Pick<Console, 'warn' | 'info'>
  #subscriber: RedisConnection
  /** Status changes go out on this one, as any other instance's would. */
  readonly #publisher: RedisConnection
  /** Whether the publisher is this feed's own, to close with it. */
  readonly #ownsPublisher: boolean
  /** The tasks whose channel the current subscriber connection has subscribed. */
  #channels = new Set<string>()
  #listener: FeedListener | undefined
  /** The order of the current subscriber connection's messages and replies. */
  readonly #order = new DeliveryOrder(() => this.#listener)
  #closed = false

  private constructor(opts: RedisFeedOptions) {
    this.description = redactRedisUrl(opts.url)
    this.#timeoutMs = opts.timeoutMs ?? 2000
    this.#logger = opts.logger ?? console
    this.instanceId = opts.instanceId ?? crypto.randomUUID()
    this.#ownsPublisher = !opts.publisher
    this.#publisher = opts.publisher ?? createRedisConnection(opts.url, this.#timeoutMs)
    // The history reports outages already; a connection of the feed's own only needs a listener.
    if (this.#ownsPublisher) this.#publisher.on('error', () => {})
    this.#subscriber = this.#open(createRedisConnection(opts.url, this.#timeoutMs))
  }

  static async connect(opts: RedisFeedOptions): Promise<RedisFeed> {
    const feed = new RedisFeed(opts)
    const wait = opts.startupTimeoutMs ?? 5000
    try {
      await withTimeout(
        Promise.all([feed.#subscriber.connect(), feed.#ownsPublisher && feed.#publisher.connect()]),
        wait,
        `no connection within ${wait} ms`,
      )
    } catch (err) {
      await feed.close()
      throw new StoreUnavailableError(`${FEED_NAME} at ${feed.description}`, err)
    }
    return feed
  }

  listen(listener: FeedListener): void {
    this.#listener = listener
  }

  async follow(taskId: string): Promise<void> {
    const client = this.#subscriber
    if (!client.isReady) throw new StoreUnavailableError(FEED_NAME)
    try {
      await this.#call(client.subscribe(logKey(taskId), this.#onMessage), 'SUBSCRIBE')
    } catch (err) {
      // Redis may still carry out a SUBSCRIBE that timed out, leaving a channel nobody follows
      // (its messages ignored, for as long as the connection lives): take it back, in order.
      if (client.isOpen && !this.#channels.has(taskId)) client.unsubscribe(logKey(taskId), this.#onMessage).catch(() => {})
      throw err
    }
    // Replaced meanwhile: the hub follows again on the new connection.
    if (client !== this.#subscriber) throw new StoreUnavailableError(FEED_NAME)
    this.#channels.add(taskId)
  }

  /**
   * A PING on the subscriber connection(s): Redis answers it after every message it queued there
   * before. For a task whose appends this connection carries, a read of its newest id instead:
   * the messages held for those appends up to that id go out with the answer.
   */
  async sync(taskId?: string): Promise<void> {
    const client = this.#subscriber
    if (taskId === undefined || !this.#carries(taskId)) {
      await this.#call(client.pingSubscribers(), 'PING')
      return
    }
    const settle = this.#order.expect(taskId)
    const key = newestIdKey(taskId)
    const newest = client.send(key, ['GET', key])
    newest.then(
      // The key holds the newest id, then the rate limit's state after a space (append.lua).
      (value) => settle(typeof value === 'string' ? { through: value.split(' ', 1)[0] } : undefined),
      () => settle(undefined),
    )
    await this.#call(newest, 'GET')
  }

  /**
   * The connection that follows the task, to carry this instance's appends of it, on a single
   * Redis: see the class comment. Undefined on a cluster, whose shard channels live on other
   * connections than the commands of a slot, or when it does not follow the task (yet).
   */
  followingConnection(taskId: string): FollowingConnection | undefined {
    if (!this.#carries(taskId)) return undefined
    const client = this.#subscriber
    const order = this.#order
    return {
      send(command: string[], answered: (reply: unknown) => Answer | undefined): Promise<unknown> {
        const settle = order.expect(taskId)
        const reply = client.send(command[3]!, command)
        reply.then(
          (value) => settle(answered(value)),
          () => settle(undefined),
        )
        return reply
      },
    }
  }

  /** The subscriber connection has subscribed to the task's channel, and may carry commands (a single Redis). */
  #carries(taskId: string): boolean {
    return !this.#subscriber.isCluster && this.#channels.has(taskId)
  }

  /** Whether the current subscriber connection has subscribed to the task's channel. */
  follows(taskId: string): boolean {
    return this.#channels.has(taskId)
  }

  unfollow(taskId: string): void {
    if (!this.#channels.delete(taskId)) return
    // A failure leaves a channel whose messages the hub ignores, until the connection is replaced.
    this.#subscriber.unsubscribe(logKey(taskId), this.#onMessage).catch(() => {})
  }

  async publishStatus(taskId: string, data: string): Promise<void> {
    const channel = logKey(taskId)
    const command = this.#publisher.publishCommand
    await this.#call(this.#publisher.send(channel, [command, channel, STATUS_PREFIX + data]), command)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const client of this.#ownsPublisher ? [this.#subscriber, this.#publisher] : [this.#subscriber]) {
      if (!client.isOpen) continue
      await withTimeout(client.close(), this.#timeoutMs, 'Redis did not close in time').catch(() => client.destroy())
    }
  }

  /** Waits at most timeoutMs for a reply to `command`; any failure is a StoreUnavailableError. */
  async #call<T>(reply: Promise<T>, command: string): Promise<T> {
    try {
      return await withTimeout(reply, this.#timeoutMs, `no reply to ${command}`)
    } catch (err) {
      throw new StoreUnavailableError(FEED_NAME, err)
    }
  }

  readonly #onMessage = (message: string, channel: string): void => {
    let event
    try {
      event = decodePublished(message)
    } catch {
      return // not one of ours: someone else published on the channel
    }
    this.#order.published(taskOfChannel(channel), event)
  }

  /** Watches a subscriber connection: once it has been ready, losing it replaces it (see the class comment). */
  #open(client: RedisConnection): RedisConnection {
    let wasReady = false
    client.on('ready', () => (wasReady = true))
    client.on('error', (err: Error) => {
      if (wasReady && client === this.#subscriber && !this.#closed) this.#replace(err)
    })
    return client
  }

  #replace(err: Error): void {
    this.#logger.warn(`[feed] ${this.description} connection lost (${err.message}); watchers here resume from history`)
    const lost = this.#subscriber
    const subscriber = (this.#subscriber = this.#open(lost.fresh()))
    this.#channels = new Set()
    this.#order.clear()
    lost.destroy()
    let told = false
    subscriber.on('ready', () => {
      if (told || subscriber !== this.#subscriber) return
      told = true
      this.#logger.info(`[feed] ${this.description} reconnected`)
    })
    subscriber.reconnect()
    this.#listener?.interrupted()
  }
}
