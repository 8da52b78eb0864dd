import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createTask, json, post, sendLog, startServer, watch, type TestServer } from './support/server'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

const api = (path: string) => `${server.url}/api/v1${path}`
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const patch = (path: string, body: unknown) =>
  fetch(api(path), { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

describe('POST /api/v1/tasks', () => {
  test("the seed's curl: a description alone gives a task with a subtask to log to", async () => {
    const res = await post(api('/tasks'), { description: 'Test task for WebSocket logging' })
    expect(res.status).toBe(201)
    const task = await json(res)
    expect(task.task_id).toMatch(/^[0-9a-f-]{36}$/)
    expect(task.status).toBe('pending')
    expect(task.created_at).toMatch(ISO)
    expect(task.subtasks).toHaveLength(1)
    expect(task.subtasks[0]).toMatchObject({
      task_id: task.task_id,
      description: 'Test task for WebSocket logging',
      status: 'pending',
      position: 0,
      worker_id: null,
      worker_name: null,
    })
  })

  test('a numbered description is decomposed into ordered subtasks', async () => {
    const task = await createTask(server, { description: '1. Fetch the data\n2. Clean it\n3. Train the model' })
    expect(task.subtasks.map((s) => [s.position, s.description])).toEqual([
      [0, 'Fetch the data'],
      [1, 'Clean it'],
      [2, 'Train the model'],
    ])
  })

  test('explicit subtasks are used as given', async () => {
    const task = await createTask(server, {
      description: 'Deploy',
      subtasks: [{ description: 'build' }, { description: 'ship' }],
    })
    expect(task.subtasks.map((s) => s.description)).toEqual(['build', 'ship'])
  })

  test.each([
    [{}, '/description'],
    [{ description: '' }, '/description'],
    [{ description: '   ' }, '/description'],
    [{ description: 'x'.repeat(10_001) }, '/description'],
    [{ description: 'ok', subtasks: [] }, '/subtasks'],
    [{ description: 'ok', subtasks: Array.from({ length: 101 }, () => ({ description: 's' })) }, '/subtasks'],
  ])('invalid body %#: 422 naming %s', async (body, path) => {
    const res = await post(api('/tasks'), body)
    expect(res.status).toBe(422)
    const error = await json(res)
    expect(error.error).toBe('validation')
    expect(error.message).toBeString()
    expect(error.details.map((d: { path: string }) => d.path)).toContain(path)
  })

  test('malformed JSON is a 422 with a clear message', async () => {
    const res = await fetch(api('/tasks'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"description":',
    })
    expect(res.status).toBe(422)
    expect(await json(res)).toMatchObject({ error: 'validation', message: 'Request body is not valid JSON' })
  })

  test('a non-JSON content type is refused with a JSON error', async () => {
    const res = await fetch(api('/tasks'), { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' })
    expect(res.status).toBe(422)
    expect((await json(res)).message).toContain('Content-Type must be application/json')
  })

  test('a body without a JSON Content-Type is refused, so a web page cannot post one cross-site without a preflight', async () => {
    const before = (await (await fetch(api('/tasks'))).json()) as { tasks: unknown[] }
    for (const headers of [{}, { 'content-type': 'text/plain' }] as Record<string, string>[]) {
      const res = await fetch(api('/tasks'), { method: 'POST', headers, body: JSON.stringify({ description: 'no header' }) })
      expect(res.status).toBe(422)
      const body = (await res.json()) as { error: string; message: string; details: { path: string }[] }
      expect(body.error).toBe('validation')
      expect(body.message).toStartWith('Content-Type must be application/json')
      expect(body.details[0]!.path).toBe('/headers/content-type')
    }
    const after = (await (await fetch(api('/tasks'))).json()) as { tasks: unknown[] }
    expect(after.tasks.length).toBe(before.tasks.length)
  })
})

describe('GET /api/v1/tasks', () => {
  test('newest first, cursor pagination without gaps or duplicates, status filter', async () => {
    const fresh = await startServer()
    try {
      const created: string[] = []
      for (let i = 0; i < 5; i++) created.push((await createTask(fresh, { description: `task ${i}` })).task_id)
      const seen: string[] = []
      let cursor: string | null = null
      do {
        const res: Response = await fetch(`${fresh.url}/api/v1/tasks?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
        expect(res.status).toBe(200)
        const page = await json(res)
        expect(page.tasks.length).toBeLessThanOrEqual(2)
        seen.push(...page.tasks.map((t: { task_id: string }) => t.task_id))
        cursor = page.next_cursor
      } while (cursor)
      expect(seen).toEqual(created.reverse())

      const subtask = (await (await fetch(`${fresh.url}/api/v1/tasks/${seen[0]}`)).json()).subtasks[0]
      await fetch(`${fresh.url}/api/v1/subtasks/${subtask.subtask_id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ status: 'failed' }),
      })
      const failed = await json(await fetch(`${fresh.url}/api/v1/tasks?status=failed`))
      expect(failed.tasks.map((t: { task_id: string }) => t.task_id)).toEqual([seen[0]])
      expect(failed.next_cursor).toBeNull()
      // Without a status filter every task is listed, not only pending ones.
      const unfiltered = await json(await fetch(`${fresh.url}/api/v1/tasks?limit=100`))
      expect(unfiltered.tasks.map((t: { task_id: string }) => t.task_id)).toEqual(seen)
    } finally {
      await fresh.stop()
    }
  })

  test.each([['limit=0'], ['limit=101'], ['limit=abc'], ['status=done'], ['cursor=nope']])('bad query %s is a 422', async (q) => {
    const res = await fetch(api(`/tasks?${q}`))
    expect(res.status).toBe(422)
    expect((await json(res)).error).toBe('validation')
  })

  test.each([['status='], ['status=done']])('%s names the statuses', async (q) => {
    const res = await fetch(api(`/tasks?${q}`))
    expect(res.status).toBe(422)
    expect(await json(res)).toEqual({
      error: 'validation',
      message: 'Invalid query parameter status: must be one of pending, in_progress, completed, failed',
      details: [{ path: '/status', message: 'must be one of pending, in_progress, completed, failed' }],
    })
  })
})

describe('GET /api/v1/tasks/{task_id}', () => {
  test('returns the task with its subtasks', async () => {
    const task = await createTask(server)
    const res = await fetch(api(`/tasks/${task.task_id}`))
    expect(res.status).toBe(200)
    expect(await json(res)).toEqual(task)
  })

  test('unknown id is a 404, malformed id a 422', async () => {
    const missing = await fetch(api('/tasks/00000000-0000-4000-8000-000000000000'))
    expect(missing.status).toBe(404)
    expect(await json(missing)).toEqual({ error: 'not_found', message: 'Task 00000000-0000-4000-8000-000000000000 not found' })
    const bad = await fetch(api('/tasks/not-a-uuid'))
    expect(bad.status).toBe(422)
    expect((await json(bad)).details[0].path).toBe('/task_id')
  })
})

describe('subtasks', () => {
  test('GET returns the subtask; unknown 404; malformed 422', async () => {
    const task = await createTask(server)
    const sub = task.subtasks[0]!
    expect(await json(await fetch(api(`/subtasks/${sub.subtask_id}`)))).toEqual(sub)
    expect((await fetch(api('/subtasks/00000000-0000-4000-8000-000000000000'))).status).toBe(404)
    expect((await fetch(api('/subtasks/123'))).status).toBe(422)
  })

  test('PATCH sets status and worker and derives the task status', async () => {
    const task = await createTask(server, { description: 'a', subtasks: [{ description: 'x' }, { description: 'y' }] })
    const [x, y] = task.subtasks
    const res = await patch(`/subtasks/${x!.subtask_id}`, { status: 'in_progress', worker_id: 'w-1', worker_name: 'builder' })
    expect(res.status).toBe(200)
    const updated = await json(res)
    expect(updated).toMatchObject({ status: 'in_progress', worker_id: 'w-1', worker_name: 'builder' })
    expect(updated.updated_at >= x!.updated_at).toBe(true)
    const taskStatus = async () => (await json(await fetch(api(`/tasks/${task.task_id}`)))).status
    expect(await taskStatus()).toBe('in_progress')
    await patch(`/subtasks/${x!.subtask_id}`, { status: 'completed' })
    expect(await taskStatus()).toBe('in_progress')
    await patch(`/subtasks/${y!.subtask_id}`, { status: 'completed' })
    expect(await taskStatus()).toBe('completed')
    await patch(`/subtasks/${y!.subtask_id}`, { status: 'failed' })
    expect(await taskStatus()).toBe('failed')
    // A PATCH without status leaves it alone.
    expect(await json(await patch(`/subtasks/${y!.subtask_id}`, { worker_name: 'other' }))).toMatchObject({
      status: 'failed',
      worker_name: 'other',
    })
    expect(await taskStatus()).toBe('failed')
  })

  test('PATCH validation and unknown subtask', async () => {
    const task = await createTask(server)
    const bad = await patch(`/subtasks/${task.subtasks[0]!.subtask_id}`, { status: 'done' })
    expect(bad.status).toBe(422)
    expect(await json(bad)).toMatchObject({
      message: 'Invalid request body at /status: must be one of pending, in_progress, completed, failed',
      details: [{ path: '/status' }],
    })
    expect((await patch('/subtasks/00000000-0000-4000-8000-000000000000', { status: 'completed' })).status).toBe(404)
  })
})

describe('errors and operations', () => {
  test('unknown routes get a JSON 404', async () => {
    const res = await fetch(`${server.url}/nope`)
    expect(res.status).toBe(404)
    expect((await json(res)).error).toBe('not_found')
  })

  test('an oversized body is a 413 before it is read', async () => {
    const res = await post(api('/tasks'), { description: 'x'.repeat(server.config.maxBodyBytes + 10) })
    expect(res.status).toBe(413)
    expect((await json(res)).error).toBe('payload_too_large')
  })

  test('/health and /ready', async () => {
    expect(await json(await fetch(`${server.url}/health`))).toEqual({ status: 'ok' })
    const ready = await fetch(`${server.url}/ready`)
    expect(ready.status).toBe(200)
    expect(await json(ready)).toEqual({
      status: 'ready',
      components: { tasks: { status: 'ok' }, history: { status: 'ok' }, feed: { status: 'ok' } },
    })
  })
})

describe('GET /metrics', () => {
  test('counts connections, subscriptions, logs by level, frames sent and request durations', async () => {
    const fresh = await startServer()
    try {
      const task = await createTask(fresh)
      const [a, b] = [await watch(fresh, task.task_id), await watch(fresh, task.task_id, '?level=error')]
      await sendLog(fresh, task.subtasks[0]!.subtask_id, { level: 'warning', message: 'w' })
      await sendLog(fresh, task.subtasks[0]!.subtask_id, { level: 'error', message: 'e' })
      await post(`${fresh.url}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`, { level: 'loud', message: 'x' })
      const res = await fetch(`${fresh.url}/metrics`)
      expect(res.headers.get('content-type')).toStartWith('text/plain')
      let text = await res.text()
      const value = (name: string) => Number(text.match(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm'))?.[1])
      expect(value('tasklog_websocket_connections')).toBe(2)
      expect(value('tasklog_subscriptions')).toBe(2)
      expect(value('tasklog_logs_ingested_total{level="warning"}')).toBe(1)
      expect(value('tasklog_logs_ingested_total{level="error"}')).toBe(1)
      expect(value('tasklog_logs_ingested_total{level="debug"}')).toBe(0)
      expect(value('tasklog_frames_sent_total')).toBe(3) // warning to one socket, error to both
      expect(text).toContain(
        'tasklog_http_request_duration_seconds_count{method="POST",route="/api/v1/subtasks/:subtask_id/log",status="201"} 2',
      )
      expect(text).toContain(
        'tasklog_http_request_duration_seconds_count{method="POST",route="/api/v1/subtasks/:subtask_id/log",status="422"} 1',
      )
      // Buckets are cumulative and end at the count.
      const buckets = [
        ...text.matchAll(
          /duration_seconds_bucket\{method="POST",route="\/api\/v1\/subtasks\/:subtask_id\/log",status="201",le="[^"]+"\} (\d+)/g,
        ),
      ].map((m) => Number(m[1]))
      expect(buckets).toHaveLength(12)
      expect(buckets.at(-1)).toBe(2)
      for (let i = 1; i < buckets.length; i++) expect(buckets[i]!).toBeGreaterThanOrEqual(buckets[i - 1]!)
      a.close()
      b.close()
      await Promise.all([a.closed, b.closed])
      for (let i = 0; i < 50 && value('tasklog_websocket_connections') !== 0; i++) {
        await Bun.sleep(20)
        text = await (await fetch(`${fresh.url}/metrics`)).text()
      }
      expect(value('tasklog_websocket_connections')).toBe(0)
      expect(value('tasklog_subscriptions')).toBe(0)
    } finally {
      await fresh.stop()
    }
  })
})
