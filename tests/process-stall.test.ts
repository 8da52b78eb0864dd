/**
 * An instance that stands still for seconds (a broadcast to very many sockets on a busy
 * machine; here SIGSTOP) is not a Redis outage: its watchers stay, nothing it was sent is lost,
 * and requests after it succeed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { pauseProcess } from './support/pause'
import { startRedis, type RedisServer } from './support/redis-server'
import { json, post, WsClient } from './support/server'
import { startServerProcess, type ServerProcess } from './support/server-process'

describe('the server process standing still for seconds', () => {
  let redis: RedisServer
  let server: ServerProcess
  beforeAll(async () => {
    redis = await startRedis()
    server = await startServerProcess({ REDIS_URL: redis.url, STORE_TIMEOUT_MS: '1000' })
  })
  afterAll(async () => {
    await server.proc.stop('SIGKILL')
    await redis.stop()
  })

  test('keeps its watchers and their Redis connections: the next log is stored and delivered', async () => {
    const task = await json(await post(`${server.url}/api/v1/tasks`, { description: 'stall' }))
    const subtaskId = task.subtasks[0].subtask_id
    const watcher = await WsClient.connect(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs`)
    expect((await watcher.nextOfType('subscribed')).data.task_id).toBe(task.task_id)

    await pauseProcess(server.proc.proc)
    await Bun.sleep(6000)
    server.proc.proc.kill('SIGCONT')

    const res = await post(`${server.url}/api/v1/subtasks/${subtaskId}/log`, { level: 'info', message: 'after the stall' })
    expect(res.status).toBe(201)
    const [log] = await watcher.logs(1)
    expect(log.message).toBe('after the stall')
    expect(server.proc.stdout()).not.toContain('connection lost')
    watcher.close()
  }, 30_000)
})
