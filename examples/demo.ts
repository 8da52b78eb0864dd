#!/usr/bin/env bun
/**
 * Runs the README's testing workflow against a running tasklog server and prints what each
 * step shows: create a task, follow it with two WebSocket clients, run a simulated worker,
 * check that both clients got the same logs, then read the history.
 *
 *   bun examples/demo.ts [base_url] [--delay-ms <n>]
 *
 * base_url defaults to http://localhost:8000; --delay-ms replaces the worker's pauses.
 * Exits with 1 when a step fails. TASKLOG_TOKEN, when set, is sent as the access token (the
 * SDK reads it).
 */
import { LogStreamClient, TasklogApi, WorkerLogger, type LogMessage } from '../clients/ts/src'
import { SIMULATED_STEPS, delayOption, parseCommandLine, simulate } from './send-log'
import { formatLog } from './websocket-client'

const heading = (text: string) => console.log(`\n== ${text}`)

/** Polls `done` until it is true or `timeoutMs` passes. */
async function waitFor(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!done() && Date.now() < deadline) await Bun.sleep(20)
  return done()
}

async function main(argv: string[]): Promise<number> {
  const usage = () => {
    console.error('Usage: bun examples/demo.ts [base_url] [--delay-ms <n>]')
    return 1
  }
  const args = parseCommandLine(argv, { options: ['--delay-ms'] })
  if (typeof args === 'string') return usage()
  const [baseUrl = 'http://localhost:8000', extra] = args.positional
  const delayMs = delayOption(args.options)
  if (extra || !URL.canParse(baseUrl) || Number.isNaN(delayMs)) return usage()
  const api = new TasklogApi(baseUrl)

  heading('Setup: create a task (POST /api/v1/tasks)')
  let task
  try {
    task = await api.createTask('Test task for WebSocket logging')
  } catch (error) {
    console.error(
      `✗ Cannot create a task at ${api.baseUrl}: ${(error as Error).message}. Is the server running (bun run src/index.ts)?`,
    )
    return 1
  }
  const subtask = task.subtasks[0]!
  console.log(`task_id:    ${task.task_id}`)
  console.log(`subtask_id: ${subtask.subtask_id} (${task.subtasks.length} subtask(s))`)

  heading('Tests 1 and 2: two WebSocket clients follow the task')
  const watchers = [1, 2].map((n) => {
    const client = new LogStreamClient(baseUrl)
    const logs: LogMessage[] = []
    let subscribed = false
    client.on('subscribed', () => {
      subscribed = true
      console.log(`[client ${n}] ✓ subscribed to task ${task.task_id}`)
    })
    client.on('log', (log) => {
      logs.push(log)
      console.log(`[client ${n}] ${formatLog(log, { metadata: false })}`)
    })
    client.subscribe(task.task_id)
    return { client, logs, isSubscribed: () => subscribed }
  })
  if (!(await waitFor(() => watchers.every((w) => w.isSubscribed()), 5_000))) {
    console.error('✗ The clients could not subscribe within 5 s')
    return 1
  }

  heading('A worker runs the task (send-log.ts simulate)')
  const logger = new WorkerLogger(subtask.subtask_id, baseUrl, { maxAttempts: 3 })
  const sent = await simulate(logger, { delayMs, print: (line) => console.log(`[worker]   ${line}`) })
  await logger.close()
  const expected = SIMULATED_STEPS.length
  const complete = await waitFor(() => watchers.every((w) => w.logs.length >= expected), 5_000)
  for (const { client } of watchers) client.close()
  const [first, second] = watchers.map((w) => w.logs.map((log) => log.id).join(','))
  if (!sent || !complete || first !== second) {
    console.error(
      `✗ Expected both clients to receive the same ${expected} logs; got ${watchers.map((w) => w.logs.length).join(' and ')}`,
    )
    return 1
  }
  console.log(`✓ Both clients received the same ${expected} logs, in the same order`)

  heading(`Test 3: history (GET /api/v1/tasks/${task.task_id}/logs?limit=50)`)
  const history = await api.getLogs(task.task_id, { limit: 50 })
  console.log(`${history.count} logs, newest first:`)
  for (const log of history.logs) console.log(formatLog(log, { metadata: false }))
  return 0
}

if (import.meta.main) process.exit(await main(Bun.argv.slice(2)))
