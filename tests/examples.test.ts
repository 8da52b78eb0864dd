import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SIMULATED_STEPS } from '../examples/send-log'
import { findPython, runExample, startExample, type ExampleResult } from './support/example-process'
import { createTask, json, sendLog, startServer, watch, type TestServer } from './support/server'

// Every example runs as a subprocess against a live server, colors off (NO_COLOR=1).
const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'
const SLOW = 15_000 // ms, for tests that start several processes
const TIME = String.raw`\[\d\d:\d\d:\d\d\.\d{3}\]`
const SIMULATED_LINES = SIMULATED_STEPS.map((s, i) => `[${i + 1}/7] ✓ ${s.level}: ${s.message} (broadcasted to 1 clients)`)

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

async function history(taskId: string): Promise<any[]> {
  return (await json(await fetch(`${server.url}/api/v1/tasks/${taskId}/logs?order=asc`))).logs
}

async function subtaskStatus(subtaskId: string): Promise<string> {
  return (await json(await fetch(`${server.url}/api/v1/subtasks/${subtaskId}`))).status
}

function expectNoColor(result: ExampleResult) {
  expect(result.stdout + result.stderr).not.toContain('\x1b[')
}

/** A port nothing listens on. */
function closedPort(): number {
  const listener = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = listener.port
  listener.stop(true)
  return port
}

/** Runs the watcher/sender pair of either language: the language's own scripts. */
const scripts = {
  ts: {
    client: ['bun', 'examples/websocket-client.ts'],
    sender: ['bun', 'examples/send-log.ts'],
  },
  python: (python: string) => ({
    client: [python, 'examples/python/websocket_client.py'],
    sender: [python, 'examples/python/send_log_example.py'],
  }),
}

