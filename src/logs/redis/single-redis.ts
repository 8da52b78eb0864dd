/** A single Redis server (`redis://`, `rediss://`) as a RedisConnection (connection.ts). */
import { createClient } from 'redis'
import { BYTES, clientOptions } from './client-options'
import type { ChannelListener, RedisConnection } from './connection'

/** One Redis server, over one node-redis client. */
export class SingleRedis implements RedisConnection {
  readonly isCluster = false
  readonly publishCommand = 'PUBLISH'
  readonly #client

  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
  ) {
    this.#client = createClient({ url, ...clientOptions(timeoutMs) })
  }

  get isReady() {
    return this.#client.isReady
  }

  get isOpen() {
    return this.#client.isOpen
  }

  send(_key: string, args: string[]): Promise<unknown> {
    return this.#client.sendCommand(args)
  }

  sendForBytes(_key: string, args: string[]): Promise<unknown> {
    return this.#client.sendCommand(args, BYTES)
  }

  sendToEach(args: string[]): Promise<unknown[]> {
    return this.eachMaster((send) => send(args))
  }

  async eachMaster<T>(visit: (send: (args: string[]) => Promise<unknown>, slots: number[]) => Promise<T>): Promise<T[]> {
    return [await visit((args) => this.#client.sendCommand(args), [])]
  }

  transaction(_key: string, commands: string[][]): Promise<unknown> {
    const multi = this.#client.multi()
    for (const command of commands) multi.addCommand(command)
    return multi.exec()
  }

  subscribe(channel: string, listener: ChannelListener): Promise<void> {
    return this.#client.subscribe(channel, listener)
  }

  unsubscribe(channel: string, listener: ChannelListener): Promise<void> {
    return this.#client.unsubscribe(channel, listener)
  }

  async pingSubscribers(): Promise<void> {
    await this.#client.ping()
  }

  on(event: 'error' | 'ready', listener: (err: Error) => void): void {
    this.#client.on(event, listener)
  }

  async connect(): Promise<void> {
    await this.#client.connect()
  }

  reconnect(): void {
    if (this.#client.isOpen) this.#client.destroy()
    this.#client.connect().catch(() => {})
  }

  fresh(): RedisConnection {
    return new SingleRedis(this.url, this.timeoutMs)
  }

  async close(): Promise<void> {
    await this.#client.close()
  }

  destroy(): void {
    this.#client.destroy()
  }
}
