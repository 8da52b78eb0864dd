/**
 * Test harness: a TCP proxy in a process of its own, so that a test can freeze it (SIGSTOP) and
 * the service behind it looks hung: connections stay open, bytes stop flowing, new connections
 * are accepted by the kernel and then get no answer.
 *
 *   const proxy = await startTcpProxy(5432)   // forwards 127.0.0.1:<proxy.port> to 127.0.0.1:5432
 *   await proxy.pause()                        // SIGSTOP
 *   proxy.resume()                             // SIGCONT
 *   await proxy.stop()
 *
 * Run as a script (`bun tests/support/tcp-proxy.ts <target port> [<target host>]`), it is the proxy itself: it
 * prints `listening <port>` once it accepts connections.
 */
import { pauseProcess } from './pause'
import type { Socket, Subprocess } from 'bun'

export interface TcpProxy {
  /** The port the proxy listens on (127.0.0.1). */
  readonly port: number
  /** SIGSTOP; resolves once the kernel reports the process stopped. */
  pause(): Promise<void>
  /** SIGCONT after pause(). */
  resume(): void
  /** Ends the proxy (resumed first if paused); resolves once it has exited. */
  stop(): Promise<void>
}

const live = new Set<Subprocess>()
process.on('exit', () => {
  for (const proc of live) proc.kill('SIGKILL')
})

/** Starts the proxy process, forwarding to targetHost:targetPort, and waits until it listens. */
export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const proc = Bun.spawn(['bun', import.meta.path, String(targetPort), targetHost], {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'inherit',
  })
  live.add(proc)
  void proc.exited.then(() => live.delete(proc))
  const reader = proc.stdout.getReader()
  const decoder = new TextDecoder()
  let out = ''
  while (!/listening (\d+)\n/.test(out)) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`tcp proxy exited before listening (code ${await proc.exited})`)
    out += decoder.decode(value)
  }
  reader.releaseLock()
  const port = Number(/listening (\d+)\n/.exec(out)![1])
  return {
    port,
    pause: () => pauseProcess(proc),
    resume() {
      proc.kill('SIGCONT')
    },
    async stop() {
      proc.kill('SIGCONT')
      proc.kill('SIGTERM')
      await proc.exited
    },
  }
}

/** One direction of a connection: bytes the peer has not taken yet wait for its `drain`. */
interface Side {
  socket?: Socket<Side>
  peer?: Side
  pending: Uint8Array[]
  ended: boolean
}

function forward(to: Side, data: Uint8Array): void {
  if (!to.socket || to.pending.length) return void to.pending.push(data.slice())
  const written = to.socket.write(data)
  if (written < data.byteLength) to.pending.push(data.slice(Math.max(written, 0)))
}

function flush(side: Side): void {
  while (side.socket && side.pending.length) {
    const chunk = side.pending[0]!
    const written = side.socket.write(chunk)
    if (written < chunk.byteLength) {
      side.pending[0] = chunk.slice(Math.max(written, 0))
      return
    }
    side.pending.shift()
  }
  if (side.ended && !side.pending.length) side.socket?.end()
}

function close(side: Side | undefined): void {
  if (!side || side.ended) return
  side.ended = true
  flush(side)
}

function serve(targetPort: number, targetHost: string): void {
  const handlers = {
    data(socket: Socket<Side>, data: Uint8Array) {
      forward(socket.data.peer!, data)
    },
    drain(socket: Socket<Side>) {
      flush(socket.data)
    },
    close(socket: Socket<Side>) {
      close(socket.data.peer)
    },
    error(socket: Socket<Side>) {
      close(socket.data.peer)
    },
  }
  const server = Bun.listen<Side>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      ...handlers,
      open(client) {
        const clientSide: Side = { socket: client, pending: [], ended: false }
        const targetSide: Side = { pending: [], ended: false, peer: clientSide }
        clientSide.peer = targetSide
        client.data = clientSide
        Bun.connect<Side>({
          hostname: targetHost,
          port: targetPort,
          data: targetSide,
          socket: {
            ...handlers,
            open(target) {
              targetSide.socket = target
              flush(targetSide)
            },
            connectError() {
              client.end()
            },
          },
        }).catch(() => client.end())
      },
    },
  })
  process.on('SIGTERM', () => {
    server.stop(true)
    process.exit(0)
  })
  console.log(`listening ${server.port}`)
}

if (import.meta.main) serve(Number(process.argv[2]), process.argv[3] ?? '127.0.0.1')
