/**
 * The watcher processes of scenario (g): each holds `count` WebSockets on one task, spread over
 * the source addresses `sources`, and times each log's arrival on every one of them. The load
 * generator (bench/load.ts) starts several, as one process may hold fewer sockets than the
 * scenario needs (`ulimit -n`).
 *
 * They are `watchers.c`, compiled here with the machine's `cc` (once per version of the
 * source): 100,000 sockets each receiving a frame cost a JavaScript client (Bun's `node:net`)
 * more CPU than the servers spend sending it, on the cores the servers share, so the bench
 * measured its own clients. In C with one epoll loop a frame costs a read and a few string
 * searches. It binds source addresses itself, which Bun's `WebSocket` cannot.
 *
 * A frame's arrival is the kernel's receive time in the socket, on the machine's wall clock as
 * `wallNow()` here, so a log's send time in its message (written by the load generator) and its
 * arrival are on one clock, however late the process reads it: the load generator pauses the
 * processes while the servers send (`pause`, `resume`).
 */
import { existsSync, readFileSync, renameSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Subprocess } from 'bun'
import { children } from './lib/processes'

export interface WatchersJob {
  host: string
  port: number
  taskId: string
  count: number
  sources: string[]
  /** Sockets connecting (or waiting for `subscribed`) at once. */
  connectBatch: number
}

export interface WatchersReport {
  /** Per log sequence number asked about: ms from its send to its arrival, on each socket that has it. */
  latencies: Record<number, number[]>
  /** Logs the kernel gave no receive time for (timed when read instead), since the process began. */
  unstamped: number
  /** Subscribed sockets without a log they were asked about, summed over those logs. */
  lost: number
  dup: number
  order: number
  malformed: number
  /** Subscribed sockets the server closed. */
  dropped: number
  notes: string[]
}

const SOURCE = join(import.meta.dir, 'watchers.c')

/** The compiled client, built on first use into the temporary directory, named by its source's hash. */
function watchersBinary(): string {
  const source = readFileSync(SOURCE)
  const binary = join(tmpdir(), `tasklog-bench-watchers-${Bun.hash(source).toString(16)}`)
  if (existsSync(binary)) return binary
  const cc = Bun.which('cc')
  if (!cc) throw new Error('scenario (g) needs a C compiler (`cc`, Debian package gcc) for its watcher client, bench/watchers.c')
  const building = `${binary}.${process.pid}`
  const built = Bun.spawnSync([cc, '-O2', '-Wall', '-o', building, SOURCE], { stderr: 'pipe' })
  if (built.exitCode !== 0) throw new Error(`cc bench/watchers.c failed: ${built.stderr.toString().slice(0, 2000)}`)
  // Renamed into place, so that a load generator running at the same time never runs half a file.
  renameSync(building, binary)
  return binary
}

/** The load generator's side: one watcher process and its messages as promises. */
export class WatcherProcess {
  private readonly proc: Subprocess<'pipe', 'pipe', 'inherit'>
  readonly pid: number
  /** Waiting for a line starting with the key ("connected", "received 3", "end"). */
  private readonly waiting = new Map<string, (line: string) => void>()
  private readonly notes: string[] = []
  /** The lines of a report being read, up to its `end`. */
  private reportLines: string[] | undefined
  /** Resolves once every socket subscribed or failed; rejects if the process dies first. */
  readonly connected: Promise<{ failed: number; notes: string[] }>

  constructor(job: WatchersJob) {
    const path = `/api/v1/ws/tasks/${job.taskId}/logs`
    const args = [job.host, job.port, path, job.taskId, job.count, job.connectBatch, job.sources.join(',')].map(String)
    this.proc = Bun.spawn([watchersBinary(), ...args], { stdin: 'pipe', stdout: 'pipe', stderr: 'inherit' })
    children.add(this.proc)
    this.pid = this.proc.pid
    void this.readLines()
    this.connected = this.next('connected').then((line) => ({ failed: Number(line.split(' ')[1]), notes: this.notes.splice(0) }))
  }

  /** Resolves once every socket of this process still open has log `seq`. */
  received(seq: number): Promise<unknown> {
    return this.next(`received ${seq}`)
  }

  async report(seqs: number[]): Promise<WatchersReport> {
    const answer = this.next('end')
    this.reportLines = []
    this.command(`report ${seqs.join(' ')}`)
    await answer
    const [head, ...rows] = this.reportLines
    this.reportLines = undefined
    const [lost, dup, order, malformed, dropped, unstamped] = head!.split(' ').slice(1).map(Number) as number[]
    const latencies: Record<number, number[]> = {}
    for (const row of rows) {
      const [, seq, ...ms] = row.split(' ')
      latencies[Number(seq)] = ms.map(Number)
    }
    return { latencies, unstamped: unstamped!, lost: lost!, dup: dup!, order: order!, malformed: malformed!, dropped: dropped!, notes: this.notes.splice(0) }
  }

  /** Stops the process (SIGSTOP): its sockets keep receiving, into the kernel's buffers, stamped with their arrival. */
  pause(): void {
    this.proc.kill('SIGSTOP')
  }

  resume(): void {
    this.proc.kill('SIGCONT')
  }

  async close(): Promise<void> {
    this.resume()
    if (this.proc.exitCode === null) this.command('close')
    await Promise.race([this.proc.exited, Bun.sleep(5000)])
    this.proc.kill('SIGKILL')
    children.delete(this.proc)
  }

  private command(line: string): void {
    this.proc.stdin.write(`${line}\n`)
    void this.proc.stdin.flush()
  }

  private async readLines(): Promise<void> {
    const decoder = new TextDecoder()
    let rest = ''
    for await (const chunk of this.proc.stdout) {
      const lines = (rest + decoder.decode(chunk, { stream: true })).split('\n')
      rest = lines.pop()!
      for (const line of lines) this.onLine(line)
    }
  }

  private onLine(line: string): void {
    if (line.startsWith('note ')) {
      if (this.notes.length < 10) this.notes.push(line.slice(5))
      return
    }
    if (this.reportLines && line !== 'end') {
      this.reportLines.push(line)
      return
    }
    const key = line.startsWith('connected ') ? 'connected' : line
    this.waiting.get(key)?.(line)
    this.waiting.delete(key)
  }

  private next(key: string): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiting.set(key, resolve)
      this.proc.exited.then((code) => reject(new Error(`watcher process exited with code ${code} before ${key}`)))
    })
  }
}
