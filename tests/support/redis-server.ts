/**
 * Test harness: a throw-away `redis-server` on a free port (never the system Redis on 6379).
 * The bench starts its private Redis with it too (bench/lib/processes.ts).
 *
 *   const redis = await startRedis()
 *   ... redis.url ...
 *   await redis.kill()     // SIGKILL: simulates an outage (connections reset, data and script cache lost)
 *   await redis.restart()  // a fresh server on the same port
 *   await redis.stop()
 */
import type { Subprocess } from 'bun'
import { pauseProcess } from './pause'

const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server'

export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  readonly port: number
  /** The running server's process id (for its CPU time in /proc). */
  readonly pid: number
  /** When the running server started (Date.now()): what it holds was written since. */
  readonly startedAt: number
  /** Graceful shutdown (SIGTERM); resolves once the process has exited. */
  stop(): Promise<void>
  /** SIGKILL, as in a crash; resolves once the process has exited. */
  kill(): Promise<void>
  /** Starts a new server on the same port (after kill or stop) and waits until it answers PING. */
  restart(): Promise<void>
  /** SIGSTOP: the server keeps its connections open but stops answering (a hung server). Resolves once it is stopped. */
  pause(): Promise<void>
  /** SIGCONT after pause(). */
  resume(): void
}

const live = new Set<Subprocess>()
process.on('exit', () => {
  for (const proc of live) proc.kill('SIGKILL')
})

/** A port that was free a moment ago (the OS picks it). */
export function freePort(): number {
  const server = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = server.port
  server.stop(true)
  return port
}

/** Resolves true when a RESP `PING` on 127.0.0.1:port gets `+PONG`. */
async function pingOnce(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    let done = false
    let received = ''
    const finish = (ok: boolean, socket?: { end(): void }) => {
      if (done) return
      done = true
      clearTimeout(timer)
      try {
        socket?.end()
      } catch {}
      resolve(ok)
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    Bun.connect({
      hostname: '127.0.0.1',
      port,
      socket: {
        open(socket) {
          socket.write('PING\r\n')
        },
        data(socket, chunk) {
          received += chunk.toString()
          if (received.includes('\r\n')) finish(received.startsWith('+PONG'), socket)
        },
        error() {
          finish(false)
        },
        close() {
          finish(false)
        },
        connectError() {
          finish(false)
        },
      },
    }).catch(() => finish(false))
  })
}

async function waitForPing(port: number, proc: Subprocess, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`redis-server on port ${port} exited with ${proc.exitCode ?? proc.signalCode}`)
    }
    if (await pingOnce(port)) return
    await Bun.sleep(20)
  }
  throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`)
}

function spawnServer(port: number, extraArgs: string[]): Subprocess {
  const proc = Bun.spawn(
    [
      REDIS_SERVER,
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--protected-mode',
      'yes',
      '--loglevel',
      'warning',
      ...extraArgs,
    ],
    { stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' },
  )
  live.add(proc)
  void proc.exited.then(() => live.delete(proc))
  return proc
}

/** A redis-server on `port` (with `extraArgs` after the harness's own), once it answers PING. */
export async function spawnReady(port: number, extraArgs: string[] = []): Promise<Subprocess> {
  const proc = spawnServer(port, extraArgs)
  try {
    await waitForPing(port, proc)
    return proc
  } catch (err) {
    proc.kill('SIGKILL')
    await proc.exited
    const stderr = await new Response(proc.stderr as ReadableStream).text().catch(() => '')
    throw new Error(`${(err as Error).message}${stderr ? `\n${stderr}` : ''}`)
  }
}

export async function startRedis(): Promise<RedisServer> {
  let port = 0
  let proc: Subprocess | undefined
  // Another process may grab the port between freePort() and the bind: try a few.
  for (let attempt = 0; attempt < 5 && !proc; attempt++) {
    port = freePort()
    if (port === 6379) continue
    try {
      proc = await spawnReady(port)
    } catch (err) {
      if (attempt === 4) throw err
    }
  }
  if (!proc) throw new Error('could not start redis-server')

  let current: Subprocess | undefined = proc
  let startedAt = Date.now()
  const signal = async (sig: 'SIGTERM' | 'SIGKILL') => {
    const p = current
    current = undefined
    if (!p || p.exitCode !== null || p.signalCode !== null) return
    p.kill(sig)
    if (sig === 'SIGTERM') p.kill('SIGCONT') // a paused server must run to handle SIGTERM
    await p.exited
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return current?.pid ?? Number.NaN
    },
    get startedAt() {
      return startedAt
    },
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    async restart() {
      await signal('SIGKILL')
      // The port can stay briefly unavailable after the old process died.
      let lastError: unknown
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          current = await spawnReady(port)
          startedAt = Date.now()
          return
        } catch (err) {
          lastError = err
          await Bun.sleep(100)
        }
      }
      throw lastError
    },
    async pause() {
      if (current) await pauseProcess(current)
    },
    resume() {
      current?.kill('SIGCONT')
    },
  }
}
