/**
 * One watcher process of scenario (g): holds `count` WebSockets on one task, spread over the
 * source addresses `sources`, and times each log's arrival on every one of them. The load
 * generator (bench/load.ts) starts several, as one process may hold fewer sockets than the
 * scenario needs (`ulimit -n`), and talks to them over Bun's IPC:
 *
 *   → { type: 'connected', failed, notes }   every socket subscribed (or failed)
 *   → { type: 'received', seq }               every socket still open has log `seq`
 *   ← { type: 'report', seqs }                → { type: 'report', ...WatchersReport }
 *   ← { type: 'close' }                       closes every socket and exits
 *
 * Times are `wallNow()`, which every process of the machine shares, so a log's send time in
 * its message (written by the load generator) and its arrival here are on one clock.
 */
import type { Subprocess } from 'bun'
import { RawWebSocket } from './lib/raw-websocket'
import { wallNow } from './lib/clock'
import { children } from './lib/processes'
import { MARK } from './load'

export interface WatchersJob {
  host: string
  port: number
  taskId: string
  count: number
  sources: string[]
  /** Sockets connecting at once. */
  connectBatch: number
}

export type WatchersMessage =
  | { type: 'connected'; failed: number; notes: string[] }
  | { type: 'received'; seq: number }
  | ({ type: 'report' } & WatchersReport)

export interface WatchersReport {
  /** Per log sequence number asked about: ms from its send to its arrival, on each socket that has it. */
  latencies: Record<number, number[]>
  /** Subscribed sockets without a log they were asked about, summed over those logs. */
  lost: number
  dup: number
  order: number
  malformed: number
  /** Subscribed sockets the server closed. */
  dropped: number
  notes: string[]
}

interface Watcher {
  ws: RawWebSocket
  /** It got `subscribed`; `open` until the server closes it. */
  subscribed: boolean
  open: boolean
  lastId: [number, number]
  /** Arrival latency per log sequence number. */
  arrived: Map<number, number>
}

/** The load generator's side: one watcher process and its messages as promises. */
export class WatcherProcess {
  private readonly proc: Subprocess
  private readonly waiting = new Map<string, (message: WatchersMessage) => void>()
  /** Resolves once every socket subscribed or failed; rejects if the process dies first. */
  readonly connected: Promise<{ failed: number; notes: string[] }>

  constructor(job: WatchersJob) {
    this.proc = Bun.spawn([process.execPath, import.meta.path, JSON.stringify(job)], {
      stdout: 'ignore',
      stderr: 'inherit',
      ipc: (message: WatchersMessage) => {
        const key = message.type === 'received' ? `received ${message.seq}` : message.type
        this.waiting.get(key)?.(message)
        this.waiting.delete(key)
      },
    })
    children.add(this.proc)
    this.connected = this.next('connected') as Promise<{ failed: number; notes: string[] }>
  }

  /** Resolves once every socket of this process still open has log `seq`. */
  received(seq: number): Promise<unknown> {
    return this.next(`received ${seq}`)
  }

  report(seqs: number[]): Promise<WatchersReport> {
    const answer = this.next('report') as Promise<WatchersReport>
    this.proc.send({ type: 'report', seqs })
    return answer
  }

  async close(): Promise<void> {
    if (this.proc.exitCode === null) this.proc.send({ type: 'close' })
    await Promise.race([this.proc.exited, Bun.sleep(5000)])
    this.proc.kill('SIGKILL')
    children.delete(this.proc)
  }

  private next(key: string): Promise<WatchersMessage> {
    return new Promise((resolve, reject) => {
      this.waiting.set(key, resolve)
      this.proc.exited.then((code) => reject(new Error(`watcher process exited with code ${code} before ${key}`)))
    })
  }
}