/** Checks shared by both languages' websocket client and sender. */
function describeSeedExamples(language: string, cmds: { client: string[]; sender: string[] }) {
  describe(`${language}: websocket client`, () => {
    test('a malformed task id: usage and exit 1', async () => {
      const result = await runExample([...cmds.client, 'not-a-uuid'])
      expect(result.code).toBe(1)
      expect(result.stderr).toContain('Invalid task ID: not-a-uuid')
      expect(result.stderr).toContain('Usage:')
    })

    test('an unknown task: a clear message naming close code 1008, exit 1', async () => {
      const result = await runExample([...cmds.client, UNKNOWN_ID, server.wsUrl])
      expect(result.code).toBe(1)
      expect(result.stderr).toContain(`✗ Task ${UNKNOWN_ID} not found (close code 1008)`)
      expectNoColor(result)
    })

    test('prints live logs by level with metadata indented, status changes; Ctrl+C exits 0', async () => {
      const task = await createTask(server)
      const subtaskId = task.subtasks[0]!.subtask_id
      const client = startExample([...cmds.client, task.task_id, server.wsUrl])
      await client.waitFor(`✓ Subscribed to task ${task.task_id}`)
      await sendLog(server, subtaskId, {
        level: 'info',
        message: 'Processing data',
        metadata: { progress: 50, stage: { name: 'load' } },
      })
      await sendLog(server, subtaskId, { level: 'error', message: 'Disk full' })
      await fetch(`${server.url}/api/v1/subtasks/${subtaskId}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ status: 'in_progress', worker_name: 'builder-7' }),
      })
      await client.waitFor('(task in_progress)')
      const result = await client.stop('SIGINT')
      expect(result.code).toBe(0)
      expect(result.stdout).toMatch(
        new RegExp(
          [
            // The TypeScript client adds where the log comes from: `  (subtask 1)`.
            `${TIME} INFO    Processing data[^\n]*`,
            `    progress: 50`,
            `    stage: \\{"name":"load"\\}`,
            `${TIME} ERROR   Disk full[^\n]*`,
            `● subtask ${subtaskId} is in_progress by builder-7 \\(task in_progress\\)`,
            `Disconnected\\.`,
          ].join('\n'),
        ),
      )
      expectNoColor(result)
    })
  })

  describe(`${language}: sender`, () => {
    const id = '550e8400-e29b-41d4-a716-446655440001'
    test.each([
      [[], 'Missing command'],
      [['dance', id], 'Unknown command dance'],
      [['simulate'], 'Missing subtask_id'],
      [['simulate', 'nope'], 'Invalid subtask ID: nope'],
      [['send', id, 'info'], 'send needs <subtask_id> <level> <message>'],
      [['send', id, 'loud', 'hi'], 'Invalid level: loud. Must be one of: debug, info, warning, error'],
      [['send', id, 'info', 'hi', '--metadata', '[1]'], 'Invalid --metadata: [1] (expected a JSON object)'],
      [['send', id, 'info', 'hi', 'not-a-url'], 'Invalid base URL: not-a-url'],
    ])('bad input %j: exit 1 with "%s" and the usage', async (args, message) => {
      const result = await runExample([...cmds.sender, ...args])
      expect(result.code).toBe(1)
      expect(result.stderr).toContain(`Error: ${message}`)
      expect(result.stderr).toContain('Usage:')
    })

    test('send: one line with metadata, reporting the watchers it reached', async () => {
      const task = await createTask(server)
      const watcher = await watch(server, task.task_id)
      const subtaskId = task.subtasks[0]!.subtask_id
      const result = await runExample([
        ...cmds.sender,
        'send',
        subtaskId,
        'warning',
        'High memory',
        server.url,
        '--metadata',
        '{"memory_mb":1843}',
      ])
      expect(result.code).toBe(0)
      const [log] = await watcher.logs(1)
      expect(result.stdout).toBe(`✓ Log sent (id ${log.id}): broadcasted to 1 clients\n`)
      expect(log).toMatchObject({ level: 'warning', message: 'High memory', metadata: { memory_mb: 1843 } })
      watcher.close()
    })

    test('send to an unknown subtask: the server says why, exit 1', async () => {
      const result = await runExample([...cmds.sender, 'send', UNKNOWN_ID, 'info', 'hi', server.url])
      expect(result.code).toBe(1)
      expect(result.stderr).toContain(`✗ Failed to send log: Subtask ${UNKNOWN_ID} not found (HTTP 404)`)
    })

    test('simulate: the seven steps in order, each reporting its broadcast', async () => {
      const task = await createTask(server)
      const watcher = await watch(server, task.task_id)
      const subtaskId = task.subtasks[0]!.subtask_id
      const result = await runExample([...cmds.sender, 'simulate', subtaskId, server.url, '--delay-ms', '0'])
      expect(result.code).toBe(0)
      expect(result.stdout).toBe(
        [`Simulating task execution for subtask ${subtaskId}`, ...SIMULATED_LINES, 'Simulation complete', ''].join('\n'),
      )
      const logs = await watcher.logs(7)
      expect(logs.map((l) => [l.level, l.message, l.metadata])).toEqual(
        SIMULATED_STEPS.map((s) => [s.level, s.message, s.metadata]),
      )
      watcher.close()
    })
  })

  test(
    `${language}: a client follows a simulated run end to end`,
    async () => {
      const task = await createTask(server)
      const client = startExample([...cmds.client, task.task_id, server.wsUrl])
      await client.waitFor('✓ Subscribed')
      const sender = await runExample([...cmds.sender, 'simulate', task.subtasks[0]!.subtask_id, server.url, '--delay-ms', '0'])
      expect(sender.code).toBe(0)
      await client.waitFor('Task completed successfully')
      const result = await client.stop('SIGINT')
      const printed = result.stdout
        .split('\n')
        .filter((line) => /^\[\d/.test(line))
        .map((line) => line.slice(15).replace(/  \(subtask [^)]*\)$/, '')) // where from: the TypeScript client's suffix
      expect(printed).toEqual(SIMULATED_STEPS.map((s) => `${s.level.toUpperCase().padEnd(7)} ${s.message}`))
    },
    SLOW,
  )
}

describeSeedExamples('TypeScript', scripts.ts)

describe('TypeScript: websocket-client options', () => {
  test('--also, --level and --history on one connection; tasks labelled #1, #2, lines name subtask and worker', async () => {
    // Two tasks made in the same minute: their ids share their first digits (UUID v7).
    const [a, b] = [
      await createTask(server, { description: 'two steps', subtasks: [{ description: 'fetch' }, { description: 'build' }] }),
      await createTask(server),
    ]
    const [subA, subB] = [a.subtasks[1]!.subtask_id, b.subtasks[0]!.subtask_id]
    await fetch(`${server.url}/api/v1/subtasks/${subA}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'in_progress', worker_name: 'builder-7' }),
    })
    await sendLog(server, subA, { level: 'debug', message: 'old debug' })
    await sendLog(server, subA, { level: 'warning', message: 'old warning' })
    // --history counts the logs the level accepts: these do not push the warning out.
    for (const n of [1, 2, 3, 4, 5, 6]) await sendLog(server, subA, { level: 'debug', message: `later debug ${n}` })
    const client = startExample([
      'bun',
      'examples/websocket-client.ts',
      a.task_id,
      server.wsUrl,
      '--also',
      b.task_id,
      '--level',
      'info',
      '--history',
      '5',
    ])
    await client.waitFor(`✓ Subscribed to task ${b.task_id}`)
    await sendLog(server, subA, { level: 'debug', message: 'new debug' })
    await sendLog(server, subB, { level: 'info', message: 'from b' })
    await client.waitFor('from b')
    const result = await client.stop('SIGTERM')
    expect(result.code).toBe(0)
    const logLines = result.stdout.split('\n').filter((line) => /^\[\d/.test(line))
    expect(logLines.map((line) => line.slice(15))).toEqual([
      `#1 WARNING old warning  (subtask 2, worker builder-7)`,
      `#2 INFO    from b  (subtask 1)`,
    ])
    expect(result.stdout).toContain(`✓ Subscribed to task ${a.task_id} as #1`)
    expect(result.stdout).toContain(`✓ Subscribed to task ${b.task_id} as #2`)
  })

  test('bad options: exit 1 with the reason', async () => {
    for (const [args, message] of [
      [['--level', 'loud'], 'Invalid level: loud'],
      [['--history', 'many'], 'Invalid --history: many'],
      [['--also', 'nope'], 'Invalid task ID: nope'],
    ] as const) {
      const result = await runExample(['bun', 'examples/websocket-client.ts', UNKNOWN_ID, ...args])
      expect(result.code).toBe(1)
      expect(result.stderr).toContain(message)
    }
  })
})

