import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { sdkWatcher } from './support/sdk-watcher'
import { compareLogIds } from '../clients/ts/src/log-id'
import { logKey, subscribersKey } from '../src/logs/redis/keys'
import { redisDeployments, type RedisDeployment } from './support/redis-deployments'
import { SseStream, WsClient, createTask, json, post, sendLog, startInstances, watch, type TestServer } from './support/server'

/** Instances sharing Redis (a single server or a cluster) and a task store form one service. */
describe.each(redisDeployments)('several instances on %s', (_name, startRedis) => {
  let redis: RedisDeployment
  let a: TestServer
  let b: TestServer
  /** Stopped by a test. */
  let c: TestServer
  beforeAll(async () => {
    redis = await startRedis()
    ;[a, b, c] = (await startInstances(redis.url, 3)) as [TestServer, TestServer, TestServer]
  })
  afterAll(async () => {
    await Promise.allSettled([a.stop(), b.stop(), c.stop()])
    await redis.stop()
  })

  /** How many connections (one per instance following the task) subscribe to the task's channel. */
  const followers = async (taskId: string) => {
    const channel = logKey(taskId)
    const reply = await redis.command(channel, 'PUBSUB', redis.sharded ? 'SHARDNUMSUB' : 'NUMSUB', channel)
    return Number(reply.trim().split('\n')[1])
  }
  const eventually = async (check: () => Promise<boolean>) => {
    for (let i = 0; i < 100 && !(await check()); i++) await Bun.sleep(20)
    return check()
  }

  test('logs posted to either instance reach subscribers on both, in id order', async () => {
    const task = await createTask(a, { description: 'two', subtasks: [{ description: 'x' }, { description: 'y' }] })
    const [x, y] = task.subtasks.map((s) => s.subtask_id) as [string, string]
    const onA = await watch(a, task.task_id)
    const onB = await watch(b, task.task_id)
    const acked: string[] = []
    const produce = async (server: TestServer, subtask: string, name: string) => {
      for (let i = 0; i < 50; i++) {
        acked.push((await sendLog(server, subtask, { level: 'info', message: `${name} ${i}` })).id)
      }
    }
    await Promise.all([produce(a, x, 'a'), produce(b, y, 'b')])
    acked.sort(compareLogIds)
    for (const client of [onA, onB]) {
      expect((await client.logs(100)).map((l) => l.id)).toEqual(acked)
      client.close()
    }
  })

  /** The publishes of a task's channel (the append script's included) while `run` runs. */
  const publishedWhile = async <T>(taskId: string, run: () => Promise<T>): Promise<[T, number]> => {
    const channel = logKey(taskId)
    const command = redis.sharded ? 'spublish' : 'publish'
    const calls = async () =>
      Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(await redis.command(channel, 'INFO', 'commandstats'))?.[1] ?? 0)
    const before = await calls()
    const result = await run()
    return [result, (await calls()) - before]
  }

  test('a task only one instance follows: on a single Redis its own logs are published to nobody (on a cluster, each append is) and reach its watchers; once another follows, both get them', async () => {
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const onA = await watch(a, task.task_id)
    const posted = async (server: TestServer, n: number) => {
      const ids: string[] = []
      for (let i = 0; i < n; i++) ids.push((await sendLog(server, sub, { level: 'info', message: `line ${i}` })).id)
      return ids
    }
    // On a single Redis, a's appends travel on the connection that follows the task, the only
    // subscriber: nothing is published. On a cluster every append publishes on its shard channel.
    const expected = redis.sharded ? 10 : 0
    const [alone, published] = await publishedWhile(task.task_id, () => posted(a, 10))
    expect(published).toBe(expected)
    expect((await onA.logs(10)).map((l) => l.id)).toEqual(alone)

    const onB = await watch(b, task.task_id)
    const both = await posted(a, 10)
    for (const client of [onA, onB]) expect((await client.logs(10)).map((l) => l.id)).toEqual(both)
    onB.close()
    expect(await eventually(async () => (await followers(task.task_id)) === 1)).toBe(true)
    const [againAlone, publishedAgain] = await publishedWhile(task.task_id, () => posted(a, 5))
    expect(publishedAgain).toBe(redis.sharded ? 5 : 0)
    expect((await onA.logs(5)).map((l) => l.id)).toEqual(againAlone)
    onA.close()
  })

  test("logs delivered from an instance's own replies keep id order with those another instance publishes, live and resuming", async () => {
    const task = await createTask(a, { description: 'two', subtasks: [{ description: 'x' }, { description: 'y' }] })
    const [x, y] = task.subtasks.map((s) => s.subtask_id) as [string, string]
    const live = await watch(a, task.task_id)
    const acked: string[] = []
    let resumed: WsClient | undefined
    let since = ''
    // Both instances append concurrently, several requests in flight each; a second watcher
    // resumes with since while they do (its replay ends while a's appends are in flight).
    const lane = async (server: TestServer, subtask: string, name: string) => {
      for (let i = 0; i < 30; i++) {
        acked.push((await sendLog(server, subtask, { level: 'info', message: `${name} ${i}` })).id)
        if (name === 'a0' && i === 10) resumed = await watch(a, task.task_id, `?since=${(since = acked[0]!)}`)
      }
    }
    await Promise.all([0, 1, 2, 3].flatMap((i) => [lane(a, x, `a${i}`), lane(b, y, `b${i}`)]))
    acked.sort(compareLogIds)
    expect((await live.logs(acked.length)).map((l) => l.id)).toEqual(acked)
    const after = acked.filter((id) => compareLogIds(id, since) > 0)
    expect((await resumed!.logs(after.length)).map((l) => l.id)).toEqual(after)
    await Bun.sleep(100) // room for any duplicate to arrive
    for (const client of [live, resumed!]) {
      expect(client.frames.filter((f) => f.type === 'log')).toEqual([])
      client.close()
    }
  })

  test('broadcasted counts the subscribers of every instance whose level filter accepts the log', async () => {
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const onA = await watch(a, task.task_id, '?level=info')
    const onB = await watch(b, task.task_id, '?level=warning')
    const stream = await SseStream.open(b, task.task_id)
    await stream.until('event: subscribed')
    // Each instance announces its subscribers shortly after they change.
    const broadcasted = async (server: TestServer, level: string, expected: number) =>
      eventually(async () => (await sendLog(server, sub, { level, message: level })).broadcasted === expected)
    expect(await broadcasted(a, 'error', 3)).toBe(true)
    expect((await sendLog(b, sub, { level: 'error', message: 'e' })).broadcasted).toBe(3)
    expect((await sendLog(a, sub, { level: 'warning', message: 'w' })).broadcasted).toBe(3)
    expect((await sendLog(b, sub, { level: 'info', message: 'i' })).broadcasted).toBe(2) // onA and the stream
    expect((await sendLog(a, sub, { level: 'debug', message: 'd' })).broadcasted).toBe(1) // the stream
    // A batch counts the subscribers that accept at least one of its logs.
    const batch = [
      { level: 'debug', message: 'd' },
      { level: 'warning', message: 'w' },
    ]
    expect((await json(await post(`${a.url}/api/v1/subtasks/${sub}/logs`, { logs: batch }))).broadcasted).toBe(3)
    onB.close()
    stream.close()
    expect(await broadcasted(a, 'error', 1)).toBe(true)
    onA.close()
    expect(await broadcasted(b, 'error', 0)).toBe(true)
  })

  test('an instance that stops takes its subscribers out of the count; an announcement past its lease is ignored', async () => {
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    await watch(c, task.task_id)
    const broadcasted = async () => (await sendLog(a, sub, { level: 'info', message: 'x' })).broadcasted
    expect(await eventually(async () => (await broadcasted()) === 1)).toBe(true)
    await c.stop() // without closing its socket first: the instance withdraws what it announced
    expect(await broadcasted()).toBe(0)
    const key = subscribersKey(task.task_id)
    expect((await redis.command(key, 'EXISTS', key)).trim()).toBe('0')
    // What an instance that died leaves behind: its fields, which count until they lapse.
    const now = Date.now()
    await redis.command(key, 'HSET', key, 'dead', `${now - 1} 5 5 5 5`, 'live', `${now + 60_000} 0 0 7 7`)
    await watch(b, task.task_id) // an instance follows the task, so appends read the announcements
    expect(await eventually(async () => (await broadcasted()) === 1)).toBe(true) // b's; 'live' accepts warning and up
    expect((await sendLog(a, sub, { level: 'warning', message: 'w' })).broadcasted).toBe(8)
    // The append that found a lapsed field removed it: a task watched for long keeps a small hash.
    expect((await redis.command(key, 'HEXISTS', key, 'dead')).trim()).toBe('0')
    expect((await redis.command(key, 'HEXISTS', key, 'live')).trim()).toBe('1')
  })

  test('a status change made on one instance reaches subscribers on the other', async () => {
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const onB = await watch(b, task.task_id, '?level=error')
    const res = await fetch(`${a.url}/api/v1/subtasks/${sub}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'in_progress', worker_name: 'builder-1' }),
    })
    expect(res.status).toBe(200)
    expect((await onB.nextOfType('status')).data).toEqual({
      task_id: task.task_id,
      subtask_id: sub,
      status: 'in_progress',
      task_status: 'in_progress',
      worker_name: 'builder-1',
    })
    onB.close()
  })

  test('Server-Sent Events on one instance carry logs posted to the other', async () => {
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const stream = await SseStream.open(b, task.task_id)
    await stream.until('event: subscribed')
    const sent = await sendLog(a, sub, { level: 'info', message: 'from a' })
    await stream.until('"from a"')
    expect(stream.text).toContain(`id: ${sent.id}\nevent: log\n`)
    stream.close()
  })

  test('an instance follows a task in Redis only while it has subscribers for it', async () => {
    const task = await createTask(a)
    expect(await followers(task.task_id)).toBe(0)
    const first = await watch(a, task.task_id)
    const second = await watch(a, task.task_id, '?level=error')
    expect(await followers(task.task_id)).toBe(1)
    const third = await watch(b, task.task_id)
    expect(await followers(task.task_id)).toBe(2)
    first.close()
    third.close()
    expect(await eventually(async () => (await followers(task.task_id)) === 1)).toBe(true)
    second.close()
    expect(await eventually(async () => (await followers(task.task_id)) === 0)).toBe(true)
    // Following again after the last subscriber left works as the first time.
    const again = await watch(b, task.task_id)
    await sendLog(a, task.subtasks[0]!.subtask_id, { level: 'info', message: 'again' })
    expect((await again.logs(1))[0].message).toBe('again')
    again.close()
  })

  test('when the feed connection drops, watchers are told to resume with since, and resuming loses nothing', async () => {
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const onB = await watch(b, task.task_id)
    const seen = await sendLog(a, sub, { level: 'info', message: 'seen' })
    expect((await onB.logs(1))[0].id).toBe(seen.id)
    // Redis drops every subscriber connection, as it does with one over its output buffer limit.
    await redis.commandOnEach('CLIENT', 'KILL', 'TYPE', 'pubsub')
    const closed = await onB.closed
    expect(closed).toEqual({ code: 1013, reason: 'Live delivery was interrupted: reconnect with since=<last id> to resume' })
    const missed = await sendLog(a, sub, { level: 'info', message: 'missed' })
    // Each instance reconnects its feed in the background; until then a subscribe answers 1013.
    let resumed: WsClient | undefined
    for (let i = 0; i < 50 && !resumed; i++) {
      const client = await WsClient.connect(`${b.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs?since=${seen.id}`)
      const frame = await client.next(() => true).catch(() => undefined)
      if (frame?.type === 'subscribed') resumed = client
      else await Bun.sleep(50)
    }
    expect((await resumed!.logs(1))[0].id).toBe(missed.id)
    const live = await sendLog(a, sub, { level: 'info', message: 'live' })
    expect((await resumed!.logs(1))[0].id).toBe(live.id)
    expect((await json(await fetch(`${b.url}/ready`))).components.feed).toEqual({ status: 'ok' })
    expect(await (await fetch(`${b.url}/metrics`)).text()).toContain('\ntasklog_live_delivery_interruptions_total 1\n')
    resumed!.close()
  })

  test("the SDK's LogStreamClient rides through an interruption: every log once, in order", async () => {
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const { stream, received, closes, subscribed } = sdkWatcher(b.wsUrl, task.task_id)
    await subscribed
    const acked: string[] = []
    for (let i = 0; i < 60; i++) {
      if (i === 20) await redis.commandOnEach('CLIENT', 'KILL', 'TYPE', 'pubsub')
      acked.push((await sendLog(a, sub, { level: 'info', message: `line ${i}` })).id)
      await Bun.sleep(5)
    }
    expect(await eventually(async () => received.length >= acked.length)).toBe(true)
    await Bun.sleep(100) // room for any duplicate to arrive
    expect(received).toEqual(acked)
    expect(closes).toEqual([1013])
    stream.close()
  })
})
