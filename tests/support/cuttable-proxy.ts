/**
 * Test harness: a TCP proxy in this process whose connections a test can cut, and that can
 * refuse new ones for a while, as a network outage does: a client's reconnections fail until
 * it is let through again.
 *
 *   const proxy = startCuttableProxy(port)  // 127.0.0.1:<proxy.port> -> 127.0.0.1:<port>
 *   proxy.cut()       // ends every open connection and refuses new ones
 *   proxy.restore()   // accepts again
 */
import type { Socket } from 'bun'

export interface CuttableProxy {
  readonly url: string
  cut(): void
  restore(): void
  stop(): void
}

interface Pair {
  upstream?: Socket<Pair>
  /** Bytes from the client before the upstream connection opened. */
  pending: Uint8Array[]
  client: Socket<Pair>
}

export function startCuttableProxy(targetPort: number): CuttableProxy {
  const open = new Set<Pair>()
  let refusing = false
  const listener = Bun.listen<Pair>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      open(client) {
        if (refusing) return void client.end()
        const pair: Pair = { client, pending: [] }
        client.data = pair
        open.add(pair)
        Bun.connect<Pair>({
          hostname: '127.0.0.1',
          port: targetPort,
          data: pair,
          socket: {
            open(upstream) {
              pair.upstream = upstream
              for (const chunk of pair.pending) upstream.write(chunk)
              pair.pending = []
            },
            data: (_upstream, chunk) => void pair.client.write(chunk),
            close: () => end(pair),
            error: () => end(pair),
          },
        }).catch(() => end(pair))
      },
      data(client, chunk) {
        const pair = client.data
        if (pair.upstream) pair.upstream.write(chunk)
        else pair.pending.push(new Uint8Array(chunk))
      },
      close: (client) => end(client.data),
      error: (client) => end(client.data),
    },
  })
  function end(pair: Pair | undefined): void {
    if (!pair || !open.delete(pair)) return
    pair.client.end()
    pair.upstream?.end()
  }
  const cut = () => {
    refusing = true
    for (const pair of [...open]) end(pair)
  }
  return {
    url: `http://127.0.0.1:${listener.port}`,
    cut,
    restore: () => void (refusing = false),
    stop() {
      cut()
      listener.stop(true)
    },
  }
}
