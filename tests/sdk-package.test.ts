/**
 * The SDK as users get it: clients/ts built and packed with `npm pack`, installed into a
 * consumer's node_modules, and run against a real server under Bun, plain Node 22 and headless
 * Chromium (the same script each time: tests/fixtures/sdk-smoke.mjs).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { haveChromium, launchChromium } from './support/browser'
import { node22 } from './support/node22'
import { startServer, type TestServer } from './support/server'

const PACKAGE = join(import.meta.dir, '..', 'clients', 'ts')
const FIXTURES = join(import.meta.dir, 'fixtures')
const MODULES = ['api', 'backoff', 'ids', 'index', 'log-id', 'log-stream-client', 'types', 'worker-logger']
const EXPECTED = {
  runtime: expect.any(String),
  messages: ['info before watching', 'info live', 'error live error'],
  sent: 4,
  failed: 0,
}

let server: TestServer
let work: string
/** The consumer project: the tarball unpacked in node_modules/tasklog-client, and the smoke script. */
let consumer: string
let packed: { files: string[]; tarball: string }

async function run(cmd: string[], cwd: string, timeoutMs = 60_000): Promise<string> {
  const proc = Bun.spawn(cmd, { cwd, stdout: 'pipe', stderr: 'pipe', timeout: timeoutMs })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  if (code !== 0) throw new Error(`${cmd.join(' ')} exited with ${code}:\n${err}${out}`)
  return out
}

beforeAll(async () => {
  server = await startServer()
  work = mkdtempSync(join(tmpdir(), 'tasklog-sdk-'))
  // `npm pack` builds first (prepack), as `npm publish` does.
  const [info] = JSON.parse(await run(['npm', 'pack', '--json', '--pack-destination', work], PACKAGE, 120_000))
  packed = { files: info.files.map((f: { path: string }) => f.path).sort(), tarball: join(work, info.filename) }
  consumer = join(work, 'consumer')
  const installed = join(consumer, 'node_modules', 'tasklog-client')
  mkdirSync(installed, { recursive: true })
  await run(['tar', 'xzf', packed.tarball, '-C', installed, '--strip-components=1'], work)
  await Bun.write(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
  for (const file of ['sdk-smoke.mjs', 'sdk-smoke-main.mjs']) copyFileSync(join(FIXTURES, file), join(consumer, file))
}, 180_000)

afterAll(async () => {
  await server?.stop()
  if (work) rmSync(work, { recursive: true, force: true })
})

describe('the packed SDK', () => {
  test('holds only its built modules with their types, the README and package.json', () => {
    const dist = MODULES.flatMap((m) => [`dist/${m}.d.ts`, `dist/${m}.js`])
    expect(packed.files).toEqual(['README.md', ...dist, 'package.json'].sort())
  })

  test('has no dependencies, and its modules import only each other, with extensions', () => {
    const manifest = JSON.parse(readFileSync(join(consumer, 'node_modules/tasklog-client/package.json'), 'utf8'))
    expect(manifest.dependencies ?? {}).toEqual({})
    expect(manifest.exports['.']).toEqual({ types: './dist/index.d.ts', default: './dist/index.js' })
    const dist = join(consumer, 'node_modules/tasklog-client/dist')
    const specifiers = readdirSync(dist).flatMap((file) =>
      [...readFileSync(join(dist, file), 'utf8').matchAll(/\bfrom '([^']+)'/g)].map((m) => m[1]!),
    )
    expect(specifiers.length).toBeGreaterThan(10)
    expect(specifiers.filter((s) => !/^\.\/[a-z-]+\.js$/.test(s))).toEqual([])
  })

  test('runs under Bun', async () => {
    const result = JSON.parse(await run([process.execPath, 'sdk-smoke-main.mjs', server.url], consumer))
    expect(result).toEqual(EXPECTED)
    expect(result.runtime).toStartWith('bun ')
  }, 30_000)

  test('runs under plain Node 22', async () => {
    const node = await node22()
    if ('missing' in node) {
      console.warn(`Skipping the Node 22 run of the SDK: ${node.missing}`)
      return
    }
    const result = JSON.parse(await run([node.path, 'sdk-smoke-main.mjs', server.url], consumer))
    expect(result).toEqual(EXPECTED)
    expect(result.runtime).toStartWith('node 22.')
  }, 180_000)

  test.skipIf(!haveChromium)(
    'runs in headless Chromium',
    async () => {
      const browser = await launchChromium()
      try {
        const page = await browser.newPage()
        // The page and the API share the server's origin (the API sends no CORS headers), and the
        // document comes from that loopback server (Chromium lets only such a page open loopback
        // WebSockets); the consumer's modules are served from disk under /consumer/.
        await page.route(`${server.url}/consumer/**`, (route) => {
          const path = new URL(route.request().url()).pathname.slice('/consumer/'.length)
          return route.fulfill({ contentType: 'text/javascript', body: readFileSync(join(consumer, path), 'utf8') })
        })
        await page.goto(`${server.url}/health`)
        await page.setContent(
          '<script type="importmap">{"imports":{"tasklog-client":"/consumer/node_modules/tasklog-client/dist/index.js"}}</script>',
        )
        const result = await page.evaluate(async (base) => {
          const { smoke } = await import('/consumer/sdk-smoke.mjs' as string)
          return smoke(base)
        }, server.url)
        expect(result).toEqual(EXPECTED)
        expect(result.runtime).toContain('HeadlessChrome')
      } finally {
        await browser.close()
      }
    },
    60_000,
  )
})
