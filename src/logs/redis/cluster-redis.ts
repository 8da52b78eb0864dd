/**
 * A Redis Cluster (`redis+cluster://`, `rediss+cluster://`) as a RedisConnection (connection.ts),
 * over node-redis' cluster client: a task's keys and channel share its slot (keys.ts), so every
 * command of the engine goes to the master serving that slot, and a task's channel is a shard
 * channel (SSUBSCRIBE, SPUBLISH) served by that master too.
 *
 * node-redis follows MOVED replies and refreshes the slots while a node it was connected to
 * reconnects, which is how a replica that replaced its master is found. Discovering the slots
 * connects to every master and waits for each, so a new cluster client is only ready once every
 * master answers: connecting is bounded by `timeoutMs` and tried again until it is.
 */
import { createCluster } from 'redis'
import { BYTES, clientOptions } from './client-options'
import type { ChannelListener, RedisConnection } from './connection'

const CLUSTER_SCHEME = /^(rediss?)\+cluster:/i

export const isClusterUrl = (url: string): boolean => CLUSTER_SCHEME.test(url)

/** How long a node may try to reconnect before the slots are asked for again. */
const REFRESH_SLOTS_AFTER_MS = 500
/** The pause between two attempts to connect (reconnect()). */
const RETRY_CONNECT_MS = 200

interface Seed {
  host: string
  port: number
}

type Cluster = ReturnType<typeof newCluster>

function newCluster(seeds: Seed[], url: URL, timeoutMs: number) {
  const options = clientOptions(timeoutMs)
  return createCluster({
    rootNodes: seeds.map((seed) => ({ socket: seed })),
    defaults: {
      ...options,
      ...(url.username && { username: decodeURIComponent(url.username) }),
      ...(url.password && { password: decodeURIComponent(url.password) }),
      socket: { ...options.socket, ...(url.protocol === 'rediss:' && { tls: true as const }) },
    },
    useReplicas: false,
    commandOptions: options.commandOptions,
    topologyRefreshOnReconnectionAttemptStrategy: REFRESH_SLOTS_AFTER_MS,
  })
}

export class ClusterRedis implements RedisConnection {
  readonly isCluster = true
  readonly publishCommand = 'SPUBLISH'
  readonly #rawUrl: string
  readonly #url: URL
  readonly #timeoutMs: number
  /** Where discovering the slots starts: the URL's node, then the masters known last. */
  readonly #seeds: Seed[]
  #cluster: Cluster
  readonly #onError: ((err: Error) => void)[] = []
  readonly #onReady: (() => void)[] = []
  /** Subscriber connections whose channels moving is reported (subscribe()). */
  readonly #watched = new WeakSet<object>()
  #closed = false

