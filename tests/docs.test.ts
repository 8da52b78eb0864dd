import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Browser } from 'playwright-core'
import { haveChromium, launchChromium } from './support/browser'
import { json, startServer, type TestServer } from './support/server'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

describe('OpenAPI document', () => {
  test('every route has a summary, a tag and its schemas', async () => {
    const spec = await json(await fetch(`${server.url}/swagger/json`))
    expect(spec.openapi).toStartWith('3.')
    expect(Object.keys(spec.paths).sort()).toEqual([
      '/api/v1/subtasks/{subtask_id}',
      '/api/v1/subtasks/{subtask_id}/log',
      '/api/v1/subtasks/{subtask_id}/logs',
      '/api/v1/tasks',
      '/api/v1/tasks/{task_id}',
      '/api/v1/tasks/{task_id}/logs',
      '/api/v1/tasks/{task_id}/logs/stream',
      '/api/v1/ws/tasks/{task_id}/logs',
      '/health',
      '/metrics',
      '/ready',
    ])
    for (const [path, methods] of Object.entries<Record<string, any>>(spec.paths)) {
      for (const [method, op] of Object.entries<any>(methods)) {
        expect(op.summary, `${method} ${path} summary`).toBeString()
        expect(op.tags?.length, `${method} ${path} tags`).toBeGreaterThan(0)
        expect(Object.keys(op.responses ?? {}).length, `${method} ${path} responses`).toBeGreaterThan(0)
      }
    }
    const create = spec.paths['/api/v1/tasks'].post
    expect(create.requestBody.content['application/json'].schema.properties.description.maxLength).toBe(10000)
    expect(create.responses['201']).toBeDefined()
    const log = spec.paths['/api/v1/subtasks/{subtask_id}/log'].post
    expect(
      log.requestBody.content['application/json'].schema.properties.level.enum ??
        log.requestBody.content['application/json'].schema.properties.level.anyOf,
    ).toBeDefined()
    expect(log.responses['201'].content['application/json'].schema.properties.broadcasted.type).toBe('integer')
  })

  test('documents the WebSocket frames and actions as named schemas', async () => {
    const spec = await json(await fetch(`${server.url}/swagger/json`))
    const schemas = spec.components.schemas
    const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` })
    const frames = ['SubscribedFrame', 'UnsubscribedFrame', 'LogFrame', 'StatusFrame', 'PongFrame', 'ErrorFrame']
    expect(schemas.ServerFrame.anyOf).toEqual(frames.map(ref))
    expect(schemas.ClientAction.anyOf).toEqual(['PingAction', 'SubscribeAction', 'UnsubscribeAction'].map(ref))
    for (const name of frames) expect(schemas[name].required, name).toContain('timestamp')

    expect(schemas.LogFrame.properties.type.enum).toEqual(['log'])
    expect(schemas.LogFrame.properties.data).toEqual(ref('LogMessage'))
    expect(Object.keys(schemas.LogMessage.properties).sort()).toEqual(
      ['id', 'level', 'message', 'metadata', 'subtask_id', 'task_id', 'timestamp', 'worker_id', 'worker_name'].sort(),
    )
    expect(schemas.StatusFrame.properties.data).toEqual(ref('StatusChange'))
    expect(schemas.StatusChange.required).toEqual(['task_id', 'subtask_id', 'status', 'task_status', 'worker_name'])
    expect(schemas.SubscribedFrame.properties.data.required).toEqual(['task_id'])
    expect(schemas.SubscribedFrame.properties.data.properties.recovered.type).toBe('boolean')
    expect(schemas.PongFrame.properties.data).toBeUndefined()
    expect(schemas.ErrorFrame.properties.data.properties.code.enum).toContain('too_many_subscriptions')
    expect(Object.keys(schemas.SubscribeAction.properties).sort()).toEqual(['action', 'history', 'level', 'since', 'task_id'])

    const ws = spec.paths['/api/v1/ws/tasks/{task_id}/logs'].get
    expect(ws['x-websocket-server-frames']).toEqual(ref('ServerFrame'))
    expect(ws['x-websocket-client-actions']).toEqual(ref('ClientAction'))
    expect(ws.description).toContain('ServerFrame')
    // Its query is checked when the socket opens, not by the router, and documented the same as SSE's.
    const sse = spec.paths['/api/v1/tasks/{task_id}/logs/stream'].get
    const where = (p: any) => `${p.in} ${p.name}`
    expect(ws.parameters.map(where)).toEqual(['path task_id', 'query since', 'query history', 'query level'])
    for (const name of ['since', 'history', 'level']) {
      expect(ws.parameters.find((p: any) => p.name === name).schema).toEqual(
        sse.parameters.find((p: any) => p.name === name).schema,
      )
    }
  })

  test('an app started after another one stopped serves the docs page too (tests start many)', async () => {
    const first = await startServer()
    expect((await fetch(`${first.url}/swagger`)).status).toBe(200)
    await first.stop()
    const second = await startServer()
    for (const path of ['/swagger', '/swagger/assets/swagger-ui.css']) {
      const res = await fetch(`${second.url}${path}`)
      expect(res.status).toBe(200)
      expect((await res.text()).length).toBeGreaterThan(100)
    }
    await second.stop()
  })
})

describe.skipIf(!haveChromium)('Swagger UI in a real browser, offline', () => {
  let browser: Browser
  beforeAll(async () => {
    browser = await launchChromium()
  })
  afterAll(() => browser?.close())

  test('renders the tasks operations with every request to other hosts blocked', async () => {
    const page = await browser.newPage()
    const blocked: string[] = []
    await page.route('**/*', (route) => {
      const host = new URL(route.request().url()).hostname
      if (host === '127.0.0.1' || host === 'localhost') return route.continue()
      blocked.push(route.request().url())
      return route.abort()
    })
    await page.goto(`${server.url}/swagger`)
    const operation = page.locator('.opblock-summary-path', { hasText: '/api/v1/tasks/{task_id}' }).first()
    await operation.waitFor({ timeout: 15_000 })
    expect(await page.locator('.opblock-tag', { hasText: 'tasks' }).count()).toBeGreaterThan(0)
    expect(await page.locator('.opblock-summary-path').allInnerTexts()).toContain('/api/v1/tasks')
    expect(blocked).toEqual([])
    await page.close()
  }, 30_000)
})
