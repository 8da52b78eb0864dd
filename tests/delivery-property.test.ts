import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { HistoryStore } from '../src/logs/backend'
import { compareLogIds } from '../clients/ts/src/log-id'
import { startClusterDeployment, type RedisDeployment } from './support/redis-deployments'
import { startRedis, type RedisServer } from './support/redis-server'
import { WsClient, createTask, post, startInstances, startServer, type TestServer } from './support/server'

/**
 * Property: with several producers logging concurrently while consumers keep dropping and
 * reconnecting with `since=<last id seen>`, every consumer ends with every acknowledged id
 * exactly once, in increasing order. With two instances, producers and consumers use both.
 */
let redis: RedisServer
let cluster: RedisDeployment
beforeAll(async () => {
  ;[redis, cluster] = await Promise.all([startRedis(), startClusterDeployment()])
})
afterAll(() => Promise.all([redis.stop(), cluster.stop()]))

/** A small deterministic PRNG so a failure can be replayed from its seed. */
function random(seed: number) {
  return () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
    return seed / 2 ** 31
  }
}

/** History whose reads take a while, so many live logs arrive while a replay is in flight. */
const slowReplays = (store: HistoryStore): HistoryStore => ({
  description: store.description,
  append: (...args) => store.append(...args),
  read: (...args) => store.read(...args),
  replay: async (...args) => {
    const result = await store.replay(...args)
    await Bun.sleep(20) // logs published now are in neither this result nor, yet, the live topic
    return result
  },
  ping: () => store.ping(),
  usedMemory: () => store.usedMemory(),
})

describe.each(['memory', 'redis', 'slow-replay', 'two instances on Redis', 'two instances on a Redis Cluster'] as const)(
  'gap-free, duplicate-free delivery (%s)',
  (store) => {
    let servers: TestServer[]
    beforeAll(async () => {
      servers =
        store === 'two instances on Redis'
          ? await startInstances(redis.url)
          : store === 'two instances on a Redis Cluster'
            ? await startInstances(cluster.url)
            : [
              await startServer(
                store === 'redis' ? { redisUrl: redis.url } : store === 'slow-replay' ? { wrapHistory: slowReplays } : {},
              ),
            ]
    })
    afterAll(() => Promise.all(servers.map((s) => s.stop())))

    test.each([1, 2, 3])(
      'seed %d: 4 producers, 5 reconnecting consumers',
      async (seed) => {
        const rand = random(seed)
        const server = servers[0]!
        const pick = () => servers[Math.floor(rand() * servers.length)]!
        const task = await createTask(server, { description: 'p', subtasks: [{ description: 'a' }, { description: 'b' }] })
        const subtasks = task.subtasks.map((s) => s.subtask_id)
        const path = `/api/v1/ws/tasks/${task.task_id}/logs`

        const acked: string[] = []
        let producing = true
        const producer = async (p: number) => {
          const { url } = servers[p % servers.length]!
          for (let i = 0; i < 60; i++) {
            const single = rand() < 0.5
            const sub = subtasks[p % 2]!
            const res = single
              ? await post(`${url}/api/v1/subtasks/${sub}/log`, { level: 'info', message: `p${p} ${i}` })
              : await post(`${url}/api/v1/subtasks/${sub}/logs`, {
                  logs: Array.from({ length: 1 + Math.floor(rand() * 5) }, (_, j) => ({
                    level: 'info',
                    message: `p${p} ${i}.${j}`,
                  })),
                })
            expect(res.status).toBe(201)
            const body = await res.json()
            if (single) acked.push(body.id)
            else {
              // A batch's ids are consecutive in the stream; collect them from history later.
              acked.push(body.first_id, body.last_id)
            }
            await Bun.sleep(rand() * 8) // spread production over ~0.5 s so replays overlap live logs
          }
        }

        const consumer = async () => {
          const seen: string[] = []
          let since: string | undefined
          for (let round = 0; producing || round === 0; round++) {
            // Until it has seen a log, a consumer asks for all history, so it misses nothing published before it.
            const url = pick().wsUrl + path
            const client = await WsClient.connect(since ? `${url}?since=${since}` : `${url}?history=10000`)
            await client.nextOfType('subscribed')
            const until = Date.now() + 20 + rand() * 60
            while (Date.now() < until) {
              try {
                seen.push((await client.nextOfType('log', Math.max(1, until - Date.now()))).data.id)
              } catch {
                break
              }
            }
            client.close()
            await client.closed
            // Frames that arrived before the close are still valid deliveries.
            seen.push(...client.frames.filter((f) => f.type === 'log').map((f) => f.data.id))
            if (seen.length) since = seen[seen.length - 1]
          }
          // Final catch-up after producers stopped.
          const url = pick().wsUrl + path
          const client = await WsClient.connect(since ? `${url}?since=${since}` : `${url}?history=10000`)
          await client.nextOfType('subscribed')
          await Bun.sleep(300)
          seen.push(...client.frames.filter((f) => f.type === 'log').map((f) => f.data.id))
          client.close()
          return seen
        }

        const consumers = Array.from({ length: 5 }, consumer)
        await Promise.all(Array.from({ length: 4 }, (_, p) => producer(p)))
        producing = false
        const results = await Promise.all(consumers)

        const all = (await (await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs?order=asc&limit=1000`)).json()).logs.map(
          (l: { id: string }) => l.id,
        )
        for (const id of acked) expect(all).toContain(id)
        for (const seen of results) {
          for (let i = 1; i < seen.length; i++) expect(compareLogIds(seen[i - 1]!, seen[i]!)).toBeLessThan(0)
          expect(seen).toEqual(all)
        }
      },
      60_000,
    )
  },
)
