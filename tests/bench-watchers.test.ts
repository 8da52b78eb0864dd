import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Server, ServerWebSocket } from 'bun'
import { wallNow } from '../bench/lib/clock'
import { WatcherProcess } from '../bench/watchers'

// Scenario (g)'s watcher client (bench/watchers.c) against a WebSocket server that sends what
// the test says: the counters the bench's verdict rests on must catch every fault.
const TASK = '01a2b3c4-0000-7000-8000-000000000001'
const OTHER = '01a2b3c4-0000-7000-8000-000000000002'

/** A log frame as the servers write it, with the bench's mark (`bench#<seq>#<sent ms>#`) in its message. */
function logFrame(id: string, seq: number, opts: { sent?: number; taskId?: string; padding?: number } = {}): string {
  const data = {
    id,
    task_id: opts.taskId ?? TASK,
    subtask_id: 'sub',
    level: 'info',
    message: `bench#${seq}#${(opts.sent ?? wallNow()).toFixed(3)}#${'x'.repeat(opts.padding ?? 60)}`,
    metadata: null,
    worker_id: null,
    worker_name: null,
    timestamp: new Date().toISOString(),
  }
  return JSON.stringify({ type: 'log', data, timestamp: new Date().toISOString() })
}

let server: Server<unknown>
const sockets: ServerWebSocket<unknown>[] = []
let opened: () => void
const allOpen = new Promise<void>((resolve) => (opened = resolve))
const COUNT = 3

beforeAll(() => {
  server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    fetch: (req, srv) => (srv.upgrade(req, { data: undefined }) ? undefined : new Response('upgrade expected', { status: 426 })),
    websocket: {
      message() {},
      open(ws) {
        ws.send(JSON.stringify({ type: 'subscribed', data: { task_id: TASK }, timestamp: new Date().toISOString() }))
        sockets.push(ws)
        if (sockets.length === COUNT) opened()
      },
    },
  })
})
afterAll(() => server.stop(true))

describe('bench (g) watcher client', () => {
  let watchers: WatcherProcess
  /** Logs the kernel gave no receive time for, by the end of the first test. */
  let unstampedBefore = 0
  afterAll(() => watchers?.close())

  test('subscribes every socket, then counts lost, duplicated, reordered and unreadable logs', async () => {
    watchers = new WatcherProcess({ host: '127.0.0.1', port: server.port!, taskId: TASK, count: COUNT, sources: ['127.0.0.1'], connectBatch: 2 })
    expect(await watchers.connected).toEqual({ failed: 0, notes: [] })
    await allOpen
    const [a, b, c] = sockets as [ServerWebSocket<unknown>, ServerWebSocket<unknown>, ServerWebSocket<unknown>]
    const everyone0 = watchers.received(0)
    for (const ws of sockets) ws.send(logFrame('1000-0', 0))
    await everyone0
    // a: in order, then one frame over 64 KiB (the 64-bit length form).
    a.send(logFrame('1000-1', 1))
    a.send(logFrame('1000-2', 2, { padding: 70_000 }))
    // b: log 0 again (a duplicate), then log 1 with an older id (out of order).
    b.send(logFrame('1000-0', 0))
    b.send(logFrame('999-5', 1))
    // c: never gets log 1 (lost), gets an unreadable log and one of another task (both malformed).
    c.send('{"type":"log","data":{"id":"1000-1"}}')
    c.send(logFrame('1000-1', 1, { taskId: OTHER }))
    // Every socket has log 3 once it has read all the above.
    const everyone3 = watchers.received(3)
    for (const ws of sockets) ws.send(logFrame('1000-9', 3))
    await everyone3
    const report = await watchers.report([0, 1])
    // (Not `unstamped`: the kernel turns receive times on a moment after the first socket asks.)
    expect(report).toMatchObject({ lost: 1, dup: 1, order: 1, malformed: 2, dropped: 0 })
    unstampedBefore = report.unstamped
    expect(report.latencies[0]).toHaveLength(COUNT)
    expect(report.latencies[1]).toHaveLength(2)
    expect((await watchers.report([2])).lost).toBe(2)
  })

  test('times a frame by its arrival in the socket, also when the process reads it later', async () => {
    watchers.pause()
    const sent = wallNow()
    for (const ws of sockets) ws.send(logFrame('2000-0', 4, { sent }))
    await Bun.sleep(1000)
    const readable = watchers.received(4)
    watchers.resume()
    await readable
    const { latencies, unstamped } = await watchers.report([4])
    expect(unstamped - unstampedBefore).toBe(0)
    expect(latencies[4]).toHaveLength(COUNT)
    // Read a second after it was sent, but it arrived at once.
    for (const ms of latencies[4]!) expect(ms).toBeLessThan(1000)
  })

  test('counts a socket the server closes as dropped, and waits only for those still open', async () => {
    const [a, b, c] = sockets as [ServerWebSocket<unknown>, ServerWebSocket<unknown>, ServerWebSocket<unknown>]
    const everyone = watchers.received(5)
    let said = false
    void everyone.then(() => (said = true))
    // c has log 5 and is closed: what it had no longer counts towards "every open socket has it".
    c.send(logFrame('3000-0', 5))
    await Bun.sleep(200)
    c.close(1013, 'Too slow')
    await Bun.sleep(200)
    a.send(logFrame('3000-0', 5))
    await Bun.sleep(300)
    expect(said).toBe(false)
    b.send(logFrame('3000-0', 5))
    await everyone
    const report = await watchers.report([5])
    expect(report).toMatchObject({ lost: 0, dropped: 1 })
    expect(report.latencies[5]).toHaveLength(3)
    expect(report.notes.join(' ')).toContain('socket closed by the server: 1013 Too slow')
  })
})
