/**
 * The child processes of a bench: a private redis-server and the servers under test, started
 * and waited for the same way by `run.ts` and `ab.ts`, and all killed when the bench exits.
 */
import { join } from 'node:path'
import type { Subprocess } from 'bun'
import { createClient } from 'redis'
import { startRedis as startRedisServer } from '../../tests/support/redis-server'
import { freePort, listeners } from './proc'

export const ROOT = join(import.meta.dir, '..', '..')

/** Every server under test still running; stopped on exit, Ctrl-C or SIGTERM (Redis is killed by its harness on exit). */
export const children = new Set<Subprocess>()
/**
 * SIGTERM first, so that a server of several processes (WORKERS) stops its
 * own children, which a SIGKILL would leave running; SIGKILL what still runs after a second.
 */
function cleanup() {
  for (const p of children) p.kill('SIGTERM')
  for (let waited = 0; waited < 1000 && [...children].some((p) => p.exitCode === null && p.signalCode === null); waited += 50)
    Bun.sleepSync(50)
  for (const p of children) p.kill('SIGKILL')
  children.clear()
}
process.on('exit', cleanup)
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    cleanup()
    process.exit(130)
  })

async function waitFor(what: string, ms: number, probe: () => Promise<boolean>, proc?: Subprocess): Promise<void> {
  const deadline = performance.now() + ms
  while (performance.now() < deadline) {
    if (proc?.exitCode !== null && proc?.exitCode !== undefined) throw new Error(`${what} exited with code ${proc.exitCode}`)
    if (await probe().catch(() => false)) return
    await Bun.sleep(50)
  }
  throw new Error(`${what} not ready within ${ms} ms`)
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(proc: Subprocess, graceMs = 3000): Promise<void> {
  if (proc.exitCode === null) {
    proc.kill('SIGTERM')
    const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(graceMs).then(() => false)])
    if (!exited) {
      proc.kill('SIGKILL')
      await Promise.race([proc.exited, Bun.sleep(2000)])
    }
  }
  children.delete(proc)
}

/** Keeps the last lines a child wrote, to explain a failure. */
function tail(stream: ReadableStream<Uint8Array> | number | undefined | null, lines: string[]): void {
  if (!stream || typeof stream === 'number') return
  ;(async () => {
    const decoder = new TextDecoder()
    for await (const chunk of stream) {
      for (const line of decoder.decode(chunk, { stream: true }).split('\n')) if (line.trim()) lines.push(line)
      if (lines.length > 40) lines.splice(0, lines.length - 40)
    }
  })().catch(() => {})
}

/** A private redis-server on a free port, keeping nothing on disk (the tests' harness), with a client to it. */
export async function startRedis() {
  const server = await startRedisServer()
  const client = createClient({ url: server.url, socket: { reconnectStrategy: false } })
  client.on('error', () => {})
  await client.connect()
  const version = /redis_version:([\d.]+)/.exec(String(await client.sendCommand(['INFO', 'server'])))?.[1] ?? '?'
  return { server, url: server.url, client, version }
}

export interface RunningServer {
  proc: Subprocess
  base: string
  output: string[]
}

/**
 * Runs a server (`src/index.ts` of a checkout, or the baseline) on a free port against Redis,
 * with in-memory tasks and production settings, and waits for its /health.
 */
export async function startServer(opts: {
  name: string
  /** The checkout to run it in (default: this repository). */
  cwd?: string
  entry: string
  redisUrl: string
  env?: Record<string, string>
  /** Arguments to bun before `run`, e.g. profiling flags. */
  bunArgs?: string[]
  /** Where the server's stderr goes (default: kept in memory, to explain a failure). */
  stderrFile?: string
  /** Processes that share the port (SO_REUSEPORT) once the server is up: it is ready when all listen. */
  processes?: number
}): Promise<RunningServer> {
  const port = freePort()
  const env = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    REDIS_URL: opts.redisUrl,
    DATABASE_URL: 'sqlite://:memory:',
    NODE_ENV: 'production',
    // The per-task rate limit stays on, so that its cost is counted, but high enough never to refuse.
    RATE_LIMIT_LOGS_PER_SECOND: '100000000',
    ...opts.env,
  }
  const proc = Bun.spawn([process.execPath, ...(opts.bunArgs ?? []), 'run', opts.entry], {
    cwd: opts.cwd ?? ROOT,
    env,
    stdout: 'pipe',
    stderr: opts.stderrFile ? Bun.file(opts.stderrFile) : 'pipe',
  })
  children.add(proc)
  const output: string[] = []
  tail(proc.stdout, output)
  tail(proc.stderr, output)
  const base = `http://127.0.0.1:${port}`
  try {
    // Several processes start one after the other, each slower on a busy machine.
    const readyMs = 20_000 * (opts.processes ?? 1)
    await waitFor(`${opts.name} server`, readyMs, async () => (await fetch(`${base}/health`)).status === 200, proc)
    // Until all listen, the kernel gives every connection to those that do.
    await waitFor(
      `${opts.name} server's ${opts.processes} processes`,
      readyMs,
      async () => listeners(port) >= (opts.processes ?? 1),
      proc,
    )
  } catch (err) {
    await stop(proc)
    const stderr = opts.stderrFile ? ` (stderr in ${opts.stderrFile})` : ''
    throw new Error(`${(err as Error).message}; its output${stderr}:\n  ${output.slice(-15).join('\n  ')}`)
  }
  return { proc, base, output }
}
