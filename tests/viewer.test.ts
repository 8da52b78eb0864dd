/**
 * The web viewer in headless Chromium against a real server (Redis history, a SQLite file for
 * tasks): pages, live logs, filters, follow mode, reconnection across a server restart, safety
 * against hostile text, ANSI colours, and 100,000 lines.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { haveChromium, launchChromium } from './support/browser'
import { startRedis, type RedisServer } from './support/redis-server'
import { createTask, json, post, sendLog, startServer, type TestServer } from './support/server'
import type { Task } from '../src/schemas/task'

const SCREENSHOT = join(import.meta.dir, '..', 'docs', 'viewer.png')

let redis: RedisServer
let server: TestServer
let browser: Browser
const dir = mkdtempSync(join(tmpdir(), 'tasklog-viewer-'))
const sqlite = `sqlite://${join(dir, 'tasks.sqlite')}`

beforeAll(async () => {
  redis = await startRedis()
  server = await startServer({ redisUrl: redis.url, env: { DATABASE_URL: sqlite } })
  if (haveChromium) browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await server?.stop()
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** What a page did that a test must not see: dialogs (script run from data), CSP violations, errors. */
interface Watched {
  page: Page
  problems: string[]
  sockets: string[]
}
const opened: Watched[] = []

async function open(path: string, viewport = { width: 1280, height: 800 }, target = server): Promise<Watched> {
  const page = await browser.newPage({ viewport, colorScheme: 'light' })
  const watched: Watched = { page, problems: [], sockets: [] }
  page.on('dialog', (dialog) => {
    watched.problems.push(`dialog: ${dialog.message()}`)
    void dialog.dismiss()
  })
  page.on('console', (message) => {
    if (message.type() === 'error' || /Content.Security.Policy/i.test(message.text()))
      watched.problems.push(`console: ${message.text()}`)
  })
  page.on('pageerror', (error) => watched.problems.push(`page error: ${error.message}`))
  page.on('websocket', (ws) => watched.sockets.push(ws.url()))
  // Every request stays on the server: no CDN.
  await page.route('**/*', (route) => {
    const url = new URL(route.request().url())
    if (url.hostname === '127.0.0.1') return route.continue()
    watched.problems.push(`request to another host: ${url}`)
    return route.abort()
  })
  opened.push(watched)
  await page.goto(`${target.url}${path}`)
  return watched
}

afterEach(async () => {
  for (const { page, problems } of opened.splice(0)) {
    await page.close()
    // The console reports a CSP violation as an error, and a dialog means script ran from data.
    expect(problems).toEqual([])
  }
})

const subtaskOf = (task: Task, i = 0) => task.subtasks[i]!.subtask_id

async function sendBatch(target: TestServer, subtaskId: string, logs: object[]): Promise<{ first_id: string; last_id: string }> {
  const res = await post(`${target.url}/api/v1/subtasks/${subtaskId}/logs`, { logs })
  if (res.status !== 201) throw new Error(`batch: ${res.status} ${await res.text()}`)
  return json(res)
}

/** Every log id of a task in history, oldest first. */
async function historyIds(target: TestServer, taskId: string): Promise<string[]> {
  const ids: string[] = []
  let since: string | undefined
  for (;;) {
    const page = await json(
      await fetch(`${target.url}/api/v1/tasks/${taskId}/logs?order=asc&limit=1000${since ? `&since=${since}` : ''}`),
    )
    ids.push(...page.logs.map((l: { id: string }) => l.id))
    if (page.logs.length < 1000) return ids
    since = page.next_since
  }
}

/** The ids of every row the log view can show, in order (markers as `marker: text`), by scrolling it through. */
function renderedRows(page: Page): Promise<string[]> {
  return page.evaluate(async () => {
    const view = document.querySelector<HTMLElement>('.log-view')!
    const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))
    const byIndex = new Map<number, string>()
    view.scrollTop = 0
    await frame()
    for (;;) {
      for (const row of view.querySelectorAll<HTMLElement>('.log-row'))
        byIndex.set(Number(row.dataset.index), row.dataset.id ?? `marker: ${row.textContent}`)
      if (view.scrollTop + view.clientHeight >= view.scrollHeight - 1) break
      view.scrollTop += view.clientHeight
      await frame()
    }
    return [...byIndex].sort((a, b) => a[0] - b[0]).map(([, id]) => id)
  })
}

