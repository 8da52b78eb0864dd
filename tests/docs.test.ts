import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { ERROR_STATUS } from '../src/errors'
import { haveChromium, launchChromium } from './support/browser'
import { createTask, json, startServer, type TestServer } from './support/server'

let server: TestServer
beforeAll(async () => {
  // Local mode with a secret to sign with: every example succeeds from loopback, minting a token too.
  server = await startServer({ env: { AUTH_MODE: 'local', AUTH_SECRET: 'docs-test-secret-at-least-32-bytes-long' } })
})
afterAll(() => server.stop())

describe('OpenAPI document', () => {
  test('every route has a summary, a tag and its schemas', async () => {
    const spec = await json(await fetch(`${server.url}/swagger/json`))
    expect(Object.keys(spec.paths).sort()).toEqual([
      '/api/v1/subtasks/{subtask_id}',
      '/api/v1/subtasks/{subtask_id}/log',
      '/api/v1/subtasks/{subtask_id}/logs',
      '/api/v1/tasks',
      '/api/v1/tasks/{task_id}',
      '/api/v1/tasks/{task_id}/logs',
      '/api/v1/tasks/{task_id}/logs/stream',
      '/api/v1/tokens',
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
        // The bearer scheme and the scope on every operation but the public ones.
        const isPublic = path === '/health' || path === '/ready'
        expect(op.security, `${method} ${path} security`).toEqual(isPublic ? [] : [{ bearer: [] }])
        if (!isPublic) expect(op['x-required-scope'], `${method} ${path} scope`).toBeString()
      }
    }
    expect(spec.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(spec.paths['/api/v1/subtasks/{subtask_id}/log'].post['x-required-scope']).toBe('logs:write')
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
    expect(ws.parameters.map(where)).toEqual(['path task_id', 'query since', 'query history', 'query level', 'query token'])
    for (const name of ['since', 'history', 'level']) {
      expect(ws.parameters.find((p: any) => p.name === name).schema).toEqual(
        sse.parameters.find((p: any) => p.name === name).schema,
      )
    }
  })

  test('each app describes itself, though apps in one process share the docs plugin', async () => {
    const other = await startServer({ env: { LOG_HISTORY_MAX: '50' } })
    try {
      const historyMax = async (url: string) => {
        const spec = await json(await fetch(`${url}/swagger/json`))
        return spec.paths['/api/v1/tasks/{task_id}/logs/stream'].get.parameters.find((p: any) => p.name === 'history').schema
          .maximum
      }
      expect(await historyMax(other.url)).toBe(50)
      expect(await historyMax(server.url)).toBe(server.config.logHistoryMax)
      expect(server.config.logHistoryMax).not.toBe(50)
    } finally {
      await other.stop()
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

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const METHODS = ['get', 'post', 'put', 'patch', 'delete']

/** Every operation of the document, with its path and method. */
const operations = (spec: any) =>
  Object.entries<any>(spec.paths).flatMap(([path, item]) =>
    Object.entries<any>(item)
      .filter(([method]) => METHODS.includes(method))
      .map(([method, op]) => ({ path, method, op, name: `${method.toUpperCase()} ${path}` })),
  )

/** Calls `visit` on every schema of the document, nested ones included. */
function eachSchema(spec: any, visit: (schema: any, where: string) => void): void {
  const walk = (schema: any, where: string): void => {
    if (!schema || typeof schema !== 'object') return
    visit(schema, where)
    for (const key of ['items', 'not', 'additionalProperties']) walk(schema[key], `${where}/${key}`)
    for (const key of ['anyOf', 'oneOf', 'allOf', 'prefixItems'])
      schema[key]?.forEach((s: any, i: number) => walk(s, `${where}/${key}/${i}`))
    for (const key of ['properties', 'patternProperties'])
      for (const [name, s] of Object.entries(schema[key] ?? {})) walk(s, `${where}/${key}/${name}`)
  }
  for (const [name, schema] of Object.entries(spec.components.schemas)) walk(schema, `#/components/schemas/${name}`)
  for (const { op, name } of operations(spec)) {
    op.parameters?.forEach((p: any) => walk(p.schema, `${name} ${p.name}`))
    for (const [type, media] of Object.entries<any>(op.requestBody?.content ?? {})) walk(media.schema, `${name} body ${type}`)
    for (const [status, response] of Object.entries<any>(op.responses))
      for (const [type, media] of Object.entries<any>(response.content ?? {})) walk(media.schema, `${name} ${status} ${type}`)
  }
}

describe('OpenAPI 3.1 document', () => {
  let spec: any
  beforeAll(async () => {
    spec = await json(await fetch(`${server.url}/swagger/json`))
  })

  test('@redocly/cli lint finds no error in it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasklog-openapi-'))
    try {
      const file = join(dir, 'openapi.json')
      await Bun.write(file, JSON.stringify(spec))
      // Run by Bun, from the repository (its redocly.yaml turns telemetry off): no network needed.
      const lint = Bun.spawn([process.execPath, 'node_modules/.bin/redocly', 'lint', file, '--format=json'], {
        cwd: join(import.meta.dir, '..'),
        env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
        stdout: 'pipe',
        stderr: 'pipe',
      })
      const [out, err, code] = await Promise.all([
        new Response(lint.stdout).text(),
        new Response(lint.stderr).text(),
        lint.exited,
      ])
      let report: any
      try {
        report = JSON.parse(out)
      } catch {
        throw new Error(`redocly lint exited with ${code}: ${err.slice(0, 2000)}`)
      }
      const errors = report.problems
        .filter((p: any) => p.severity === 'error')
        .map((p: any) => `${p.ruleId} at ${p.location?.[0]?.pointer}: ${p.message}`)
      expect(errors).toEqual([])
      expect(report.totals.errors).toBe(0)
      expect(code).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)

  test("declares 3.1 and uses JSON Schema keywords only, not the server's own", () => {
    expect(spec.openapi).toBe('3.1.0')
    const leaks: string[] = []
    eachSchema(spec, (schema, where) => {
      for (const keyword of ['error', 'errorMessage', 'x-parameter', 'noValidate', 'nullable'])
        if (keyword in schema) leaks.push(`${where}: ${keyword}`)
      if (schema.examples !== undefined && !Array.isArray(schema.examples)) leaks.push(`${where}: examples is not a list`)
      if (['client-uuid', 'client-timestamp', 'integer'].includes(schema.format)) leaks.push(`${where}: format ${schema.format}`)
    })
    expect(leaks).toEqual([])
    // 3.1 writes a nullable field as a type list.
    const log = spec.paths['/api/v1/subtasks/{subtask_id}/log'].post.requestBody.content['application/json'].schema
    expect(log.properties.metadata.type).toEqual(['object', 'null'])
    expect(spec.components.schemas.StatusChange.properties.worker_name.type).toEqual(['string', 'null'])
  })

  test('every operation has a summary, a description and described responses; errors show their real codes', () => {
    const statusOf: Record<string, number> = { ...ERROR_STATUS, upgrade_required: 426 }
    for (const { op, name } of operations(spec)) {
      expect(op.summary, `${name} summary`).toBeString()
      expect(op.description?.length, `${name} description`).toBeGreaterThan(10)
      for (const [status, response] of Object.entries<any>(op.responses)) {
        expect(response.description, `${name} ${status}`).not.toMatch(/^(Response for status|$)/)
        const media = response.content?.['application/json']
        if (Number(status) < 400 || !media?.schema?.properties?.error) continue
        const examples = Object.values<any>(media.examples ?? {})
        expect(examples.length, `${name} ${status} examples`).toBeGreaterThan(0)
        for (const { value } of examples) expect(statusOf[value.error], `${name} ${status} ${value.error}`).toBe(Number(status))
      }
      for (const parameter of op.parameters ?? []) {
        if (parameter.in === 'path') expect(parameter.example, `${name} ${parameter.name}`).toMatch(UUID)
        // Swagger UI would send an optional filter's example (subtask_id, since), hiding the logs asked for.
        else expect([parameter.example, parameter.schema.examples], `${name} ${parameter.name}`).toEqual([undefined, undefined])
      }
    }
    const ingest = spec.paths['/api/v1/subtasks/{subtask_id}/log'].post.responses
    expect(Object.keys(ingest).sort()).toEqual(['201', '401', '403', '404', '413', '422', '429', '503', '507'])
    // The Idempotency-Key header, optional, and its malformed form's 422.
    const post = spec.paths['/api/v1/subtasks/{subtask_id}/logs'].post
    expect(post.parameters.find((p: any) => p.in === 'header')).toMatchObject({ name: 'idempotency-key', required: false })
    expect(Object.keys(post.responses['422'].content['application/json'].examples)).toContain('invalid_idempotency-key')
    const sse = spec.paths['/api/v1/tasks/{task_id}/logs/stream'].get.responses['200'].content['text/event-stream']
    expect(sse.example).toContain('event: log')
  })

  test('its examples succeed as they are: bodies, and parameters with the ids of a real task', async () => {
    const task = await createTask(server)
    const ids: Record<string, string> = { task_id: task.task_id, subtask_id: task.subtasks[0]!.subtask_id }
    const tried: string[] = []
    for (const { path, method, op, name } of operations(spec)) {
      if (path.includes('/ws/')) continue // WebSocket only: its frames are checked in websocket.test.ts
      const url = new URL(
        path.replace(/\{(\w+)\}/g, (_, id) => ids[id]!),
        server.url,
      )
      for (const p of op.parameters ?? [])
        if (p.in === 'query' && p.example !== undefined) url.searchParams.set(p.name, String(p.example))
      const headers: Record<string, string> = {}
      for (const p of op.parameters ?? []) if (p.in === 'header' && p.example !== undefined) headers[p.name] = String(p.example)
      const body = op.requestBody?.content['application/json']
      if (op.requestBody) {
        expect(body?.example, `${name} body example`).toBeDefined()
        headers['content-type'] = 'application/json'
      }
      const abort = new AbortController()
      const res = await fetch(url, { method, headers, body: body && JSON.stringify(body.example), signal: abort.signal })
      const success = Object.keys(op.responses).find((status) => status.startsWith('2'))
      expect(`${name} ${res.status}`).toBe(`${name} ${success}`)
      const type = Object.keys(op.responses[success!].content ?? {})[0]
      if (type) expect(res.headers.get('content-type'), name).toStartWith(type)
      abort.abort() // the SSE stream never ends
      tried.push(name)
    }
    expect(tried).toContain('POST /api/v1/subtasks/{subtask_id}/logs')
    expect(tried).toContain('GET /api/v1/tasks/{task_id}/logs/stream')
  })

  test("its error examples are the server's own answers", async () => {
    const task = await createTask(server)
    const subtaskId = task.subtasks[0]!.subtask_id
    const example = (path: string, method: string, status: number, name: string) =>
      spec.paths[path][method].responses[status].content['application/json'].examples[name].value
    const answer = async (res: Response) => [res.status, await json(res)]
    const getTask = '/api/v1/tasks/{task_id}'
    expect(await answer(await fetch(`${server.url}/api/v1/tasks/${spec.paths[getTask].get.parameters[0].example}`))).toEqual([
      404,
      example(getTask, 'get', 404, 'not_found'),
    ])
    expect(await answer(await fetch(`${server.url}/api/v1/tasks/0`))).toEqual([
      422,
      example(getTask, 'get', 422, 'invalid_task_id'),
    ])
    expect(await answer(await fetch(`${server.url}/api/v1/tasks?limit=0`))).toEqual([
      422,
      example('/api/v1/tasks', 'get', 422, 'invalid_limit'),
    ])
    const sendLog = '/api/v1/subtasks/{subtask_id}/log'
    const post = (body: string) =>
      fetch(`${server.url}/api/v1/subtasks/${subtaskId}/log`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      })
    expect(await answer(await post('{"level":"verbose","message":"x"}'))).toEqual([
      422,
      example(sendLog, 'post', 422, 'invalid_body'),
    ])
    expect(await answer(await post('{"level":'))).toEqual([422, example(sendLog, 'post', 422, 'not_json')])
    expect(await answer(await fetch(`${server.url}/api/v1/ws/tasks/${task.task_id}/logs`))).toEqual([
      426,
      example('/api/v1/ws/tasks/{task_id}/logs', 'get', 426, 'upgrade_required'),
    ])
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

  test('"Try it out" on sending a log stores it with the example body as shown, given a real subtask id', async () => {
    const task = await createTask(server)
    const subtaskId = task.subtasks[0]!.subtask_id
    const page = await browser.newPage()
    await page.goto(`${server.url}/swagger#/logs/postApiV1SubtasksBySubtask_idLog`)
    const operation = page.locator('#operations-logs-postApiV1SubtasksBySubtask_idLog')
    await operation.locator('.try-out__btn').click({ timeout: 15_000 })
    const id = operation.locator('tr[data-param-name="subtask_id"] input')
    expect(await id.inputValue()).toMatch(UUID)
    const body = JSON.parse(await operation.locator('textarea.body-param__text').inputValue())
    expect(body).toEqual({ level: 'info', message: 'Processing step 1', metadata: { step: 1 } })
    await id.fill(subtaskId)
    await operation.locator('button.execute').click()
    const status = operation.locator('.live-responses-table tbody .response-col_status').first()
    await status.waitFor({ timeout: 10_000 })
    expect((await status.innerText()).trim()).toBe('201')
    const history = await json(await fetch(`${server.url}/api/v1/tasks/${task.task_id}/logs`))
    expect(history.logs.map((log: any) => [log.subtask_id, log.message, log.metadata])).toEqual([
      [subtaskId, 'Processing step 1', { step: 1 }],
    ])
    await page.close()
  }, 30_000)
})
