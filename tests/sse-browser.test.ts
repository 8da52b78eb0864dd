/**
 * Server-Sent Events as browsers read them: Chromium's own EventSource, reconnecting by itself
 * with Last-Event-ID after the network dropped, must be told by the `subscribed` event whether
 * history still held every log it missed, on both history engines.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Browser, Page } from 'playwright-core'
import { haveChromium, launchChromium } from './support/browser'
import { startCuttableProxy, type CuttableProxy } from './support/cuttable-proxy'
import { startRedis, type RedisServer } from './support/redis-server'
import { createTask, sendLog, startServer, type TestServer } from './support/server'

interface SeenEvent {
  type: 'subscribed' | 'log'
  data: any
  lastEventId: string
}

let browser: Browser
let redis: RedisServer
beforeAll(async () => {
  if (!haveChromium) return
  browser = await launchChromium()
  redis = await startRedis()
})
afterAll(async () => {
  await browser?.close()
  await redis?.stop()
})

/** A server behind a cuttable proxy, and a page of its origin (loopback, so it may open streams there). */
async function setUp(engine: 'memory' | 'redis', env: Record<string, string>) {
  const server = await startServer({ redisUrl: engine === 'redis' ? redis.url : undefined, env })
  const proxy = startCuttableProxy(Number(new URL(server.url).port))
  const page = await browser.newPage()
  await page.goto(`${proxy.url}/health`)
  return { server, proxy, page }
}

async function tearDown({ server, proxy, page }: { server: TestServer; proxy: CuttableProxy; page: Page }) {
  await page.close()
  proxy.stop()
  await server.stop()
}

/** Opens an EventSource in the page on a task's stream, recording its `subscribed` and `log` events. */
async function follow(page: Page, taskId: string): Promise<(n: number) => Promise<SeenEvent[]>> {
  await page.evaluate((taskId) => {
    const seen: SeenEvent[] = ((window as any).seen = [])
    const source = new EventSource(`/api/v1/tasks/${taskId}/logs/stream`)
    for (const type of ['subscribed', 'log'] as const)
      source.addEventListener(type, (e) => seen.push({ type, data: JSON.parse(e.data), lastEventId: e.lastEventId }))
  }, taskId)
  return async (n) => {
    await page.waitForFunction((n) => (window as any).seen.length >= n, n, { timeout: 15_000 })
    return page.evaluate(() => (window as any).seen)
  }
}

const shortly = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.skipIf(!haveChromium).each(['memory', 'redis'] as const)('SSE in Chromium (%s history)', (engine) => {
  /**
   * Follows a task, logs `first`, cuts the network, runs `whileAway` (which logs), lets the
   * network back, and returns the `expected` events EventSource saw after its own reconnection.
   */
  async function resume(
    env: Record<string, string>,
    expected: number,
    whileAway: (log: (message: string) => Promise<string>) => Promise<void>,
  ) {
    const setup = await setUp(engine, env)
    try {
      const task = await createTask(setup.server)
      const log = async (message: string) =>
        (await sendLog(setup.server, task.subtasks[0]!.subtask_id, { level: 'info', message })).id as string
      const seen = await follow(setup.page, task.task_id)
      expect(await seen(1)).toEqual([{ type: 'subscribed', data: { task_id: task.task_id }, lastEventId: '' }])
      const first = await log('first')
      expect((await seen(2))[1]).toMatchObject({ type: 'log', data: { message: 'first' }, lastEventId: first })
      setup.proxy.cut()
      await whileAway(log)
      setup.proxy.restore()
      const events = (await seen(2 + expected)).slice(2)
      return {
        taskId: task.task_id,
        subscribed: events[0]!,
        logs: events.slice(1).map((e) => [e.type, e.data.message, e.lastEventId]),
      }
    } finally {
      await tearDown(setup)
    }
  }

  test('a reconnection that missed nothing: subscribed with recovered true, then the missed log', async () => {
    const ids: string[] = []
    const { taskId, subscribed, logs } = await resume({}, 2, async (log) => {
      ids.push(await log('while away'))
    })
    expect(subscribed).toEqual({
      type: 'subscribed',
      data: { task_id: taskId, recovered: true },
      lastEventId: expect.any(String),
    })
    expect(logs).toEqual([['log', 'while away', ids[0]]])
  }, 30_000)

  test('after a trim: subscribed with recovered false, then the logs history still holds', async () => {
    const ids: string[] = []
    const { taskId, subscribed, logs } = await resume({ LOG_HISTORY_MAX: '3' }, 4, async (log) => {
      for (const message of ['m1', 'm2', 'm3', 'm4']) ids.push(await log(message))
    })
    expect(subscribed.data).toEqual({ task_id: taskId, recovered: false })
    expect(logs).toEqual([
      ['log', 'm2', ids[1]],
      ['log', 'm3', ids[2]],
      ['log', 'm4', ids[3]],
    ])
  }, 30_000)

  test('after expiry: subscribed with recovered false, then the logs not expired', async () => {
    const ids: string[] = []
    const { taskId, subscribed, logs } = await resume({ LOG_TTL_SECONDS: '1' }, 2, async (log) => {
      await log('expires')
      await shortly(1_500)
      ids.push(await log('kept'))
    })
    expect(subscribed.data).toEqual({ task_id: taskId, recovered: false })
    expect(logs).toEqual([['log', 'kept', ids[0]]])
  }, 30_000)
})
