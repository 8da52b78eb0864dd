/**
 * Subscriber counts that instances sharing Redis announce to each other, so that `broadcasted`
 * counts the subscribers of every instance (DESIGN "Logs") in the append's one round trip.
 *
 * Each instance keeps, per task it has subscribers for, one field (its instance id) in the hash
 * `logs:{<task_id>}:subscribers` (the task's hash tag: the same slot as its stream). The value is
 * `<expires ms> <n0> <n1> <n2> <n3>`: when the announcement lapses, then how many of its
 * subscribers accept a log of each level rank (debug..error). The append script sums the fields
 * of the other instances that have not lapsed (`SUBSCRIBERS_ELSEWHERE`); the appending instance
 * adds its own from memory, which is never stale.
 *
 * An instance writes a task's field shortly after its count changes (changes within
 * ANNOUNCE_DELAY_MS are coalesced: a reconnect storm is a few writes, not one per socket),
 * rewrites all of them every LEASE_MS / 3, and removes them when it closes. An instance that
 * dies without closing is still counted until its fields lapse, at most LEASE_MS later. A field's
 * expiry comes from its writer's clock and is judged by Redis': they must agree to well within
 * the lease.
 */
import { LUA_LEVEL_RANKS, type RedisClient } from './redis-connection'

const positive = (n: number) => n > 0

/** How long an announcement counts without being rewritten. */
export const LEASE_MS = 30_000
/** How long changes to the counts wait to be written together. */
export const ANNOUNCE_DELAY_MS = 20

/**
 * This instance as an append sees it: whose announcements to leave out (it counts its own), and
 * whether it follows the task's channel itself (then, when it is the only follower, no other
 * instance can have subscribers and the append reads no announcement). RedisFeed is one.
 */
export interface Follower {
  readonly instanceId: string
  follows(taskId: string): boolean
}

/** The hash of a task's announced subscriber counts, one field per instance. */
export const subscribersKey = (taskId: string): string => `logs:{${taskId}}:subscribers`

/**
 * Lua: subscribers that instances other than `self` announced for a task, in fields that have not
 * lapsed, and that accept at least one of the logs whose levels are ARGV[first], ARGV[first + 2], ...
 * Only called when another instance follows the task, so a single instance pays nothing for it.
 */
export const SUBSCRIBERS_ELSEWHERE = `
local function subscribersElsewhere(key, self, first)
  local fields = redis.call('HGETALL', key)
  local total = 0
  if #fields == 0 then return 0 end
  local ranks = ${LUA_LEVEL_RANKS}
  local rank = 0
  for i = first, #ARGV, 2 do rank = math.max(rank, ranks[ARGV[i]] or 0) end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local pattern = '^(%d+)' .. string.rep(' %d+', rank) .. ' (%d+)'
  for i = 1, #fields, 2 do
    if fields[i] ~= self then
      local expires, n = string.match(fields[i + 1], pattern)
      if expires and tonumber(expires) > now then total = total + tonumber(n)
      -- Left by an instance that died: gone, so that the hash of a task watched for long stays small.
      elseif expires then redis.call('HDEL', key, fields[i]) end
    end
  end
  return total
end
`

/**
 * Writes this instance's subscriber counts (see the file comment). While Redis is unreachable,
 * changes (removals included) wait for the next rewrite; a write that fails is repaired by the
 * next rewrite of its task, or lapses. Until then only other instances' `broadcasted` is off.
 */
export class SubscriberAnnouncer {
  /** Per task with subscribers here: how many have each minimum level rank (the hub's array). */
  readonly #counts = new Map<string, readonly number[]>()
  /** Tasks whose field is to be written (or removed) at the next flush. */
  readonly #changed = new Set<string>()
  #flushTimer: ReturnType<typeof setTimeout> | undefined
  #renewTimer: ReturnType<typeof setInterval> | undefined
  #withdrawn = false

  constructor(
    private readonly client: () => RedisClient,
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
    if (!this.client().isReady) return
    for (const taskId of this.#changed) void this.#write(taskId)
    this.#changed.clear()
  }

  #renew(): void {
    if (this.client().isReady) {
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
    const client = this.client()
    if (!client.isReady) return Promise.resolve()
    const key = subscribersKey(taskId)
    const atLevel = this.#counts.get(taskId)
    if (!atLevel) return client.sendCommand(['HDEL', key, this.instanceId]).catch(() => {})
    // A subscriber at minimum level r accepts the logs of every level from r up.
    let accepting = 0
    const counts = atLevel.map((n) => (accepting += n))
    const expires = Date.now() + LEASE_MS
    // Every live instance rewrites within a third of the lease, so the hash outlives their fields;
    // in one transaction, so that no hash is left without an expiry.
    return client
      .multi()
      .addCommand(['HSET', key, this.instanceId, `${expires} ${counts.join(' ')}`])
      .addCommand(['PEXPIRE', key, String(LEASE_MS)])
      .exec()
      .catch(() => {})
  }
}