if (import.meta.main) {
  const job = JSON.parse(process.argv[2] ?? '{}') as WatchersJob
  const path = `/api/v1/ws/tasks/${job.taskId}/logs`
  const notes: string[] = []
  const note = (s: string) => {
    if (notes.length < 10) notes.push(s)
  }
  let dup = 0
  let order = 0
  let malformed = 0
  let dropped = 0
  let openCount = 0
  /** How many open sockets have each log. */
  const arrivals = new Map<number, number>()
  const watchers: Watcher[] = []
  const send = (message: WatchersMessage) => process.send!(message)

  function onLog(w: Watcher, text: string, at: number): void {
    let seq: number
    let sent: number
    let id: string
    try {
      const frame = JSON.parse(text) as { data: { id: string; task_id: string; message: string } }
      const [, seqText, sentText] = frame.data.message.slice(frame.data.message.indexOf(MARK)).split('#')
      seq = Number(seqText)
      sent = Number(sentText)
      id = frame.data.id
      if (frame.data.task_id !== job.taskId || !Number.isInteger(seq) || !Number.isFinite(sent)) throw new Error('bad log')
    } catch {
      malformed++
      note(`unreadable log frame: ${text.slice(0, 200)}`)
      return
    }
    const [ms, idSeq] = id.split('-').map(Number) as [number, number]
    // The same id again is a duplicate (counted below by seq), not a reordering.
    if (ms < w.lastId[0] || (ms === w.lastId[0] && idSeq < w.lastId[1])) order++
    else w.lastId = [ms, idSeq]
    if (w.arrived.has(seq)) {
      dup++
      return
    }
    w.arrived.set(seq, at - sent)
    const n = (arrivals.get(seq) ?? 0) + 1
    arrivals.set(seq, n)
    if (n === openCount) send({ type: 'received', seq })
  }

  /** Opens one watcher; resolves true once subscribed, false when it failed. */
  function connect(localAddress: string): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        w.ws.close()
        settle(false, 'no subscribed frame within 30 s')
      }, 30_000)
      let settled = false
      const settle = (ok: boolean, why?: string) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (why) note(`subscribe failed: ${why}`)
        resolve(ok)
      }
      const w: Watcher = {
        subscribed: false,
        open: false,
        lastId: [0, -1],
        arrived: new Map(),
        ws: new RawWebSocket(
          { host: job.host, port: job.port, path, localAddress },
          {
            text: (text) => {
              const at = wallNow()
              if (text.startsWith('{"type":"log"')) return onLog(w, text, at)
              if (text.startsWith('{"type":"subscribed"')) {
                if (!text.includes(`"task_id":"${job.taskId}"`)) {
                  malformed++
                  note(`subscribed frame for another task: ${text.slice(0, 200)}`)
                }
                w.subscribed = w.open = true
                openCount++
                return settle(true)
              }
              note(`unexpected frame: ${text.slice(0, 200)}`)
            },
            closed: (code, reason) => {
              if (w.open) {
                w.open = false
                openCount--
                dropped++
                note(`socket closed by the server: ${code} ${reason}`)
              }
              settle(false, `closed ${code} ${reason}`)
            },
          },
        ),
      }
      watchers.push(w)
    })
  }

  // The load generator is gone (killed on its timeout, say): nobody will ask for the sockets back.
  process.on('disconnect', () => process.exit(0))
  let failed = 0
  for (let i = 0; i < job.count; i += job.connectBatch) {
    const batch = Array.from({ length: Math.min(job.connectBatch, job.count - i) }, (_, k) =>
      connect(job.sources[(i + k) % job.sources.length]!),
    )
    for (const ok of await Promise.all(batch)) if (!ok) failed++
  }
  send({ type: 'connected', failed, notes: [...notes] })

  process.on('message', (message: { type: 'report'; seqs: number[] } | { type: 'close' }) => {
    if (message.type === 'close') {
      for (const w of watchers) w.ws.close()
      process.exit(0)
    }
    const latencies: Record<number, number[]> = {}
    let lost = 0
    for (const seq of message.seqs) {
      const list: number[] = []
      for (const w of watchers) {
        if (!w.subscribed) continue
        const ms = w.arrived.get(seq)
        if (ms === undefined) lost++
        else list.push(Math.round(ms * 100) / 100)
      }
      latencies[seq] = list
    }
    send({ type: 'report', latencies, lost, dup, order, malformed, dropped, notes })
  })
}