const lineCount = (page: Page, n: number, timeout = 15_000) =>
  page.locator('.toolbar .count', { hasText: new RegExp(`^${n.toLocaleString('en')} (lines|of)`) }).waitFor({ timeout })

describe.skipIf(!haveChromium)('web viewer', () => {
  test('pages are HTML with a strict Content-Security-Policy; API 404s stay JSON', async () => {
    for (const path of ['/', '/tasks/0193a1c2-0000-7000-8000-000000000000']) {
      const res = await fetch(`${server.url}${path}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toStartWith('text/html')
      const csp = res.headers.get('content-security-policy')!
      for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"])
        expect(csp).toContain(directive)
      const html = await res.text()
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/) // no inline script
      for (const [, asset] of html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)) {
        const file = await fetch(`${server.url}${asset}`)
        expect(file.status).toBe(200)
        expect(file.headers.get('content-security-policy')).toBe(csp)
      }
    }
    for (const path of ['/api/v1/nothing', '/assets/nothing.js']) {
      const res = await fetch(`${server.url}${path}`)
      expect(res.status).toBe(404)
      expect((await json(res)).error).toBe('not_found')
    }
    expect((await fetch(`${server.url}/swagger`)).status).toBe(200)
  })

  test('creates a task from the form; the list shows status changes live', async () => {
    const { page } = await open('/')
    await page.fill('#description', 'Ship the <b>release</b>')
    await page.fill('#subtasks', 'compile\ntest')
    await page.click('button[type=submit]')
    const row = page.locator('tbody tr', { hasText: 'Ship the <b>release</b>' })
    await row.waitFor()
    const href = (await row.locator('a').getAttribute('href'))!
    const task: Task = await json(await fetch(`${server.url}/api/v1${href}`))
    expect(task.subtasks.map((s) => s.description)).toEqual(['compile', 'test'])
    await expect(row.locator('.status').textContent()).resolves.toBe('Pending')

    const patch = (i: number, status: string) =>
      fetch(`${server.url}/api/v1/subtasks/${subtaskOf(task, i)}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ status, worker_name: 'builder-1' }),
      })
    await patch(0, 'completed')
    await page.locator('tbody tr', { hasText: 'Ship the' }).locator('.status', { hasText: 'In progress' }).waitFor()
    await page.locator('tbody tr', { hasText: 'Ship the' }).locator('.progress-cell', { hasText: '1/2' }).waitFor()
    await patch(1, 'completed')
    await page.locator('tbody tr', { hasText: 'Ship the' }).locator('.status', { hasText: 'Completed' }).waitFor()
  })

  test("an unknown task's page says so and links back to the list", async () => {
    const { page, problems } = await open('/tasks/0193a1c2-0000-7000-8000-000000000000')
    await page.locator('.notice.error', { hasText: 'No task 0193a1c2-0000-7000-8000-000000000000' }).waitFor()
    expect(await page.locator('.notice.error a').getAttribute('href')).toBe('/')
    // The browser logs the API's 404 itself; that one is expected here.
    expect(problems.splice(0)).toEqual([
      'console: Failed to load resource: the server responded with a status of 404 (Not Found)',
    ])
  })

  test('the task list pages through older tasks with next_cursor', async () => {
    const made: Task[] = []
    for (let i = 0; i < 22; i++) made.push(await createTask(server, { description: `paged task ${i}` }))
    const { page } = await open('/')
    const rows = page.locator('tbody tr')
    await page.locator('tbody tr', { hasText: 'paged task 21' }).waitFor()
    expect(await rows.count()).toBe(20) // one page, newest first
    expect(await rows.first().textContent()).toContain('paged task 21')
    await page.click('button:has-text("Older tasks")')
    await page.locator('tbody tr', { hasText: 'paged task 0' }).waitFor()
    const listed = await page.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-task-id')))
    expect(new Set(listed).size).toBe(listed.length) // no task twice
    expect(listed.slice(0, 22)).toEqual(made.map((t) => t.task_id).reverse())
  })

  test('shows logs posted over HTTP in order, with badges, ANSI colours, and the task finishing', async () => {
    const task = await createTask(server, { description: 'Render', subtasks: [{ description: 'a' }, { description: 'b' }] })
    await fetch(`${server.url}/api/v1/subtasks/${subtaskOf(task, 1)}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'in_progress', worker_name: 'worker-7' }),
    })
    const before = await sendLog(server, subtaskOf(task, 0), { level: 'info', message: 'before the page opened' })
    const { page } = await open(`/tasks/${task.task_id}`)
    await page.locator('.connection.live').waitFor()
    const ids = [before.id]
    for (const [i, level] of ['debug', 'info', 'warning', 'error'].entries())
      ids.push((await sendLog(server, subtaskOf(task, i % 2), { level, message: `line ${i}`, metadata: { i } })).id)
    ids.push((await sendLog(server, subtaskOf(task, 1), { level: 'info', message: 'plain \u001b[31mred\u001b[0m plain' })).id)
    await lineCount(page, ids.length)
    expect(await renderedRows(page)).toEqual(ids)

    const red = page.locator('.log-row .msg span', { hasText: /^red$/ })
    const [r, g, b] = (await red.evaluate((el) => getComputedStyle(el).color)).match(/\d+/g)!.map(Number)
    expect(r!).toBeGreaterThan(150)
    expect(g! + b!).toBeLessThan(150)
    expect(await page.locator('.log-row', { hasText: 'red' }).locator('.msg').textContent()).toBe('plain red plain')

    const errorRow = page.locator('.log-row.level-error')
    expect(await errorRow.locator('.level').textContent()).toBe('ERROR')
    expect(await errorRow.locator('.badge.worker').textContent()).toBe('worker-7')
    expect(await errorRow.locator('.badge.subtask').textContent()).toBe('#2')
    expect(await errorRow.locator('.meta').textContent()).toBe('{"i":3}')

    for (const s of task.subtasks)
      await fetch(`${server.url}/api/v1/subtasks/${s.subtask_id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ status: 'completed' }),
      })
    await page.locator('.finished', { hasText: 'Task finished' }).waitFor()
    expect(await page.locator('.task-head .status').textContent()).toBe('Completed')
  })

  test('messages, metadata, worker names and descriptions are text, never markup', async () => {
    const task = await createTask(server, { description: '<img src=x onerror=alert(0)>' })
    await fetch(`${server.url}/api/v1/subtasks/${subtaskOf(task)}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ worker_name: '<script>alert(3)</script>' }),
    })
    await sendLog(server, subtaskOf(task), {
      level: 'error',
      message: '<img src=x onerror=alert(1)>',
      metadata: { '<script>': 'alert(2)</script><img src=x onerror=alert(2)>' },
    })
    const { page } = await open(`/tasks/${task.task_id}`)
    await lineCount(page, 1)
    const row = page.locator('.log-row').first()
    expect(await row.locator('.msg').textContent()).toBe('<img src=x onerror=alert(1)>')
    expect(await row.locator('.meta').textContent()).toBe('{"<script>":"alert(2)</script><img src=x onerror=alert(2)>"}')
    expect(await row.locator('.badge.worker').textContent()).toBe('<script>alert(3)</script>')
    expect(await page.locator('h1').textContent()).toBe('<img src=x onerror=alert(0)>')
    expect(await page.locator('main img, main script').count()).toBe(0)
    await row.click() // the details pane, too, shows text
    expect(await page.locator('.details').textContent()).toContain('<img src=x onerror=alert(1)>')

    const list = await open('/')
    await list.page.locator('tbody a', { hasText: '<img src=x onerror=alert(0)>' }).first().waitFor()
    expect(await list.page.locator('main img').count()).toBe(0)
    await Bun.sleep(200) // time for a handler to have fired, had anything been parsed as HTML
  })

  test('level (sent to the server), subtask and text filters; download writes the lines shown', async () => {
    const task = await createTask(server, { description: 'Filters', subtasks: [{ description: 'one' }, { description: 'two' }] })
    const levels = ['debug', 'info', 'warning', 'error']
    const logs = levels.flatMap((level, i) => [0, 1].map((s) => ({ s, level, message: `${level} from ${s} needle${i}` })))
    for (const { s, level, message } of logs) await sendLog(server, subtaskOf(task, s), { level, message })
    const { page, sockets } = await open(`/tasks/${task.task_id}`)
    await lineCount(page, 8)

    await page.selectOption('select[aria-label="Minimum level"]', 'warning')
    await lineCount(page, 4)
    await page.locator('.connection.live').waitFor()
    expect(sockets.at(-1)).toContain('level=warning')
    expect(sockets.at(-1)).toContain('since=')
    // The server now filters: a new info line is not sent, an error one is.
    await sendLog(server, subtaskOf(task, 0), { level: 'info', message: 'filtered out by the server' })
    await sendLog(server, subtaskOf(task, 0), { level: 'error', message: 'kept' })
    await lineCount(page, 5)
    expect(await page.locator('.log-row', { hasText: 'filtered out' }).count()).toBe(0)

    await page.selectOption('select[aria-label="Subtask"]', subtaskOf(task, 1))
    await lineCount(page, 2)
    expect(await page.locator('.log-row .badge.subtask').allTextContents()).toEqual(['#2', '#2'])

    await page.selectOption('select[aria-label="Subtask"]', '')
    await page.keyboard.press('/')
    await page.keyboard.type('NEEDLE3')
    await lineCount(page, 2)
    expect(await page.locator('.log-row mark').allTextContents()).toEqual(['needle3', 'needle3'])

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('button:has-text("Download")')])
    const text = readFileSync((await download.path())!, 'utf8')
    expect(text.trim().split('\n')).toHaveLength(2)
    expect(text).toContain('ERROR #1 error from 0 needle3')

    // Back to every level: lines below the old level were never received, so history is read again.
    await page.focus('input[type=search]')
    await page.keyboard.press('Escape')
    await page.selectOption('select[aria-label="Minimum level"]', 'debug')
    await lineCount(page, 10)
  })

  test('follow mode pauses on scroll up and resumes with "jump to latest"', async () => {
    const task = await createTask(server, { description: 'Follow' })
    const { page } = await open(`/tasks/${task.task_id}`)
    await page.locator('.connection.live').waitFor()
    const logs = Array.from({ length: 300 }, (_, i) => ({ level: 'info', message: `line ${i}` }))
    const { last_id } = await sendBatch(server, subtaskOf(task), logs)
    await page.locator(`.log-row[data-id="${last_id}"]`).waitFor() // following: the newest line is in view

    await page.hover('.log-view')
    await page.mouse.wheel(0, -2000)
    const jump = page.locator('button.jump')
    await jump.waitFor()
    const more = await sendBatch(server, subtaskOf(task), logs.slice(0, 5))
    await page.locator('button.jump', { hasText: 'Jump to latest (5 new)' }).waitFor()
    expect(await page.locator(`.log-row[data-id="${more.last_id}"]`).count()).toBe(0)

    await page.locator('.log-view').focus()
    await page.keyboard.press('End')
    await page.locator(`.log-row[data-id="${more.last_id}"]`).waitFor()
    await jump.waitFor({ state: 'hidden' })
  })

  test('"load older" reads history before the lines the page opened with', async () => {
    const task = await createTask(server, { description: 'Older' })
    const logs = Array.from({ length: 1000 }, (_, i) => ({ level: 'info', message: `line ${i}` }))
    const { first_id } = await sendBatch(server, subtaskOf(task), logs)
    await sendBatch(server, subtaskOf(task), logs.slice(0, 500))
    const { page } = await open(`/tasks/${task.task_id}`)
    await lineCount(page, 1000)
    await page.click('button:has-text("Load older")')
    await lineCount(page, 1500)
    await page.locator('button:has-text("Start of history")').waitFor()
    const rows = await renderedRows(page)
    expect(rows[0]).toBe(first_id)
    expect(rows).toEqual(await historyIds(server, task.task_id))
  })

  test('resumes across a server restart with no gap and no duplicate; expired lines show a marker', async () => {
    const task = await createTask(server, { description: 'Restart' })
    const line = (i: number) => ({ level: 'info', message: `line ${i}` })
    await sendBatch(
      server,
      subtaskOf(task),
      Array.from({ length: 20 }, (_, i) => line(i)),
    )
    const { page, sockets } = await open(`/tasks/${task.task_id}`)
    await lineCount(page, 20)

    // Same Redis, same task database, a new process on the same port: the page reconnects alone.
    const port = Number(new URL(server.url).port)
    const down = async () => {
      await server.stop()
      await page.locator('.connection:not(.live)').waitFor()
    }
    const up = async () => {
      server = await startServer({ redisUrl: redis.url, env: { DATABASE_URL: sqlite }, port })
    }
    await down()
    await up()
    await sendBatch(
      server,
      subtaskOf(task),
      Array.from({ length: 15 }, (_, i) => line(20 + i)),
    ) // maybe before it is back
    await page.locator('.connection.live').waitFor({ timeout: 15_000 })
    await sendBatch(
      server,
      subtaskOf(task),
      Array.from({ length: 15 }, (_, i) => line(35 + i)),
    ) // surely after
    await lineCount(page, 50)
    const seen = await historyIds(server, task.task_id)
    expect(await renderedRows(page)).toEqual(seen)
    expect(sockets.at(-1)).toContain('since=')

    // While the page's server is down, another instance that keeps 5 lines per task writes 30:
    // history no longer holds what the page missed, and the page must say so.
    await down()
    const writer = await startServer({ redisUrl: redis.url, env: { DATABASE_URL: sqlite, LOG_HISTORY_MAX: '5' } })
    await sendBatch(
      writer,
      subtaskOf(task),
      Array.from({ length: 30 }, (_, i) => line(50 + i)),
    )
    await writer.stop()
    await up()
    await page.locator('.connection.live').waitFor({ timeout: 15_000 })
    await page.locator('.log-row.marker', { hasText: 'Some lines expired' }).waitFor()
    await lineCount(page, 56)
    const rows = await renderedRows(page)
    expect(rows.slice(0, 50)).toEqual(seen)
    expect(rows[50]).toStartWith('marker: ')
    expect(rows.slice(51)).toEqual(await historyIds(server, task.task_id))
  }, 60_000)

  test('100,000 lines: the DOM holds a few hundred rows at most (load and scroll times printed)', async () => {
    // Its own server, whose history holds every line: should the browser fall behind and be
    // dropped as a slow reader, it resumes from history with nothing missing.
    const big = await startServer({ env: { LOG_HISTORY_MAX: '200000' } })
    const task = await createTask(big, { description: 'A hundred thousand lines' })
    const { page } = await open(`/tasks/${task.task_id}`, undefined, big)
    await page.locator('.connection.live').waitFor()
    const levels = ['debug', 'info', 'warning', 'error']
    const batch = (b: number) =>
      Array.from({ length: 1000 }, (_, i) => ({
        level: levels[i % 4],
        message: i % 10 === 0 ? `\u001b[32mok\u001b[0m step ${b * 1000 + i}` : `step ${b * 1000 + i} of the long run`,
        metadata: i % 7 === 0 ? { batch: b, i } : null,
      }))
    const started = performance.now()
    let first = ''
    let last = ''
    for (let b = 0; b < 100; b++) {
      const ids = await sendBatch(big, subtaskOf(task), batch(b))
      first ||= ids.first_id
      last = ids.last_id
    }
    const posted = performance.now()
    await lineCount(page, 100_000, 90_000)
    const loaded = performance.now()
    const domRows = () => page.locator('.log-row').count()
    expect(await domRows()).toBeLessThanOrEqual(300)

    const scroll = (where: 'top' | 'bottom', id: string) =>
      page.evaluate(
        async ({ where, id }) => {
          const view = document.querySelector<HTMLElement>('.log-view')!
          const t0 = performance.now()
          view.scrollTop = where === 'top' ? 0 : view.scrollHeight
          while (!view.querySelector(`.log-row[data-id="${id}"]`)) await new Promise(requestAnimationFrame)
          return performance.now() - t0
        },
        { where, id },
      )
    const toTop = await scroll('top', first)
    expect(await domRows()).toBeLessThanOrEqual(300)
    const toBottom = await scroll('bottom', last)
    expect(await domRows()).toBeLessThanOrEqual(300)
    console.log(
      `viewer, 100,000 lines: posted in ${Math.round(posted - started)} ms, all shown ${Math.round(loaded - started)} ms after the first post; ` +
        `scroll to top ${toTop.toFixed(1)} ms, back to the newest ${toBottom.toFixed(1)} ms; ${await domRows()} rows in the DOM`,
    )
    await page.close()
    await big.stop()
  }, 120_000)

  test('screenshot of a live task for the README (written when missing or with UPDATE_SCREENSHOTS=1)', async () => {
    const task = await createTask(server, {
      description: 'Nightly build: compile, test and package tasklog',
      subtasks: [{ description: 'Compile' }, { description: 'Run the test suites' }, { description: 'Package the binary' }],
    })
    const patch = (i: number, body: object) =>
      fetch(`${server.url}/api/v1/subtasks/${subtaskOf(task, i)}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    await patch(0, { status: 'completed', worker_name: 'builder-1' })
    await patch(1, { status: 'in_progress', worker_name: 'runner-2' })
    const { page } = await open(`/tasks/${task.task_id}`, { width: 1280, height: 820 })
    await page.locator('.connection.live').waitFor()
    const lines: [number, string, string, object?][] = [
      [0, 'info', 'Resolving 42 packages'],
      [0, 'debug', 'cache hit: node_modules (sha 9f3c2e1)'],
      [0, 'warning', 'deprecated: --minify-whitespace is implied by --minify'],
      [0, 'info', '\u001b[32m✓\u001b[0m compiled 118 modules in 1.84 s', { modules: 118, bytes: 412733 }],
      [1, 'info', 'Starting redis-server on port 41235'],
      [1, 'info', '\u001b[1mtests/websocket.test.ts\u001b[0m'],
      [1, 'info', '  \u001b[32m✓\u001b[0m replays history, then follows live \u001b[2m(41 ms)\u001b[0m'],
      [1, 'info', '  \u001b[32m✓\u001b[0m resumes with since: no gap, no duplicate \u001b[2m(212 ms)\u001b[0m'],
      [1, 'warning', 'slow test: tests/outage.test.ts took 8.2 s', { threshold_s: 5 }],
      [1, 'info', '  \u001b[32m✓\u001b[0m drops a slow reader with 1013 \u001b[2m(96 ms)\u001b[0m'],
      [1, 'info', '\u001b[1mtests/logs-api.test.ts\u001b[0m'],
      [1, 'info', '  \u001b[32m✓\u001b[0m rejects an unknown subtask with 404 \u001b[2m(6 ms)\u001b[0m'],
      [1, 'info', '  \u001b[32m✓\u001b[0m stores a batch all or nothing \u001b[2m(18 ms)\u001b[0m'],
      [1, 'error', '  \u001b[31m✗\u001b[0m rejects a body over MAX_BODY_BYTES: expected 413, got 500', { attempt: 1 }],
      [1, 'info', 'Retrying 1 failed test'],
      [1, 'info', '  \u001b[32m✓\u001b[0m rejects a body over MAX_BODY_BYTES \u001b[2m(9 ms)\u001b[0m'],
      [1, 'debug', 'rss 182 MiB, heap 61 MiB'],
      [1, 'info', '\u001b[36m412 pass\u001b[0m, 0 fail, 1 retried'],
      [1, 'info', 'coverage: \u001b[32m94.1%\u001b[0m lines, \u001b[33m88.7%\u001b[0m branches'],
      [2, 'info', 'Packaging tasklog-linux-x64 (bun build --compile)'],
      [2, 'debug', 'embedding 3 viewer assets (61 KiB)'],
    ]
    await patch(2, { status: 'in_progress', worker_name: 'packager-1' })
    const start = Date.now() - lines.length * 1500
    for (const [i, [s, level, message, metadata]] of lines.entries()) {
      const timestamp = new Date(start + i * 1500 + ((i * 379) % 997)).toISOString()
      await sendLog(server, subtaskOf(task, s), { level, message, metadata, timestamp })
    }
    await lineCount(page, lines.length)
    await page.fill('input[type=search]', 'MAX_BODY')
    await lineCount(page, 2)
    await page.fill('input[type=search]', '')
    await lineCount(page, lines.length)
    await page.locator('.log-row.level-error').click() // the details pane shows the whole line
    await page.locator('.log-row.selected.level-error').waitFor()
    await page.mouse.move(0, 0)
    if (!existsSync(SCREENSHOT) || process.env.UPDATE_SCREENSHOTS) await page.screenshot({ path: SCREENSHOT })
    expect(existsSync(SCREENSHOT)).toBe(true)
  })
})