describe('TypeScript: send-log simulate', () => {
  test('the seed pauses half a second to a second between steps', () => {
    const pauses = SIMULATED_STEPS.slice(0, -1).map((s) => s.delayMs)
    for (const pause of pauses) expect(pause >= 500 && pause <= 1000).toBe(true)
  })
})

describe('TypeScript: worker-agent', () => {
  test('logs every step, an optional step failing as an error, then completes the subtask', async () => {
    const task = await createTask(server)
    const subtaskId = task.subtasks[0]!.subtask_id
    const result = await runExample(['bun', 'examples/worker-agent.ts', subtaskId, server.url]) // default pauses: 4 × 300 ms
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(
      /^Worker worker-\d+ executing subtask .+\nLogs: 10 sent, 0 lost\nTask completed successfully\n$/,
    )
    const logs = await history(task.task_id)
    expect(logs.map((l) => `${l.level} ${l.message}`)).toEqual([
      'info Task execution started',
      'info Processing step 1: Download input',
      'debug Step 1 done',
      'info Processing step 2: Transform records',
      'debug Step 2 done',
      'info Processing step 3: Send notification email',
      'error Optional step failed: Send notification email: SMTP server unavailable',
      'info Processing step 4: Upload results',
      'debug Step 4 done',
      'info Task completed successfully',
    ])
    expect(await subtaskStatus(subtaskId)).toBe('completed')
  })

  test('--fail: a required step fails, is logged as the task failing, the subtask is failed, exit 1', async () => {
    const task = await createTask(server)
    const subtaskId = task.subtasks[0]!.subtask_id
    const result = await runExample(['bun', 'examples/worker-agent.ts', subtaskId, server.url, '--delay-ms', '0', '--fail'])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('Task failed: storage quota exceeded')
    const last = (await history(task.task_id)).at(-1)
    expect(last).toMatchObject({
      level: 'error',
      message: 'Task failed: storage quota exceeded',
      metadata: { step: 'Upload results' },
    })
    expect(await subtaskStatus(subtaskId)).toBe('failed')
  })

  test(
    'an unreachable server never blocks the work: it completes, warns and exits 0',
    async () => {
      const started = Date.now()
      const result = await runExample([
        'bun',
        'examples/worker-agent.ts',
        UNKNOWN_ID,
        `http://127.0.0.1:${closedPort()}`,
        '--delay-ms',
        '0',
      ])
      expect(result.code).toBe(0)
      expect(Date.now() - started).toBeLessThan(8_000)
      expect(result.stdout).toContain('Logs: 0 sent, 10 lost')
      expect(result.stdout).toContain('Task completed successfully')
      expect(result.stderr).toContain('Warning: logs not delivered: gave up on')
      expect(result.stderr).toContain('Warning: could not set status in_progress')
    },
    SLOW,
  )
})

describe('TypeScript: demo', () => {
  test(
    'runs the whole testing workflow: task, two clients, simulation, history',
    async () => {
      const result = await runExample(['bun', 'examples/demo.ts', server.url, '--delay-ms', '0'])
      expect(result.code).toBe(0)
      const out = result.stdout
      const taskId = /task_id: {4}(\S+)/.exec(out)![1]!
      expect(out).toContain(`[client 1] ✓ subscribed to task ${taskId}`)
      expect(out).toContain(`[client 2] ✓ subscribed to task ${taskId}`)
      for (const line of SIMULATED_LINES.map((l) => l.replace('1 clients', '2 clients')))
        expect(out).toContain(`[worker]   ${line}`)
      for (const n of [1, 2]) expect(out.split('\n').filter((l) => l.startsWith(`[client ${n}] [`))).toHaveLength(7)
      expect(out).toContain('✓ Both clients received the same 7 logs, in the same order')
      expect(out).toContain(`== Test 3: history (GET /api/v1/tasks/${taskId}/logs?limit=50)\n7 logs, newest first:\n`)
      expect(out.trimEnd().split('\n').at(-1)).toMatch(new RegExp(`^${TIME} INFO    Task execution started$`))
      expect((await history(taskId)).map((l) => l.message)).toEqual(SIMULATED_STEPS.map((s) => s.message))
    },
    SLOW,
  )

  test('without a server: says so and exits 1', async () => {
    const result = await runExample(['bun', 'examples/demo.ts', `http://127.0.0.1:${closedPort()}`])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('✗ Cannot create a task at http://127.0.0.1:')
    expect(result.stderr).toContain('Is the server running')
  })
})

const python = findPython()
if (!python)
  console.warn(
    'Skipping the Python example tests: no python3 can import websockets and httpx (apt-get install python3-websockets python3-httpx, or pip install websockets httpx).',
  )
describe.skipIf(!python)('Python examples', () => {
  describeSeedExamples('Python', scripts.python(python!))
})
