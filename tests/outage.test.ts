import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startRedis, type RedisServer } from './support/redis-server'
import { WsClient, createTask, json, post, sendLog, startServer, watch, type TestServer } from './support/server'

describe('Redis outage', () => {
  let redis: RedisServer
  let server: TestServer
  beforeAll(async () => {
    redis = await startRedis()
    server = await startServer({ redisUrl: redis.url })
  })
  afterAll(async () => {
    await server.stop()
    await redis.stop()
  })

  test('ingest answers 503 (nothing stored, safe to retry), /ready says why, watchers resume with since, and all recover', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const watcher = await watch(server, task.task_id)
    // A connection with no subscription left is not watching anything: it stays open throughout.
    const idle = await watch(server, task.task_id)
    idle.send({ action: 'unsubscribe', task_id: task.task_id })
    await idle.nextOfType('unsubscribed')
    const before = await sendLog(server, sub, { level: 'info', message: 'before' })
    expect((await watcher.logs(1))[0].message).toBe('before')

    await redis.kill()
    // Live logs may have been lost with the feed's connection: the watcher is told to resume.
    const closed = await watcher.closed
    expect(closed.code).toBe(1013)
    expect(closed.reason).toContain('since=')
    const res = await post(`${server.url}/api/v1/subtasks/${sub}/log`, { level: 'info', message: 'during' })
    expect(res.status).toBe(503)
    const error = await json(res)
    expect(error.error).toBe('unavailable')
    expect(error.message).toContain('nothing was stored')
    // Operators see it in /metrics: the 503 counts as a store error.
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    expect(Number(/^tasklog_store_errors_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1)
    const ready = await fetch(`${server.url}/ready`)
    expect(ready.status).toBe(503)
    const { components } = await json(ready)
    expect(components.history.status).toBe('down')
    expect(components.feed.status).toBe('down')
    // The process and its other connections survive.
    expect((await fetch(`${server.url}/health`)).status).toBe(200)
    idle.send({ action: 'ping' })
    expect((await idle.nextOfType('pong')).type).toBe('pong')
    // A subscribe gets an error frame, not a dropped connection.
    idle.send({ action: 'subscribe', task_id: task.task_id })
    expect((await idle.nextOfType('error')).data).toMatchObject({ code: 'unavailable' })
    // A new connection is told to come back later (1013), not to give up (1008).
    const late = await WsClient.connect(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?since=${before.id}`)
    expect((await late.closed).code).toBe(1013)

    await redis.restart()
    let after: Response | undefined
    for (let i = 0; i < 50; i++) {
      after = await post(`${server.url}/api/v1/subtasks/${sub}/log`, { level: 'info', message: 'after' })
      if (after.status === 201) break
      await Bun.sleep(100)
    }
    expect(after!.status).toBe(201)
    let readyAgain = 0
    for (let i = 0; i < 50 && readyAgain !== 200; i++, await Bun.sleep(100))
      readyAgain = (await fetch(`${server.url}/ready`)).status
    expect(readyAgain).toBe(200)
    // Resuming gives what the restarted (emptied) Redis holds after `before`, then live logs.
    const resumed = await WsClient.connect(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?since=${before.id}`)
    await resumed.nextOfType('subscribed')
    expect((await resumed.logs(1))[0].message).toBe('after')
    await sendLog(server, sub, { level: 'info', message: 'live again' })
    expect((await resumed.logs(1))[0].message).toBe('live again')
    idle.send({ action: 'subscribe', task_id: task.task_id })
    expect((await idle.nextOfType('subscribed')).data).toEqual({ task_id: task.task_id })
    resumed.close()
    idle.close()
  }, 30_000)

  test('/ready reports the task store too', async () => {
    const body = await json(await fetch(`${server.url}/ready`))
    expect(Object.keys(body.components).sort()).toEqual(['feed', 'history', 'tasks'])
  })
})
