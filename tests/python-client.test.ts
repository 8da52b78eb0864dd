import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findPython } from './support/example-process'
import { startRedis, type RedisServer } from './support/redis-server'
import { startServer, type TestServer } from './support/server'

// The Python client package (clients/python), installed as a user installs it, then its own
// unittest suite run against a real server on a real Redis. The suite drives outages through a
// small control server of this test (TASKLOG_TEST_CONTROL): pause Redis, drop the streams.
const ROOT = new URL('..', import.meta.url).pathname
const PACKAGE = join(ROOT, 'clients/python')
const python = findPython()

/** Runs a command to its end without blocking this process, which serves the suite's requests meanwhile. */
async function run(cmd: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const env = { ...process.env, ...options.env }
  const proc = Bun.spawn(cmd, { cwd: options.cwd ?? ROOT, env, stdout: 'pipe', stderr: 'pipe' })
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  return { code, stdout, stderr }
}

if (!python)
  console.warn(
    'Skipping the Python client tests: no python3 can import websockets and httpx (apt-get install python3-websockets python3-httpx).',
  )

describe.skipIf(!python)('Python client package', () => {
  let redis: RedisServer
  let server: TestServer
  let control: ReturnType<typeof Bun.serve>
  let venv: string

  beforeAll(async () => {
    redis = await startRedis()
    // A short history, so that the suite can make a resumed stream miss trimmed lines.
    server = await startServer({ redisUrl: redis.url, env: { LOG_HISTORY_MAX: '200' } })
    control = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      async fetch(req) {
        const url = new URL(req.url)
        if (url.pathname === '/redis/pause') {
          // Answers once Redis is stopped; resumes it `ms` later on its own.
          await redis.pause()
          setTimeout(() => redis.resume(), Number(url.searchParams.get('ms') ?? 3000))
          return new Response('paused')
        }
        if (url.pathname === '/streams/close') {
          server.app.closeSockets(Number(url.searchParams.get('code')), 'Server restarting: reconnect with since=<last id>')
          return new Response('closed')
        }
        return new Response('unknown control', { status: 404 })
      },
    })
    venv = mkdtempSync(join(tmpdir(), 'tasklog-python-'))
  })

  afterAll(async () => {
    control?.stop(true)
    await server?.stop()
    await redis?.stop()
    rmSync(venv, { recursive: true, force: true })
  })

  test('installs offline with pip into a fresh virtualenv', async () => {
    // --system-site-packages: the virtualenv sees Debian's httpx and websockets (python3-httpx,
    // python3-websockets) and the build tools (setuptools, wheel); PIP_NO_INDEX proves nothing
    // is downloaded.
    const made = await run([python!, '-m', 'venv', '--system-site-packages', venv])
    expect(made.stderr).toBe('')
    expect(made.code).toBe(0)
    const install = await run([join(venv, 'bin/pip'), 'install', '--no-build-isolation', PACKAGE], {
      env: { PIP_NO_INDEX: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' },
    })
    expect(install.stderr).not.toContain('ERROR')
    expect(install.code).toBe(0)
    // Imported from outside the repository: the installed copy, not the source folder.
    const where = await run([join(venv, 'bin/python'), '-c', 'import tasklog_client; print(tasklog_client.__file__)'], {
      cwd: venv,
    })
    expect(where.code).toBe(0)
    expect(where.stdout).toStartWith(venv)
  }, 60_000)

  test('its unittest suite passes against a real server and Redis, with nothing skipped', async () => {
    // The suite's own folder is the only one put on sys.path, so tasklog_client is the installed one.
    const tests = join(PACKAGE, 'tests')
    const result = await run([join(venv, 'bin/python'), '-m', 'unittest', 'discover', '-s', tests, '-t', tests, '-v'], {
      cwd: venv,
      env: { TASKLOG_URL: server.url, TASKLOG_TEST_CONTROL: `http://127.0.0.1:${control.port}` },
    })
    const summary = /^Ran (\d+) tests? in [\d.]+s\n\n(OK|FAILED)(?: \((.*)\))?$/m.exec(result.stderr)
    if (result.code !== 0 || !summary) console.error(result.stderr.slice(-6000))
    expect(summary?.[2]).toBe('OK')
    expect(Number(summary?.[1])).toBeGreaterThanOrEqual(30)
    expect(summary?.[3] ?? '').not.toContain('skipped')
    expect(result.code).toBe(0)
  }, 120_000)
})