  constructor(url: string, timeoutMs: number, seeds?: Seed[]) {
    this.#rawUrl = url
    this.#url = new URL(url.replace(CLUSTER_SCHEME, '$1:'))
    this.#timeoutMs = timeoutMs
    const first = { host: this.#url.hostname, port: Number(this.#url.port || 6379) }
    this.#seeds = [first, ...(seeds ?? []).filter((s) => s.host !== first.host || s.port !== first.port)]
    this.#cluster = this.#create()
  }

  get isReady() {
    return this.#cluster.isReady
  }

  get isOpen() {
    return this.#cluster.isOpen
  }

  send(key: string, args: string[]): Promise<unknown> {
    return this.#cluster.sendCommand(key, false, args)
  }

  sendForBytes(key: string, args: string[]): Promise<unknown> {
    return this.#cluster.sendCommand(key, false, args, BYTES)
  }

  sendToEach(args: string[]): Promise<unknown[]> {
    return this.eachMaster((send) => send(args))
  }

  eachMaster<T>(visit: (send: (args: string[]) => Promise<unknown>, slots: number[]) => Promise<T>): Promise<T[]> {
    const cluster = this.#cluster
    // A cluster not ready has no masters to ask: that is a failure, not an empty answer.
    if (!cluster.isReady) return Promise.reject(new Error('The cluster is not connected'))
    const served = new Map(cluster.masters.map((master) => [master, [] as number[]]))
    cluster.slots.forEach((shard, slot) => served.get(shard.master)?.push(slot))
    return Promise.all(
      cluster.masters.map(async (master) => {
        const client = await cluster.nodeClient(master)
        return visit((args) => client.sendCommand(args), served.get(master)!)
      }),
    )
  }

  transaction(key: string, commands: string[][]): Promise<unknown> {
    const multi = this.#cluster.multi(key)
    for (const command of commands) multi.addCommand(key, false, command)
    return multi.exec()
  }

  async subscribe(channel: string, listener: ChannelListener): Promise<void> {
    const cluster = this.#cluster
    await cluster.sSubscribe(channel, listener)
    // When a slot moves to another master, Redis unsubscribes its shard channels and node-redis
    // subscribes them again there; what was published in between is lost, as with a connection.
    for (const { pubSub } of cluster.masters) {
      if (!pubSub || this.#watched.has(pubSub.client)) continue
      this.#watched.add(pubSub.client)
      pubSub.client.on('sharded-channel-moved', (moved: string) => {
        if (cluster !== this.#cluster || this.#closed) return
        for (const onError of this.#onError) onError(new Error(`the slot of ${moved} moved to another master`))
      })
    }
  }

  unsubscribe(channel: string, listener: ChannelListener): Promise<void> {
    return this.#cluster.sUnsubscribe(channel, listener)
  }

  /**
   * Only a ready connection can have messages queued. node-redis closes a master's subscriber
   * connection once its last channel is unsubscribed: a PING it fails for that had nothing to follow.
   */
  async pingSubscribers(): Promise<void> {
    const cluster = this.#cluster
    const current = (client: object) => cluster.masters.some(({ pubSub }) => pubSub?.client === client)
    const subscribed = cluster.masters.flatMap(({ pubSub }) => (pubSub?.client.isReady ? [pubSub.client] : []))
    await Promise.all(
      subscribed.map((client) =>
        client.ping().catch((err: unknown) => {
          if (current(client)) throw err
        }),
      ),
    )
  }

  on(event: 'error' | 'ready', listener: (err: Error) => void): void {
    ;(event === 'error' ? this.#onError : this.#onReady).push(listener)
  }

  async connect(): Promise<void> {
    await this.#cluster.connect()
  }

  reconnect(): void {
    this.#cluster.destroy()
    this.#cluster = this.#create()
    void this.#connectUntilReady(this.#cluster)
  }

  fresh(): RedisConnection {
    const known = this.#cluster.masters.map(({ host, port }) => ({ host, port }))
    return new ClusterRedis(this.#rawUrl, this.#timeoutMs, known)
  }

  async close(): Promise<void> {
    this.#closed = true
    await this.#cluster.close()
  }

  destroy(): void {
    this.#closed = true
    this.#cluster.destroy()
  }

  /** A cluster client whose node events become this connection's `error` and `ready`. */
  #create(): Cluster {
    const cluster = newCluster(this.#seeds, this.#url, this.#timeoutMs)
    const current = () => cluster === this.#cluster && !this.#closed
    /** Nodes (`host:port`) with a connection that has been ready since it last failed. */
    const readyNodes = new Set<string>()
    // Failing to discover the slots is not a connection lost: connect() and reconnect() report it.
    cluster.on('error', () => {})
    cluster.on('node-ready', ({ host, port }: Seed) => {
      readyNodes.add(`${host}:${port}`)
      if (current()) for (const listener of this.#onReady) listener()
    })
    cluster.on('node-error', (err: Error, { host, port }: Seed) => {
      // A node that never answered lost nothing; one that did is reported once per failure.
      if (!readyNodes.delete(`${host}:${port}`) || !current()) return
      for (const listener of this.#onError) listener(err)
    })
    return cluster
  }

  async #connectUntilReady(cluster: Cluster): Promise<void> {
    while (cluster === this.#cluster && !this.#closed) {
      const attempt = cluster.connect()
      const timer = setTimeout(() => cluster.destroy(), this.#timeoutMs)
      try {
        await attempt
        clearTimeout(timer)
        return
      } catch {
        clearTimeout(timer)
        cluster.destroy()
        await Bun.sleep(RETRY_CONNECT_MS)
        if (cluster !== this.#cluster || this.#closed) return
        cluster = this.#cluster = this.#create()
      }
    }
  }
}
