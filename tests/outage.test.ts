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

  test('ingest answers 503 (nothing stored, safe to retry), /ready says why, and both recover', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const watcher = await watch(server, task.task_id)
    await sendLog(server, sub, { level: 'info', message: 'before' })

    await redis.kill()
    const res = await post(`${server.url}/api/v1/subtasks/${sub}/log`, { level: 'info', message: 'during' })
    expect(res.status).toBe(503)
    const error = await json(res)
    expect(error.error).toBe('unavailable')
    expect(error.message).toContain('nothing was stored')
    const ready = await fetch(`${server.url}/ready`)
    expect(ready.status).toBe(503)
    expect((await json(ready)).components.history.status).toBe('down')
    // The process and its connections survive: health still answers, the socket stays open.
    expect((await fetch(`${server.url}/health`)).status).toBe(200)
    watcher.send({ action: 'ping' })
    expect((await watcher.nextOfType('pong')).type).toBe('pong')
    // A subscribe that needs history gets an error frame, not a dropped connection.
    const other = await createTask(server)
    watcher.send({ action: 'subscribe', task_id: other.task_id, history: 10 })
    expect((await watcher.nextOfType('error')).data).toMatchObject({ code: 'unavailable' })
    // A new connection that needs history is told to come back later (1013), not to give up (1008).
    const late = await WsClient.connect(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?history=5`)
    expect((await late.closed).code).toBe(1013)

    await redis.restart()
    let after: Response | undefined
    for (let i = 0; i < 50; i++) {
      after = await post(`${server.url}/api/v1/subtasks/${sub}/log`, { level: 'info', message: 'after' })
      if (after.status === 201) break
      await Bun.sleep(100)
    }
    expect(after!.status).toBe(201)
    expect((await fetch(`${server.url}/ready`)).status).toBe(200)
    const messages = (await watcher.logs(2)).map((l) => l.message)
    expect(messages).toEqual(['before', 'after'])
    watcher.close()
  }, 30_000)

  test('/ready reports the task store too', async () => {
    const body = await json(await fetch(`${server.url}/ready`))
    expect(Object.keys(body.components).sort()).toEqual(['history', 'tasks'])
  })
})
