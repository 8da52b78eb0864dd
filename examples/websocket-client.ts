#!/usr/bin/env bun
/**
 * Follows a task's logs in real time over WebSocket, with colored output by level.
 *
 *   bun examples/websocket-client.ts <task_id> [base_url] [--also <task_id>]... [--level <min>] [--history <n>]
 *
 * base_url defaults to ws://localhost:8000; TASKLOG_TOKEN, when set, is the access token.
 * Reconnects with backoff and resumes after the last log seen (no gaps, no duplicates); pings
 * the server to notice dead connections. Each line names its subtask (by position) and worker;
 * with several tasks, each is labelled #1, #2… in the order given. Ctrl+C exits with 0; an
 * unknown task (close code 1008) or a refused token (4001, 4003) exits with 1.
 */
import {
  LEVELS,
  LogStreamClient,
  TasklogApi,
  canonicalUuid,
  isLevel,
  type Level,
  type LogMessage,
  type StatusChange,
  type Task,
} from '../clients/ts/src'

const USAGE = `Usage: bun examples/websocket-client.ts <task_id> [base_url] [--also <task_id>]... [--level <min>] [--history <n>]

  task_id         the task to follow (a UUID)
  base_url        tasklog server (default ws://localhost:8000)
  --also <id>     follow another task on the same connection (repeatable)
  --level <min>   only this level and above: ${LEVELS.join(', ')}
  --history <n>   first show the task's last n logs (of the level and above)

  TASKLOG_TOKEN   access token, when the server requires one`

const useColor = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR
const paint = (sgr: string, text: string) => (useColor ? `\x1b[${sgr}m${text}\x1b[0m` : text)
const LEVEL_SGR: Record<Level, string> = { debug: '36', info: '32', warning: '33', error: '1;31' }

/**
 * Short names for where a log comes from: `#1`, `#2`… for the tasks followed (the ids of tasks
 * made in the same minute share their first digits, UUID v7 being time-ordered), and a
 * subtask's position (1-based) in its task when the task could be read.
 */
export class Labels {
  private readonly tasks = new Map<string, string>()
  private readonly subtasks = new Map<string, number>()

  /** Names `taskId` `#n`, n being the number of tasks named so far plus one. */
  addTask(taskId: string, task?: Task): string {
    const label = `#${this.tasks.size + 1}`
    this.tasks.set(taskId, label)
    for (const subtask of task?.subtasks ?? []) this.subtasks.set(subtask.subtask_id, subtask.position + 1)
    return label
  }

  task(taskId: string): string | undefined {
    return this.tasks.get(taskId)
  }

  /** `subtask 2`, or the last digits of its id (the random part) when its task is unknown. */
  subtask(subtaskId: string): string {
    const position = this.subtasks.get(subtaskId)
    return position === undefined ? `subtask …${subtaskId.slice(-8)}` : `subtask ${position}`
  }
}

/**
 * One log as terminal lines: `[time] [#task] LEVEL message  (subtask n, worker w)`, then each
 * metadata field indented. The task label shows when `labels` are given and several tasks are followed.
 */
export function formatLog(log: LogMessage, options: { labels?: Labels; showTask?: boolean; metadata?: boolean } = {}): string {
  const time = log.timestamp.slice(11, 23)
  const taskLabel = options.showTask ? options.labels?.task(log.task_id) : undefined
  const task = taskLabel ? `${paint('1', taskLabel)} ` : ''
  const worker = log.worker_name ?? log.worker_id
  const source = options.labels ? [options.labels.subtask(log.subtask_id), ...(worker ? [`worker ${worker}`] : [])] : []
  const lines = [
    `${paint('2', `[${time}]`)} ${task}${paint(LEVEL_SGR[log.level], log.level.toUpperCase().padEnd(7))} ${log.message}` +
      (source.length ? paint('2', `  (${source.join(', ')})`) : ''),
  ]
  if (options.metadata !== false)
    for (const [key, value] of Object.entries(log.metadata ?? {}))
      lines.push(`    ${paint('2', `${key}:`)} ${JSON.stringify(value)}`)
  return lines.join('\n')
}

export function formatStatus(change: StatusChange): string {
  const worker = change.worker_name ? ` by ${change.worker_name}` : ''
  return paint('35', `● subtask ${change.subtask_id} is ${change.status}${worker} (task ${change.task_status})`)
}

