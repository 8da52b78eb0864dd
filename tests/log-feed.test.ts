import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createClient } from 'redis'
import { StoreUnavailableError } from '../src/store-errors'
import { RedisFeed } from '../src/logs/redis/feed'
import { logKey } from '../src/logs/redis/keys'
import { startRedis, type RedisServer } from './support/redis-server'

/** The Redis feed on its own (the hub's use of it is tested through the server elsewhere). */
describe('RedisFeed', () => {
  let redis: RedisServer
  let raw: ReturnType<typeof createClient>
  beforeAll(async () => {
    redis = await startRedis()
    raw = createClient({ url: redis.url })
    await raw.connect()
  })
  afterAll(async () => {
    await raw.close()
    await redis.stop()
  })

  test('a follow that times out leaves no channel subscribed once Redis answers late; following again delivers', async () => {
    const feed = await RedisFeed.connect({ url: redis.url, timeoutMs: 300, logger: { warn() {}, info() {} } })
    const task = crypto.randomUUID()
    const statuses: string[] = []
    feed.listen({ logs() {}, status: (_task, data) => statuses.push(data), interrupted() {} })
    const subscribed = async () => Number((await raw.pubSubNumSub(logKey(task)))[logKey(task)])
    try {
      await redis.pause()
      try {
        expect(await feed.follow(task).catch((e) => e)).toBeInstanceOf(StoreUnavailableError)
      } finally {
        redis.resume()
      }
      // Redis answers the subscriber connection's commands in order: the late SUBSCRIBE, then this PING.
      await feed.sync()
      expect(feed.follows(task)).toBe(false)
      expect(await subscribed()).toBe(0)

      await feed.follow(task)
      expect(feed.follows(task)).toBe(true)
      expect(await subscribed()).toBe(1)
      await raw.publish(logKey(task), 'status\n{"n":1}')
      await feed.sync()
      expect(statuses).toEqual(['{"n":1}'])
    } finally {
      await feed.close()
    }
  })
})
