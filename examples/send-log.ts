#!/usr/bin/env bun
/**
 * Sends log lines as a worker would.
 *
 *   bun examples/send-log.ts simulate <subtask_id> [base_url] [--delay-ms <n>]
 *   bun examples/send-log.ts send <subtask_id> <level> <message> [base_url] [--metadata '{...}']
 *
 * base_url defaults to http://localhost:8000. `simulate` sends the seven lines of a typical
 * task run with pauses between them (`--delay-ms` replaces every pause); each line prints how
 * many watchers it reached. Exits with 1 on bad input or when a line is not stored.
 * TASKLOG_TOKEN, when set, is sent as the access token (the SDK reads it).
 */
import { LEVELS, WorkerLogger, canonicalUuid, isLevel, type Level, type LoggerStats, type Metadata } from '../clients/ts/src'

const USAGE = `Usage:
  bun examples/send-log.ts simulate <subtask_id> [base_url] [--delay-ms <n>]
  bun examples/send-log.ts send <subtask_id> <level> <message> [base_url] [--metadata '{"key":"value"}']

  level: ${LEVELS.join(', ')}    base_url: default http://localhost:8000`

export interface Step {
  level: Level
  message: string
  metadata?: Metadata
  /** Pause after the line, as a real task would take between steps. */
  delayMs: number
}

/** A short data-processing run: start, configuration, three batches, a memory warning, completion. */
export const SIMULATED_STEPS: Step[] = [
  { level: 'info', message: 'Task execution started', metadata: { worker: 'worker-1', pid: 4242 }, delayMs: 500 },
  { level: 'debug', message: 'Loading configuration', metadata: { config_file: 'config.yaml', batch_size: 1000 }, delayMs: 500 },
  { level: 'info', message: 'Processing batch 1/3', metadata: { progress: 33, records: 1000 }, delayMs: 1000 },
  { level: 'info', message: 'Processing batch 2/3', metadata: { progress: 66, records: 2000 }, delayMs: 1000 },
  { level: 'warning', message: 'High memory usage', metadata: { memory_mb: 1843, limit_mb: 2048 }, delayMs: 500 },
  { level: 'info', message: 'Processing batch 3/3', metadata: { progress: 100, records: 3000 }, delayMs: 1000 },
  { level: 'info', message: 'Task completed successfully', metadata: { records: 3000, duration_s: 4.5 }, delayMs: 0 },
]

/** Sends one line now and reports whether it was stored: `stats` after the attempt. */
async function sendNow(
  logger: WorkerLogger,
  level: Level,
  message: string,
  metadata?: Metadata,
): Promise<{ stored: boolean; stats: LoggerStats }> {
  const before = logger.stats.sent
  logger.log(level, message, metadata)
  const stats = await logger.flush()
  return { stored: stats.sent > before, stats }
}

const failure = (stats: LoggerStats) => {
  const error = stats.lastError
  return `✗ Failed to send log: ${error?.message ?? 'unknown error'}${error?.status ? ` (HTTP ${error.status})` : ''}`
}

/** Runs SIMULATED_STEPS, printing one line per log; resolves false at the first line not stored. */
export async function simulate(
  logger: WorkerLogger,
  options: { delayMs?: number; print?: (line: string) => void } = {},
): Promise<boolean> {
  const print = options.print ?? console.log
  for (const [i, step] of SIMULATED_STEPS.entries()) {
    const { stored, stats } = await sendNow(logger, step.level, step.message, step.metadata)
    if (!stored) {
      print(failure(stats))
      return false
    }
    print(`[${i + 1}/${SIMULATED_STEPS.length}] ✓ ${step.level}: ${step.message} (broadcasted to ${stats.broadcasted} clients)`)
    if (i < SIMULATED_STEPS.length - 1) await Bun.sleep(options.delayMs ?? step.delayMs)
  }
  return true
}

/** Splits positional arguments from `--name value` options and value-less flags; a message for anything unknown. */
export function parseCommandLine(
  argv: string[],
  known: { options?: string[]; flags?: string[] },
): { positional: string[]; options: Map<string, string> } | string {
  const positional: string[] = []
  const options = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith('--')) positional.push(arg)
    else if (known.flags?.includes(arg)) options.set(arg, '')
    else if (!known.options?.includes(arg)) return `Unknown option ${arg}`
    else if (argv[i + 1] === undefined) return `${arg} needs a value`
    else options.set(arg, argv[++i]!)
  }
  return { positional, options }
}

/** The value of `--delay-ms`: undefined when absent, NaN when not a whole number. */
export const delayOption = (options: Map<string, string>): number | undefined => {
  const value = options.get('--delay-ms')
  return value === undefined ? undefined : /^\d+$/.test(value) ? Number(value) : NaN
}

async function main(argv: string[]): Promise<number> {
  const fail = (message: string) => {
    console.error(`Error: ${message}\n\n${USAGE}`)
    return 1
  }
  const parsed = parseCommandLine(argv, { options: argv[0] === 'simulate' ? ['--delay-ms'] : ['--metadata'] })
  if (typeof parsed === 'string') return fail(parsed)
  const { positional, options } = parsed
  const [command, subtaskId] = positional
  if (command !== 'simulate' && command !== 'send') return fail(command ? `Unknown command ${command}` : 'Missing command')
  if (!subtaskId) return fail('Missing subtask_id')
  if (!canonicalUuid(subtaskId)) return fail(`Invalid subtask ID: ${subtaskId} (expected a UUID)`)

  if (command === 'simulate') {
    const [, , baseUrl = 'http://localhost:8000', extra] = positional
    if (extra) return fail(`Unexpected argument ${extra}`)
    if (!URL.canParse(baseUrl)) return fail(`Invalid base URL: ${baseUrl}`)
    const delayMs = delayOption(options)
    if (Number.isNaN(delayMs)) return fail(`Invalid --delay-ms: ${options.get('--delay-ms')}`)
    const logger = new WorkerLogger(subtaskId, baseUrl, { maxAttempts: 3, onProblem: () => {} })
    console.log(`Simulating task execution for subtask ${subtaskId}`)
    const ok = await simulate(logger, { delayMs })
    await logger.close()
    if (ok) console.log('Simulation complete')
    return ok ? 0 : 1
  }

  const [, , level, message, baseUrl = 'http://localhost:8000', extra] = positional
  if (extra) return fail(`Unexpected argument ${extra}`)
  if (!level || message === undefined) return fail('send needs <subtask_id> <level> <message>')
  if (!isLevel(level)) return fail(`Invalid level: ${level}. Must be one of: ${LEVELS.join(', ')}`)
  if (!URL.canParse(baseUrl)) return fail(`Invalid base URL: ${baseUrl}`)
  let metadata: Metadata | undefined
  const rawMetadata = options.get('--metadata')
  if (rawMetadata !== undefined) {
    try {
      metadata = JSON.parse(rawMetadata)
    } catch {}
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
      return fail(`Invalid --metadata: ${rawMetadata} (expected a JSON object)`)
  }
  const logger = new WorkerLogger(subtaskId, baseUrl, { maxAttempts: 3, onProblem: () => {} })
  const { stored, stats } = await sendNow(logger, level, message, metadata)
  await logger.close()
  if (!stored) {
    console.error(failure(stats))
    return 1
  }
  console.log(`✓ Log sent (id ${stats.lastId}): broadcasted to ${stats.broadcasted} clients`)
  return 0
}

if (import.meta.main) process.exit(await main(Bun.argv.slice(2)))
