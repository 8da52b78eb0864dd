/**
 * Test harness: tasklog as a process of its own (`bun src/index.ts`), configured by environment
 * as in production, on a free port of 127.0.0.1. For tests that need the real start-up path,
 * a separate event loop (a stall shows as a late answer to a concurrent request), the
 * process's memory, or what it prints.
 *
 *   const server = await startServerProcess({ REDIS_URL: redis.url, STORE_TIMEOUT_MS: '1000' })
 *   ... fetch(`${server.url}/health`) ... new WsClient(`${server.wsUrl}/api/v1/ws/...`)
 *   const { stderr } = await server.stop()
 */
import { startExample, type ExampleResult, type RunningExample } from './example-process'

export interface ServerProcess {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** `ws://127.0.0.1:<port>` */
  readonly wsUrl: string
  readonly pid: number
  readonly proc: RunningExample
  /** SIGTERM (graceful); resolves with what it printed once it has exited. */
  stop(): Promise<ExampleResult>
}

/** Starts the server with `env` over the defaults (tasks in SQLite in memory, history in memory). */
export async function startServerProcess(env: Record<string, string> = {}): Promise<ServerProcess> {
  const proc = startExample(['bun', 'src/index.ts'], {
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: 'sqlite://:memory:',
    REDIS_URL: '',
    ...env,
  })
  const listening = /listening on http:\/\/127\.0\.0\.1:(\d+)/
  await proc.waitFor(listening, 15_000)
  const port = listening.exec(proc.stdout())![1]
  return {
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    pid: proc.proc.pid,
    proc,
    stop: () => proc.stop('SIGTERM'),
  }
}