interface Args {
  taskIds: string[]
  baseUrl: string
  level?: Level
  history?: number
}

/** Parses the command line; returns an error message for bad input. */
function parseArgs(argv: string[]): Args | string {
  const positional: string[] = []
  const also: string[] = []
  let level: Level | undefined
  let history: number | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '-h' || arg === '--help') return ''
    if (!arg.startsWith('--')) {
      positional.push(arg)
      continue
    }
    const value = argv[++i]
    if (value === undefined) return `${arg} needs a value`
    if (arg === '--also') also.push(value)
    else if (arg === '--level') {
      if (!isLevel(value)) return `Invalid level: ${value}. Must be one of: ${LEVELS.join(', ')}`
      level = value
    } else if (arg === '--history') {
      if (!/^\d+$/.test(value)) return `Invalid --history: ${value}. Must be a whole number`
      history = Number(value)
    } else return `Unknown option ${arg}`
  }
  const [taskId, baseUrl = 'ws://localhost:8000', ...extra] = positional
  if (!taskId) return ''
  if (extra.length) return `Unexpected argument ${extra[0]}`
  const taskIds: string[] = []
  for (const id of [taskId, ...also]) {
    const canonical = canonicalUuid(id)
    if (!canonical) return `Invalid task ID: ${id} (expected a UUID such as 550e8400-e29b-41d4-a716-446655440000)`
    taskIds.push(canonical)
  }
  if (!URL.canParse(baseUrl)) return `Invalid base URL: ${baseUrl}`
  return { taskIds, baseUrl, level, history }
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv)
  if (typeof args === 'string') {
    if (args) console.error(`Error: ${args}\n`)
    console.error(USAGE)
    return 1
  }
  const client = new LogStreamClient(args.baseUrl, { level: args.level })
  const showTask = args.taskIds.length > 1
  // The tasks' subtasks, to name each by its position; a task that cannot be read is still followed.
  const api = new TasklogApi(args.baseUrl)
  const labels = new Labels()
  for (const taskId of args.taskIds) labels.addTask(taskId, await api.getTask(taskId).catch(() => undefined))

  client.on('open', ({ url }) => console.log(paint('2', `Connected to ${url}`)))
  client.on('subscribed', ({ task_id }) =>
    console.log(paint('32', `✓ Subscribed to task ${task_id}${showTask ? ` as ${labels.task(task_id)}` : ''}`)),
  )
  client.on('log', (log) => console.log(formatLog(log, { labels, showTask })))
  client.on('status', (change) => console.log(formatStatus(change)))
  client.on('gap', ({ task_id, since }) =>
    console.log(paint('33', `⚠ Some logs of task ${task_id} after ${since} expired before they could be replayed`)),
  )
  client.on('error', ({ message, code }) => {
    if (code !== 'unauthorized' && code !== 'forbidden') console.error(paint('31', `✗ ${message}`)) // told below
  })
  client.on('close', ({ code, reason, reconnecting }) => {
    if (reconnecting) console.log(paint('33', `Connection lost (code ${code}${reason ? `: ${reason}` : ''})`))
  })
  client.on('reconnecting', ({ attempt, delayMs }) =>
    console.log(paint('33', `Reconnecting in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt})…`)),
  )

  console.log(`Connecting to ${client.baseUrl} for task ${args.taskIds.join(', ')} (Ctrl+C to stop)`)
  for (const taskId of args.taskIds) client.subscribe(taskId, { history: args.history })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => client.close())

  const { code, reason } = await client.closed
  if (code === 1008) {
    console.error(
      paint(
        '31',
        `✗ ${reason || 'Task not found'} (close code 1008). Check the task id, or create the task first (POST /api/v1/tasks).`,
      ),
    )
    return 1
  }
  if (code === 4001 || code === 4003) {
    const hint = code === 4001 ? 'set TASKLOG_TOKEN to a valid token' : 'this token may not read the task'
    console.error(paint('31', `✗ ${reason || 'Access refused'} (close code ${code}): ${hint}.`))
    return 1
  }
  console.log('Disconnected.')
  return 0
}

if (import.meta.main) process.exit(await main(Bun.argv.slice(2)))
