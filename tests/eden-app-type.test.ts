/**
 * Eden treaty users type their client with the server's `App`, exported as `tasklog/app` (a
 * type-only import: the SDK package itself never depends on server code).
 */
import { treaty } from '@elysiajs/eden'
import { afterAll, beforeAll, expect, test } from 'bun:test'
import type { App } from 'tasklog/app'
import { startServer, type TestServer } from './support/server'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

test('treaty<App> calls the API with typed paths, bodies and answers', async () => {
  const api = treaty<App>(server.url)
  const created = await api.api.v1.tasks.post({ description: 'typed', subtasks: [{ description: 'only step' }] })
  expect(created.status).toBe(201)
  const task = created.data!
  const subtaskId: string = task.subtasks[0]!.subtask_id
  const logged = await api.api.v1.subtasks({ subtask_id: subtaskId }).log.post({ level: 'info', message: 'hello' })
  expect(logged.status).toBe(201)
  const read = await api.api.v1.tasks({ task_id: task.task_id }).logs.get({ query: { order: 'asc' } })
  expect(read.data!.logs.map((l) => l.message)).toEqual(['hello'])
})
