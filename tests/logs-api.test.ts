import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startRedis, type RedisServer } from './support/redis-server'
import { SseStream, createTask, json, post, sendLog, startServer, watch, type TestServer } from './support/server'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => redis.stop())

describe.each(['memory', 'redis'] as const)('log endpoints (%s history)', (store) => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({
      ...(store === 'redis' ? { redisUrl: redis.url } : {}),
      env: { MAX_MESSAGE_BYTES: '100', MAX_METADATA_BYTES: '64', MAX_BATCH: '10' },
    })
  })
  afterAll(() => server.stop())

  const logUrl = (subtaskId: string) => `${server.url}/api/v1/subtasks/${subtaskId}/log`
  const history = async (taskId: string, query = '') => {
    const res = await fetch(`${server.url}/api/v1/tasks/${taskId}/logs${query}`)
    expect(res.status).toBe(200)
    return json(res)
  }

  test('history: newest first by default, since gives oldest first, level and subtask filters', async () => {
    const task = await createTask(server, { description: 't', subtasks: [{ description: 'a' }, { description: 'b' }] })
    const [a, b] = task.subtasks.map((s) => s.subtask_id)
    const sent = [
      await sendLog(server, a!, { level: 'debug', message: 'one' }),
      await sendLog(server, b!, { level: 'info', message: 'two' }),
      await sendLog(server, a!, { level: 'warning', message: 'three' }),
      await sendLog(server, b!, { level: 'error', message: 'four' }),
    ].map((r) => r.id)

    const newest = await history(task.task_id)
    expect(newest.task_id).toBe(task.task_id)
    expect(newest.logs.map((l: any) => l.message)).toEqual(['four', 'three', 'two', 'one'])
    expect(newest.count).toBe(4)
    expect(newest.next_since).toBe(sent[3])

    expect((await history(task.task_id, '?limit=2')).logs.map((l: any) => l.id)).toEqual([sent[3], sent[2]])
    expect((await history(task.task_id, `?since=${sent[1]}`)).logs.map((l: any) => l.id)).toEqual([sent[2], sent[3]])
    expect((await history(task.task_id, '?order=asc&limit=4')).logs.map((l: any) => l.message)).toEqual([
      'one',
      'two',
      'three',
      'four',
    ])
    expect((await history(task.task_id, '?level=warning')).logs.map((l: any) => l.message)).toEqual(['four', 'three'])
    expect((await history(task.task_id, `?subtask_id=${b}`)).logs.map((l: any) => l.message)).toEqual(['four', 'two'])
    const none = await history(task.task_id, `?since=${sent[3]}`)
    expect(none).toEqual({ task_id: task.task_id, logs: [], count: 0, next_since: null })
  })

  test('history errors: unknown task 404, bad query 422', async () => {
    const res = await fetch(`${server.url}/api/v1/tasks/00000000-0000-4000-8000-000000000000/logs`)
    expect(res.status).toBe(404)
    const task = await createTask(server)
    for (const q of ['limit=0', 'limit=1001', 'order=up', 'since=abc', 'level=loud', 'subtask_id=x']) {
      const bad = await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs?${q}`)
      expect(bad.status).toBe(422)
      expect((await json(bad)).error).toBe('validation')
    }
  })

  test('ingest errors: unknown subtask 404, bad fields 422 with paths, nothing stored', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const unknown = await post(logUrl('00000000-0000-4000-8000-000000000000'), { level: 'info', message: 'x' })
    expect(unknown.status).toBe(404)
    expect(await json(unknown)).toEqual({ error: 'not_found', message: 'Subtask 00000000-0000-4000-8000-000000000000 not found' })
    // A task id where a subtask id belongs: the answer says so, on both ingest routes.
    for (const path of ['log', 'logs']) {
      const body = path === 'log' ? { level: 'info', message: 'x' } : { logs: [{ level: 'info', message: 'x' }] }
      const wrong = await post(`${server.url}/api/v1/subtasks/${task.task_id.toUpperCase()}/${path}`, body)
      expect(wrong.status).toBe(404)
      expect(await json(wrong)).toEqual({
        error: 'not_found',
        message: `Subtask ${task.task_id} not found: it is a task id. Logs go to one of the task's subtasks (GET /api/v1/tasks/${task.task_id} lists them)`,
      })
    }
    const cases: [unknown, string][] = [
      [{ level: 'loud', message: 'x' }, '/level'],
      [{ message: 'x' }, '/level'], // required: no silent default
      [{ level: 'info' }, '/message'],
      [{ level: 'info', message: 'x', metadata: 'nope' }, '/metadata'],
      [{ level: 'info', message: 'x', metadata: ['a', 'list'] }, '/metadata'], // an object, not any JSON
      [{ level: 'info', message: 'x', timestamp: 'yesterday' }, '/timestamp'],
      [{ level: 'info', message: 'x', timestamp: '2026-13-45T00:00:00' }, '/timestamp'],
      [{ level: 'info', message: 'x', timestamp: '2026-02-30T00:00:00Z' }, '/timestamp'], // not rolled over to March
      [{ level: 'info', message: 'x', timestamp: '2026-01-02T24:00:00' }, '/timestamp'],
      [{ level: 'info', message: 'x', timestamp: '2026-01-02T03:04:05+24:00' }, '/timestamp'],
      [{ level: 'info', message: 'x', timestamp: '0000-01-01T00:30+01:00' }, '/timestamp'], // year -1 in UTC
      [{ level: 'info', message: 'x', timestamp: '02/01/2026' }, '/timestamp'], // not ISO: day or month first?
      [{ level: 'info', message: 'x', timestamp: true }, '/timestamp'],
      [{ level: 'info', message: 'x', timestamp: 1e17 }, '/timestamp'], // Unix ms past year 9999
      [{ level: 'info', message: 'x', timestamp: '-62167219200001' }, '/timestamp'], // Unix ms before year 0000
      [{ level: 'info', message: 'é'.repeat(51) }, '/message'], // 102 bytes of UTF-8 > 100
      [{ level: 'info', message: 'x', metadata: { blob: 'y'.repeat(60) } }, '/metadata'],
    ]
    for (const [body, path] of cases) {
      const res = await post(logUrl(sub), body)
      expect(res.status).toBe(422)
      const error = await json(res)
      expect(error.error).toBe('validation')
      expect(error.details.map((d: any) => d.path)).toContain(path)
    }
    const batch = await post(`${server.url}/api/v1/subtasks/${sub}/logs`, {
      logs: [
        { level: 'info', message: 'fine' },
        { level: 'info', message: 'x'.repeat(101) },
      ],
    })
    expect(batch.status).toBe(422)
    expect((await json(batch)).details[0].path).toBe('/logs/1/message')
    const tooMany = await post(`${server.url}/api/v1/subtasks/${sub}/logs`, {
      logs: Array.from({ length: 11 }, () => ({ level: 'info', message: 'x' })),
    })
    expect(tooMany.status).toBe(422)
    expect((await json(tooMany)).message).toContain('at most 10')
    expect((await history(task.task_id)).count).toBe(0)
  })

  test('ids in any form Python read (case, no hyphens, braces, urn) name the same task and subtask', async () => {
    const task = await createTask(server, { description: 't', subtasks: [{ description: 'a' }, { description: 'b' }] })
    const [a, b] = task.subtasks.map((s) => s.subtask_id) as [string, string]
    const taskId = task.task_id.toUpperCase()
    const watcher = await watch(server, `{${task.task_id}}`)
    expect((await sendLog(server, a.toUpperCase(), { level: 'info', message: 'from a' })).broadcasted).toBe(1)
    expect((await watcher.logs(1))[0]).toMatchObject({ task_id: task.task_id, subtask_id: a, message: 'from a' })
    await sendLog(server, b.replaceAll('-', ''), { level: 'info', message: 'from b' })
    const filtered = await history(taskId, `?subtask_id=urn:uuid:${a.toUpperCase()}`)
    expect(filtered.task_id).toBe(task.task_id)
    expect(filtered.logs.map((l: any) => l.message)).toEqual(['from a'])
    expect((await json(await fetch(`${server.url}/api/v1/tasks/${taskId.replaceAll('-', '')}`))).task_id).toBe(task.task_id)
    expect((await json(await fetch(`${server.url}/api/v1/subtasks/urn:uuid:${b}`))).subtask_id).toBe(b)
    const stream = await SseStream.open(server, `{${taskId}}`, '?history=2')
    await stream.until('"from b"')
    stream.close()
    watcher.close()
    // Near misses stay malformed: a brace unmatched, a digit short, hyphens in the wrong places.
    for (const id of [`{${a}`, a.replaceAll('-', '').slice(1), `${a.slice(0, 9)}${a.slice(10, 14)}-${a.slice(14)}`]) {
      const res = await fetch(`${server.url}/api/v1/subtasks/${id}`)
      expect(res.status).toBe(422)
      expect((await json(res)).message).toBe(
        'Invalid path parameter subtask_id: must be a UUID such as 01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f',
      )
    }
  })

  test('unknown fields in bodies and queries are ignored, as the original backend did', async () => {
    const task = await createTask(server, { description: 'extra', priority: 'high' } as object)
    const sub = task.subtasks[0]!.subtask_id
    const ack = await sendLog(server, sub, { level: 'info', message: 'x', source: 'legacy-worker' })
    const got = await history(task.task_id, '?limit=5&_=1764152130123')
    expect(got.logs).toHaveLength(1)
    expect(got.logs[0]).not.toHaveProperty('source')
    expect(got.logs[0].id).toBe(ack.id)
  })

  test('metadata defaults to null, a given timestamp is kept in UTC with milliseconds', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    await sendLog(server, sub, { level: 'info', message: 'plain' })
    await sendLog(server, sub, { level: 'info', message: 'stamped', timestamp: '2026-01-02T03:04:05+02:00', metadata: null })
    const [stamped, plain] = (await history(task.task_id)).logs
    expect(plain.metadata).toBeNull()
    expect(stamped.timestamp).toBe('2026-01-02T01:04:05.000Z')
  })

  /** Sends each client timestamp (the first alone, then all in one batch) and checks how each was stored. */
  const expectStored = async (stored: [number | string, string][]) => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    await sendLog(server, sub, { level: 'info', message: 'single', timestamp: stored[0]![0] })
    const batch = await post(`${server.url}/api/v1/subtasks/${sub}/logs`, {
      logs: stored.map(([timestamp]) => ({ level: 'info', message: 'batched', timestamp })),
    })
    expect(batch.status).toBe(201)
    const logs = (await history(task.task_id, '?order=asc')).logs
    expect(logs.map((l: any) => l.timestamp)).toEqual([stored[0]![1], ...stored.map(([, iso]) => iso)])
  }

  test('a timestamp without an offset is UTC, as Python sends it; fractions are cut to milliseconds', async () => {
    const stored: [number | string, string][] = [
      ['2026-01-02T03:04:05', '2026-01-02T03:04:05.000Z'], // datetime.utcnow().isoformat()
      ['2026-01-02T03:04:05.123456', '2026-01-02T03:04:05.123Z'],
      ['2026-01-02 03:04:05.987654', '2026-01-02T03:04:05.987Z'], // str(datetime.utcnow())
      ['2026-01-02T03:04', '2026-01-02T03:04:00.000Z'],
      ['2026-01-02', '2026-01-02T00:00:00.000Z'], // a date alone is its midnight
      ['2026-01-02T03:04:05.9999Z', '2026-01-02T03:04:05.999Z'],
      ['2026-01-02T03:04:05.123456+02:00', '2026-01-02T01:04:05.123Z'],
      ['2026-01-02T03:04:05-0530', '2026-01-02T08:34:05.000Z'],
      ['2026-01-02t03:04:05z', '2026-01-02T03:04:05.000Z'],
    ]
    await expectStored(stored)
  })

  test('a Unix timestamp, as pydantic read it: seconds, or milliseconds past 2e10, a number or a string of one', async () => {
    const stored: [number | string, string][] = [
      [1767323045, '2026-01-02T03:04:05.000Z'],
      [1767323045.123456, '2026-01-02T03:04:05.123Z'], // time.time()
      [1767323045987, '2026-01-02T03:04:05.987Z'], // milliseconds
      ['1767323045.5', '2026-01-02T03:04:05.500Z'],
      [1.123, '1970-01-01T00:00:01.123Z'], // 1122.9999... ms in binary
      [0, '1970-01-01T00:00:00.000Z'],
      [-1, '1969-12-31T23:59:59.000Z'],
    ]
    await expectStored(stored)
  })

  test('validation messages say what is allowed and where', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const levels = 'must be one of debug, info, warning, error'
    const failures: [Promise<Response>, string, string][] = [
      [post(logUrl(sub), { level: 'verbose', message: 'x' }), '/level', `Invalid request body at /level: ${levels}`],
      [
        post(`${server.url}/api/v1/subtasks/${sub}/logs`, {
          logs: [
            { level: 'info', message: 'x' },
            { level: 'verbose', message: 'x' },
          ],
        }),
        '/logs/1/level',
        `Invalid request body at /logs/1/level: ${levels}`,
      ],
      [
        post(logUrl(sub), { level: 'info', message: 'x', timestamp: 'yesterday' }),
        '/timestamp',
        'Invalid request body at /timestamp: must be an ISO 8601 date-time such as 2026-01-02T03:04:05.123Z (without an offset it is read as UTC), or Unix time: seconds, or milliseconds past 2e10',
      ],
      [
        fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs?level=bogus`),
        '/level',
        `Invalid query parameter level: ${levels}`,
      ],
      [
        fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs?order=up`),
        '/order',
        'Invalid query parameter order: must be one of desc, asc',
      ],
      [
        fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs?since=abc`),
        '/since',
        'Invalid query parameter since: must be a log id <ms>-<seq> such as 1764152130123-0',
      ],
      [
        fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs/stream?level=loud`),
        '/level',
        `Invalid query parameter level: ${levels}`,
      ],
      [
        fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs/stream`, { headers: { 'Last-Event-ID': 'abc' } }),
        '/last-event-id',
        'Invalid header last-event-id: must be a log id <ms>-<seq> such as 1764152130123-0',
      ],
    ]
    // Out of range or not a number, a numeric parameter is named, by message and path (Elysia
    // reports no path for the former).
    const numeric: [string, string, string][] = [
      ...['0', '1001', 'abc'].map((n): [string, string, string] => [`/logs?limit=${n}`, 'limit', 'from 1 to 1000']),
      ['/logs/stream?history=10001', 'history', 'from 0 to 10000'],
      ['/logs/stream?history=-1', 'history', 'from 0 to 10000'],
    ]
    for (const [query, name, range] of numeric) {
      const res = await fetch(`${server.url}/api/v1/tasks/${task.task_id}${query}`)
      expect(res.status).toBe(422)
      expect(await json(res)).toMatchObject({
        message: `Invalid query parameter ${name}: ${name} must be a whole number ${range}`,
        details: [{ path: `/${name}`, message: `${name} must be a whole number ${range}` }],
      })
    }
    for (const [response, path, message] of failures) {
      const res = await response
      expect(res.status).toBe(422)
      const error = await json(res)
      expect(error).toMatchObject({ error: 'validation', message })
      expect(error.details[0].path).toBe(path)
      expect(message).toEndWith(error.details[0].message)
    }
  })

  test('Server-Sent Events: live logs and status with ids, resume from Last-Event-ID', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!.subtask_id
    const first = await sendLog(server, sub, { level: 'info', message: 'before' })
    const second = await sendLog(server, sub, { level: 'info', message: 'missed' })
    const stream = await SseStream.open(server, task.task_id, '', { 'last-event-id': first.id })
    expect(stream.response.status).toBe(200)
    expect(stream.response.headers.get('content-type')).toStartWith('text/event-stream')
    await stream.until('missed')
    const live = await sendLog(server, sub, { level: 'warning', message: 'live' })
    expect(live.broadcasted).toBe(1)
    await stream.until('"live"')
    await fetch(`${server.url}/api/v1/subtasks/${sub}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'completed' }),
    })
    await stream.until('event: status')
    const [subscribed, ...events] = stream.events()
    // First, as the WebSocket frame: the task, and whether resuming found every missed log.
    expect(subscribed).toBe(`retry: 2000\nevent: subscribed\ndata: ${JSON.stringify({ task_id: task.task_id, recovered: true })}`)
    expect(events[0]).toBe(
      `id: ${second.id}\nevent: log\ndata: ${JSON.stringify((await history(task.task_id, `?since=${first.id}&limit=1`)).logs[0])}`,
    )
    expect(events[1]).toStartWith(`id: ${live.id}\nevent: log\ndata: {`)
    expect(JSON.parse(events[2]!.split('data: ')[1]!)).toMatchObject({ status: 'completed', task_status: 'completed' })
    expect(stream.text).not.toContain('"before"')
    stream.close()
    // The aborted stream no longer counts as a subscriber.
    for (let i = 0; i < 50 && server.app.decorator.hub.subscriberCount(task.task_id) > 0; i++) await Bun.sleep(20)
    expect((await sendLog(server, sub, { level: 'info', message: 'after' })).broadcasted).toBe(0)
  })

  test('SSE query options: ?since resumes, ?history replays the newest n, ?level filters replay and live', async () => {
    /** A fresh task with four logs; opens a stream with `query(ids)`, posts one live error once it is subscribed, and returns the messages of the log events. */
    const messagesOf = async (query: (ids: string[]) => string) => {
      const task = await createTask(server)
      const sub = task.subtasks[0]!.subtask_id
      const ids: string[] = []
      for (const [level, message] of [
        ['info', 'one'],
        ['error', 'two'],
        ['debug', 'three'],
        ['warning', 'four'],
      ] as const)
        ids.push((await sendLog(server, sub, { level, message })).id)
      const stream = await SseStream.open(server, task.task_id, query(ids))
      expect(stream.response.status).toBe(200)
      await stream.until('event: subscribed')
      await sendLog(server, sub, { level: 'error', message: 'live' })
      await stream.until('"live"')
      stream.close()
      return stream
        .events()
        .filter((e) => e.includes('event: log'))
        .map((e) => JSON.parse(e.split('data: ')[1]!).message)
    }
    expect(await messagesOf((ids) => `?since=${ids[1]}`)).toEqual(['three', 'four', 'live'])
    expect(await messagesOf(() => '?history=2')).toEqual(['three', 'four', 'live'])
    expect(await messagesOf((ids) => `?since=${ids[0]}&level=warning`)).toEqual(['two', 'four', 'live'])
    expect(await messagesOf(() => '?history=4&level=error')).toEqual(['two', 'live'])
    // history counts the logs the level accepts: the newest error, though a warning came after it.
    expect(await messagesOf(() => '?history=1&level=error')).toEqual(['two', 'live'])
    // Without since or history, only live logs.
    expect(await messagesOf(() => '')).toEqual(['live'])
  })

  test('SSE for an unknown task is a 404', async () => {
    const res = await fetch(`${server.url}/api/v1/tasks/00000000-0000-4000-8000-000000000000/logs/stream`)
    expect(res.status).toBe(404)
  })
})

describe("the seed's testing workflow, end to end", () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ redisUrl: redis.url })
  })
  afterAll(() => server.stop())

  test('real-time streaming, two clients receiving the same logs, historical logs', async () => {
    const created = await post(`${server.url}/api/v1/tasks`, { description: 'Test task for WebSocket logging' })
    expect(created.status).toBe(201)
    const task = await json(created)
    const subtaskId = task.subtasks[0].subtask_id
    const [one, two] = [await watch(server, task.task_id), await watch(server, task.task_id)]
    const lines = ['Task execution started', 'Processing step 1', 'High memory', 'Task completed successfully']
    for (const [i, message] of lines.entries()) {
      const ack = await sendLog(server, subtaskId, { level: i === 2 ? 'warning' : 'info', message, metadata: { step: i } })
      expect(ack.broadcasted).toBe(2)
    }
    const got1 = await one.logs(4)
    const got2 = await two.logs(4)
    expect(got1.map((l) => l.message)).toEqual(lines)
    expect(got2).toEqual(got1)
    const hist = await json(await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs?limit=50`))
    expect(hist.logs.map((l: any) => l.message)).toEqual([...lines].reverse())
    expect(hist.logs.reverse()).toEqual(got1)
    one.close()
    two.close()
  })
})
