/**
 * Each engine's factory on its own: the history, feed and presence it builds work as one (an
 * append reaches the feed of every backend sharing the engine, in id order; presence counts
 * reach another instance's appends), and closing it leaves nothing open.
 */
import { testLog } from './support/logs'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createClient } from 'redis'
import type { LogBackend, StoredLog } from '../src/logs/backend'
import { memoryBackend } from '../src/logs/memory'
import { connectRedisBackend } from '../src/logs/redis'
import { ANNOUNCE_DELAY_MS } from '../src/logs/redis/presence'
import { logIdAfter } from '../clients/ts/src/log-id'
import type { Level } from '../src/schemas/common'
import { startClusterDeployment, type RedisDeployment } from './support/redis-deployments'
import { startRedis, type RedisServer } from './support/redis-server'

let redis: RedisServer
let cluster: RedisDeployment
beforeAll(async () => {
  ;[redis, cluster] = await Promise.all([startRedis(), startClusterDeployment()])
})
afterAll(() => Promise.all([redis.stop(), cluster.stop()]))

/** The Redis each deployment's engine connects to. */
const redisUrls: [string, () => string][] = [
  ['redis', () => redis.url],
  ['a redis cluster', () => cluster.url],
]

const limits = { ttlSeconds: 60, maxPerTask: 100 }
const silent = { warn() {}, info() {} }

const log = (taskId: string, level: Level, message: string) => testLog(taskId, taskId, level, message)

/** What a backend's feed delivers here, per task. */
function listen(backend: LogBackend) {
  const logs: StoredLog[] = []
  const statuses: string[] = []
  backend.feed.listen({ logs: (_t, l) => void logs.push(...l), status: (_t, s) => void statuses.push(s), interrupted() {} })
  return { logs, statuses }
}

describe.each([['memory', () => ''], ...redisUrls])('the engine on %s', (_name, url) => {
  /** Two instances of the engine sharing one store (for memory: one backend, as apps in one process share it). */
  async function pair(): Promise<[LogBackend, LogBackend]> {
    if (!url()) {
      const one = memoryBackend(limits)
      return [one, one]
    }
    const open = () => connectRedisBackend({ ...limits, url: url(), logger: silent })
    return [await open(), await open()]
  }

  test("an append reaches every following instance's feed, in id order, with the ids it returned; status changes too", async () => {
    const [a, b] = await pair()
    try {
      const received = listen(b)
      const task = Bun.randomUUIDv7()
      await b.feed.follow(task)
      const { firstId } = await a.history.append(task, [log(task, 'info', 'one'), log(task, 'error', 'two')])
      await a.history.append(task, [log(task, 'debug', 'three')])
      await a.feed.publishStatus(task, '{"status":"completed"}')
      await b.feed.sync()
      expect(received.logs.map((l) => l.id).slice(0, 2)).toEqual([firstId, logIdAfter(firstId, 1)])
      expect(received.logs.map((l) => JSON.parse(l.body).message)).toEqual(['one', 'two', 'three'])
      expect(received.statuses).toEqual(['{"status":"completed"}'])
    } finally {
      await Promise.all([...new Set([a, b])].map((x) => x.close()))
    }
  })
})

describe('the redis engine only', () => {
  const clients = async () => {
    const raw = createClient({ url: redis.url })
    await raw.connect()
    try {
      return String(await raw.sendCommand(['CLIENT', 'LIST'])).trim().split('\n').length - 1
    } finally {
      await raw.close()
    }
  }

  test('one instance holds two connections, and closing it leaves none', async () => {
    const before = await clients()
    const backend = await connectRedisBackend({ ...limits, url: redis.url, logger: silent })
    expect((await clients()) - before).toBe(2)
    await backend.close()
    for (let i = 0; i < 50 && (await clients()) > before; i++) await Bun.sleep(20)
    expect(await clients()).toBe(before)
  })

  test('on a cluster, closing an instance leaves no connection on any master', async () => {
    const clientsOnEach = async () =>
      (await cluster.commandOnEach('CLIENT', 'LIST')).map((list) => list.trim().split('\n').length - 1)
    const before = await clientsOnEach()
    const backend = await connectRedisBackend({ ...limits, url: cluster.url, logger: silent })
    const task = Bun.randomUUIDv7()
    await backend.feed.follow(task)
    await backend.history.append(task, [log(task, 'info', 'x')])
    // Commands on each master, and a subscriber on the master of the task's slot.
    expect((await clientsOnEach()).reduce((sum, n) => sum + n, 0)).toBeGreaterThan(before.reduce((sum, n) => sum + n, 0))
    await backend.close()
    for (let i = 0; i < 50 && String(await clientsOnEach()) !== String(before); i++) await Bun.sleep(20)
    expect(await clientsOnEach()).toEqual(before)
  })
})

describe.each(redisUrls)('the redis engine on %s', (_name, url) => {
  test("one instance's presence is counted by another's appends, once it follows the task", async () => {
    const open = () => connectRedisBackend({ ...limits, url: url(), logger: silent })
    const [a, b, c] = [await open(), await open(), await open()]
    try {
      const task = Bun.randomUUIDv7()
      await b.feed.follow(task)
      // c follows the task with no subscribers: appends keep reading the others' counts.
      await c.feed.follow(task)
      // Three subscribers at b: two accept warnings (level rank 0 and 2), one only errors.
      b.presence.announce(task, [1, 0, 1, 1])
      await Bun.sleep(ANNOUNCE_DELAY_MS + 100)
      expect((await a.history.append(task, [log(task, 'warning', 'w')])).subscribersElsewhere).toBe(2)
      expect((await a.history.append(task, [log(task, 'info', 'i'), log(task, 'error', 'e')])).subscribersElsewhere).toBe(3)
      // Withdrawn when b closes: no longer counted.
      await b.close()
      expect((await a.history.append(task, [log(task, 'error', 'x')])).subscribersElsewhere).toBe(0)
    } finally {
      await Promise.all([a.close(), b.close(), c.close()])
    }
  })
})
