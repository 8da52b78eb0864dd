/**
 * The single executable: built as `bun run build` builds it, copied alone into an empty folder
 * (no node_modules, no sources), and run there against a real Redis: the viewer, Swagger UI,
 * the Redis engine's Lua scripts and the archiver's thread must all be inside it.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { scripts } from '../package.json'
import { startExample, type RunningExample } from './support/example-process'
import { startRedis, type RedisServer } from './support/redis-server'

const ROOT = join(import.meta.dir, '..')

describe('the compiled binary', () => {
  const buildDir = mkdtempSync(join(tmpdir(), 'tasklog-build-'))
  const runDir = mkdtempSync(join(tmpdir(), 'tasklog-run-'))
  let redis: RedisServer
  let server: RunningExample
  let url: string

  beforeAll(async () => {
    // The build script's own command, writing into a temporary folder instead of dist/.
    const args = scripts.build.split(' ')
    args[args.indexOf('--outfile') + 1] = join(buildDir, 'tasklog')
    const build = Bun.spawnSync(args, { cwd: ROOT, stdout: 'pipe', stderr: 'pipe' })
    if (build.exitCode !== 0) throw new Error(`${scripts.build} failed:\n${build.stderr}`)
    copyFileSync(join(buildDir, 'tasklog'), join(runDir, 'tasklog'))
    Bun.spawnSync(['chmod', '+x', join(runDir, 'tasklog')])
    redis = await startRedis()
    server = startExample(
      [join(runDir, 'tasklog')],
      {
        PORT: '0',
        HOST: '127.0.0.1',
        REDIS_URL: redis.url,
        DATABASE_URL: '',
        ARCHIVE_DAYS: '1',
        ARCHIVE_INTERVAL_MS: '100',
      },
      runDir,
    )
    const listening = /listening on (http:\/\/127\.0\.0\.1:\d+)/
    await server.waitFor(listening, 15_000)
    url = listening.exec(server.stdout())![1]!
  }, 120_000)

  afterAll(async () => {
    await server?.stop('SIGTERM')
    await redis?.stop()
    rmSync(buildDir, { recursive: true, force: true })
    rmSync(runDir, { recursive: true, force: true })
  })

  test('stores a log in Redis and reads it back; tasks go to the default SQLite file beside it', async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const task = await (await post('/api/v1/tasks', { description: 'from the binary' })).json()
    const sent = await post(`/api/v1/subtasks/${task.subtasks[0].subtask_id}/log`, { level: 'warning', message: 'compiled' })
    expect(sent.status).toBe(201)
    const history = await (await fetch(`${url}/api/v1/tasks/${task.task_id}/logs?level=warning`)).json()
    expect(history.logs.map((l: { message: string }) => l.message)).toEqual(['compiled'])
    expect(server.stdout()).toContain(`history: ${redis.url}`)
    expect(await Bun.file(join(runDir, 'data', 'tasklog.sqlite')).exists()).toBe(true)
  })

  test("archives on the archiver's thread", async () => {
    const archived = async () => {
      const metrics = await (await fetch(`${url}/metrics`)).text()
      return Number(/^tasklog_archive_rows_written_total (\d+)$/m.exec(metrics)?.[1])
    }
    for (const deadline = Date.now() + 10_000; !((await archived()) >= 1); await Bun.sleep(100))
      if (Date.now() > deadline) throw new Error(`nothing archived: ${JSON.stringify(await (await fetch(`${url}/ready`)).json())}`)
    expect((await (await fetch(`${url}/ready`)).json()).archive.state).toBe('ok')
  }, 15_000)

  test('serves Swagger UI, its assets and the OpenAPI document', async () => {
    const page = await fetch(`${url}/swagger`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('/swagger/assets/swagger-ui-bundle.js')
    const bundle = await fetch(`${url}/swagger/assets/swagger-ui-bundle.js`)
    expect(bundle.status).toBe(200)
    expect(bundle.headers.get('content-type')).toStartWith('text/javascript')
    expect(await bundle.text()).toContain('SwaggerUIBundle')
    const css = await fetch(`${url}/swagger/assets/swagger-ui.css`)
    expect(css.status).toBe(200)
    expect(await css.text()).toContain('.swagger-ui')
    const spec = await (await fetch(`${url}/swagger/json`)).json()
    expect(Object.keys(spec.paths)).toContain('/api/v1/subtasks/{subtask_id}/log')
  })

  test('serves the web viewer and every asset its page names', async () => {
    const page = await fetch(`${url}/`)
    expect(page.status).toBe(200)
    const html = await page.text()
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!)
    expect(assets.some((a) => a.endsWith('.js'))).toBe(true)
    expect(assets.some((a) => a.endsWith('.css'))).toBe(true)
    for (const asset of assets) expect((await fetch(`${url}${asset}`)).status).toBe(200)
  })
})
