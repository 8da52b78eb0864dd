import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import { json, startServer, type TestServer } from './support/server'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

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
})

// CI installs Chromium, so there the browser test always runs.
describe.skipIf(!existsSync(CHROMIUM) && !process.env.CI)('Swagger UI in a real browser, offline', () => {
  let browser: Browser
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
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
