/**
 * Subscriber counts that instances sharing Redis announce to each other, so that `broadcasted`
 * counts the subscribers of every instance in the append's one round trip.
 *
 * Each instance keeps, per task it has subscribers for, one field (its instance id) in the hash
 * `subscribersKey(task)` (keys.ts). The value is `<expires ms> <n0> <n1> <n2> <n3>`: when the
 * announcement lapses, then how many of its subscribers accept a log of each level rank
 * (debug..error). The append script sums the fields of the other instances that have not lapsed
 * (subscribers-elsewhere.lua); the appending instance adds its own from memory, which is never stale.
 *
 * An instance writes a task's field shortly after its count changes (changes within
 * ANNOUNCE_DELAY_MS are coalesced: a reconnect storm is a few writes, not one per socket),
 * rewrites all of them every LEASE_MS / 3, and removes them when it closes. An instance that
 * dies without closing is still counted until its fields lapse, at most LEASE_MS later. A field's
 * expiry comes from its writer's clock and is judged by Redis': they must agree to well within
 * the lease.
 */
import type { Presence } from '../backend'
import type { RedisConnection } from './connection'
import { subscribersKey } from './keys'

const positive = (n: number) => n > 0

/** How long an announcement counts without being rewritten. */
const LEASE_MS = 30_000
/** How long changes to the counts wait to be written together. */
export const ANNOUNCE_DELAY_MS = 20

/**
 * Writes this instance's subscriber counts (see the file comment). While Redis is unreachable,
 * changes (removals included) wait for the next rewrite; a write that fails is repaired by the
 * next rewrite of its task, or lapses. Until then only other instances' `broadcasted` is off.
 */
export class RedisPresence implements Presence {
  /** Per task with subscribers here: how many have each minimum level rank (the hub's array). */
  readonly #counts = new Map<string, readonly number[]>()
  /** Tasks whose field is to be written (or removed) at the next flush. */
  readonly #changed = new Set<string>()
  #flushTimer: ReturnType<typeof setTimeout> | undefined
  #renewTimer: ReturnType<typeof setInterval> | undefined
  #withdrawn = false

  constructor(
    private readonly client: RedisConnection,
    readonly instanceId: string,
  ) {}

  /** Records a task's counts (all zero: no subscriber here any more); written shortly after. */
  announce(taskId: string, atLevel: readonly number[]): void {
    // Subscribers closed during shutdown must not announce again what withdraw() removed.
    if (this.#withdrawn) return
    if (atLevel.some(positive)) this.#counts.set(taskId, atLevel)
    else if (!this.#counts.delete(taskId)) return
    this.#changed.add(taskId)
    this.#flushTimer ??= setTimeout(() => this.#flush(), ANNOUNCE_DELAY_MS)
    if (!this.#renewTimer) {
      this.#renewTimer = setInterval(() => this.#renew(), LEASE_MS / 3)
      this.#renewTimer.unref?.()
    }
  }

  /** Removes every field this instance wrote, so that no other instance counts them any more. */
  async withdraw(): Promise<void> {
    this.#withdrawn = true
    clearTimeout(this.#flushTimer)
    clearInterval(this.#renewTimer)
    this.#flushTimer = this.#renewTimer = undefined
    // A task both announced and changed since is removed once.
    const tasks = new Set([...this.#counts.keys(), ...this.#changed])
    this.#counts.clear()
    this.#changed.clear()
    await Promise.all([...tasks].map((taskId) => this.#write(taskId)))
  }

  #flush(): void {
    this.#flushTimer = undefined
    if (!this.client.isReady) return
    for (const taskId of this.#changed) void this.#write(taskId)
    this.#changed.clear()
  }

  #renew(): void {
    if (this.client.isReady) {
      for (const taskId of this.#counts.keys()) void this.#write(taskId)
      for (const taskId of this.#changed) if (!this.#counts.has(taskId)) void this.#write(taskId)
      this.#changed.clear()
    }
    if (this.#counts.size === 0 && this.#changed.size === 0) {
      clearInterval(this.#renewTimer)
      this.#renewTimer = undefined
    }
  }

  /** Writes a task's field as its counts stand now, or removes it. */
  #write(taskId: string): Promise<unknown> {
    const client = this.client
    if (!client.isReady) return Promise.resolve()
    const key = subscribersKey(taskId)
    const atLevel = this.#counts.get(taskId)
    if (!atLevel) return client.send(key, ['HDEL', key, this.instanceId]).catch(() => {})
    // A subscriber at minimum level r accepts the logs of every level from r up.
    let accepting = 0
    const counts = atLevel.map((n) => (accepting += n))
    const expires = Date.now() + LEASE_MS
    // Every live instance rewrites within a third of the lease, so the hash outlives their fields;
    // in one transaction, so that no hash is left without an expiry.
    return client
      .transaction(key, [
        ['HSET', key, this.instanceId, `${expires} ${counts.join(' ')}`],
        ['PEXPIRE', key, String(LEASE_MS)],
      ])
      .catch(() => {})
  }
}
