/**
 * Load generator for one scenario against one running server: both producer (HTTP POSTs, as a
 * worker) and consumer (WebSocket subscribers, as watchers), so one clock (`performance.now()`
 * of this process) times every line from its POST to each subscriber's receipt.
 *
 *   bun bench/load.ts '<json LoadJob>'     → prints one JSON LoadResult line on stdout
 *
 * Every log carries its sequence number and send time in its message
 * (`bench#<seq>#<sent ms>#…`). Per subscriber it counts
 * - lost: acknowledged (201) logs of its task never received,
 * - dup: logs received twice,
 * - order: frames whose log id is not greater than the previous one's,
 * and it checks the full JSON shape of a sample of frames (`malformed`).
 * Server CPU and memory come from /proc/<pid> (see lib/proc.ts).
 */
import { wallNow } from './lib/clock'
import { Flags, Histogram } from './lib/histogram'
import { measureBroadcast, type BroadcastSplit } from './lib/broadcast-split'
import { cpuMs, leafPids, machineBusyMs, memKiB, openFilesLimit, threadCpuMs, treeCpuMs, treePids, treeRssKiB } from './lib/proc'
import type { LoadParams, ScenarioId } from './scenarios'
import { WatcherProcess, type WatchersReport } from './watchers'

export interface LoadJob {
  scenario: ScenarioId
  server: string
  base: string
  serverPid: number
  redisPid: number
  params: LoadParams
  /** `--auth token`: the bearer token every request and socket carries. */
  token?: string
}

export interface Correctness {
  lost: number
  dup: number
  order: number
  /** Frames whose JSON failed the shape check, or that could not be read at all. */
  malformed: number
  /** POSTs that did not answer 201. */
  postErrors: number
  /** Subscriptions closed by the server, or that never got `subscribed`. */
  droppedSockets: number
  /** Delivered logs whose POST did not succeed (stored although the worker was told otherwise). */
  unacked: number
  /** (f) subscribers not caught up when the run ended; `recovered: false` after reconnect. */
  notCaughtUp: number
  recoveredFalse: number
}

export interface LoadResult {
  scenario: ScenarioId
  server: string
  ok: boolean
  error?: string
  /** Measured window (after warm-up), in s. */
  windowS: number
  logsAcked: number
  acksPerS: number
  requestsPerS: number
  deliveries: number
  deliveriesPerS: number
  /** POST latency, ms. */
  post: { count: number; p50: number; p99: number; max: number; mean: number }
  /** POST → subscriber receipt, ms. */
  e2e: { count: number; p50: number; p99: number; max: number; mean: number }
  serverCpuMs: number
  serverCpuMsPerLog: number
  /** The server's CPU per log by thread name (main, JIT, GC, ...), from /proc/<pid>/task. */
  serverThreadsMsPerLog: Record<string, number>
  redisCpuMs: number
  redisCpuMsPerLog: number
  serverRssKiB: number
  serverPeakRssKiB: number
  /** This load generator's CPU (with (g)'s watcher processes) over the window, % of one core: near 100 means it, not the server, limits. */
  loaderCpuPct: number
  /**
   * CPU used on this machine by anything but the server, Redis and this load generator over the
   * window, % of one core: other work on a shared machine. High values make the run noisy.
   */
  otherCpuPct: number
  /** (e) */
  idle?: { connections: number; rssBeforeKiB: number; rssAfterKiB: number; bytesPerConnection: number; connectMs: number }
  /**
   * (g) ms from each broadcast's POST until its last watcher had it, where each one's time went,
   * and how the watchers were spread; the same for the first broadcast, which is not counted.
   */
  broadcast?: {
    lastMs: number[]
    split: BroadcastSplit[]
    warmUpLastMs: number
    warmUpSplit: BroadcastSplit
    watcherProcesses: number
    sourceAddresses: number
  }
  /** (f) ms from the reconnect until each subscriber had every log sent before it. */
  catchUp?: { subscribers: number; p50: number; p99: number; max: number; replayed: number }
  correctness: Correctness
  notes: string[]
}

const now = wallNow
const sleep = (ms: number) => Bun.sleep(ms)
export const MARK = 'bench#'
const PADDING = ' step output: processed batch of records, all checks passed, moving on to the next stage'
const METADATA = { host: 'bench-worker-1', attempt: 1, tags: ['bench', 'load'] }
/** Every POST's headers; with `--auth token` also the Authorization header (set in runLoad). */
const JSON_HEADERS: Record<string, string> = { 'content-type': 'application/json' }
/** (g): how long a broadcast may take to reach every watcher before the next one goes out (or the counts are taken). */
export const BROADCAST_WAIT_MS = 60_000
/** (g): sockets per watcher process at most (fewer when `ulimit -n` is lower). */
const WATCHERS_PER_PROCESS = 25_000
/**
 * (g): sockets per source address. Loopback has about 28,000 ephemeral ports per address, but
 * a bind to port 0 searches them for a free one (first those of one parity), which grows slow
 * as they fill: at 17,000 per address, connecting was bound by the kernel's system time.
 */
const WATCHERS_PER_ADDRESS = 5000
/**
 * (g): the `i`th source address of this run, `127.a.b.(i+1)`, a block of its own for each load
 * generator (from its process id): the sockets a run closes leave their ports in TIME_WAIT for a
 * minute, which would make the next run's binds fail on the same addresses.
 */
const sourceAddress = (i: number) => `127.${(process.pid >> 8) & 255}.${process.pid & 255}.${i + 1}`
const DATA_KEYS = 'id,task_id,subtask_id,level,message,metadata,worker_id,worker_name,timestamp'
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const LOG_ID = /^\d+-\d+$/

class TaskState {
  issued = 0
  readonly acked = new Flags()
  ackedCount = 0
  failed = 0
  readonly logUrl: string
  readonly logsUrl: string
  constructor(
    readonly taskId: string,
    readonly subtaskId: string,
    base: string,
  ) {
    this.logUrl = `${base}/api/v1/subtasks/${subtaskId}/log`
    this.logsUrl = `${base}/api/v1/subtasks/${subtaskId}/logs`
  }
}

class Subscriber {
  ws: WebSocket | undefined
  readonly seen = new Flags()
  distinct = 0
  received = 0
  dup = 0
  order = 0
  malformed = 0
  lastMs = -1
  lastSeq = -1
  lastId = ''
  subscribed = false
  recoveredFalse = 0
  /** We closed it (or are about to); a close is then not a failure. */
  closing = false
  dropped = 0
  /** (f) count of distinct seqs below `catchTarget`, and when it reached it. */
  catchTarget = -1
  below = 0
  caughtUpAt = -1
  onSubscribed: (() => void) | undefined
  onFailed: ((why: string) => void) | undefined
  constructor(readonly task: TaskState) {}
}

export async function runLoad(job: LoadJob): Promise<LoadResult> {
  const { params: p, base } = job
  if (job.token) JSON_HEADERS.authorization = `Bearer ${job.token}`
  const notes: string[] = []
  const note = (s: string) => {
    if (notes.length < 20) notes.push(s)
  }
  const postHist = new Histogram()
  const e2eHist = new Histogram()
  let measureStart = Number.POSITIVE_INFINITY
  let logsAckedMeasured = 0
  let requestsMeasured = 0
  let deliveriesMeasured = 0
  let postErrors = 0
  const subs: Subscriber[] = []
  const wsBase = base.replace(/^http/, 'ws')

  // ---------- producer ----------
  async function createTask(label: string): Promise<TaskState> {
    const res = await fetch(`${base}/api/v1/tasks`, {
      method: 'POST',
      headers: JSON_HEADERS,
      body: JSON.stringify({ description: `bench ${label}` }),
    })
    const text = await res.text()
    if (res.status !== 201) throw new Error(`POST /api/v1/tasks answered ${res.status}: ${text.slice(0, 200)}`)
    const task = JSON.parse(text) as { task_id: string; subtasks: { subtask_id: string }[] }
    if (!task.subtasks?.[0]) throw new Error('created task has no subtask')
    return new TaskState(task.task_id, task.subtasks[0].subtask_id, base)
  }

  const message = (seq: number, sent: number) => `${MARK}${seq}#${sent.toFixed(3)}#${PADDING}`

  async function post(task: TaskState, batch: number): Promise<void> {
    const seq0 = task.issued
    task.issued += batch
    const sent = now()
    let body: string
    if (batch === 1) body = JSON.stringify({ level: 'info', message: message(seq0, sent), metadata: METADATA })
    else {
      const logs = new Array(batch)
      for (let k = 0; k < batch; k++) logs[k] = { level: 'info', message: message(seq0 + k, sent), metadata: METADATA }
      body = JSON.stringify({ logs })
    }
    let status = 0
    let text = ''
    try {
      const res = await fetch(batch === 1 ? task.logUrl : task.logsUrl, { method: 'POST', headers: JSON_HEADERS, body })
      status = res.status
      text = await res.text()
    } catch (err) {
      text = (err as Error).message
    }
    const done = now()
    if (status === 201) {
      for (let k = 0; k < batch; k++) task.acked.set(seq0 + k)
      task.ackedCount += batch
      if (sent >= measureStart) {
        postHist.record(done - sent)
        logsAckedMeasured += batch
        requestsMeasured++
      }
    } else {
      task.failed += batch
      postErrors++
      note(`POST answered ${status || 'no response'}: ${text.slice(0, 160)}`)
    }
  }

  async function closedLoop(tasks: TaskState[], endAt: number): Promise<void> {
    let next = 0
    await Promise.all(
      Array.from({ length: p.concurrency }, async () => {
        while (now() < endAt) await post(tasks[next++ % tasks.length]!, p.batch)
      }),
    )
  }

  /** Sends `rate` logs/s spread over the tasks until endAt; at most 1000 requests in flight. */
  async function openLoop(tasks: TaskState[], startAt: number, endAt: number): Promise<void> {
    const inflight = new Set<Promise<void>>()
    let issued = 0
    let capped = 0
    let next = 0
    for (let t = now(); t < endAt; t = now()) {
      const due = Math.floor(((t - startAt) * p.rate) / 1000) - issued
      for (let k = 0; k < due; k++) {
        if (inflight.size >= 1000) {
          capped++
          break
        }
        issued++
        const pr: Promise<void> = post(tasks[next++ % tasks.length]!, p.batch).finally(() => inflight.delete(pr))
        inflight.add(pr)
      }
      await sleep(1)
    }
    if (capped) note(`open loop fell behind: 1000 requests in flight ${capped} times`)
    await Promise.race([Promise.all(inflight), sleep(10_000)])
  }

  // ---------- consumers ----------
  function onFrame(sub: Subscriber, data: string): void {
    const t = now()
    if (data.startsWith('{"type":"log"')) {
      sub.received++
      // Fast path: read id, seq and send time without parsing the whole frame.
      const i = data.indexOf('"id":"')
      const j = data.indexOf('"', i + 6)
      const id = data.slice(i + 6, j)
      const dash = id.indexOf('-')
      const ms = Number(id.slice(0, dash))
      const idSeq = Number(id.slice(dash + 1))
      const m = data.indexOf(MARK, j)
      const a = m + MARK.length
      const b = data.indexOf('#', a)
      const c = data.indexOf('#', b + 1)
      const seq = Number(data.slice(a, b))
      const sent = Number(data.slice(b + 1, c))
      if (i < 0 || dash < 0 || m < 0 || !Number.isInteger(seq) || !Number.isFinite(sent) || !Number.isFinite(ms)) {
        sub.malformed++
        note(`unreadable frame: ${data.slice(0, 200)}`)
        return
      }
      // Full shape check on the first frame and a sample of the rest.
      if ((sub.received & 127) === 1 && !validLogFrame(data, sub.task, id)) {
        sub.malformed++
        note(`malformed frame: ${data.slice(0, 300)}`)
      }
      // Same id as the previous frame: a duplicate (counted below by seq), not a reordering.
      if (ms < sub.lastMs || (ms === sub.lastMs && idSeq < sub.lastSeq)) sub.order++
      else if (ms !== sub.lastMs || idSeq !== sub.lastSeq) {
        sub.lastMs = ms
        sub.lastSeq = idSeq
        sub.lastId = id
      }
      if (sub.seen.has(seq)) {
        sub.dup++
        return
      }
      sub.seen.set(seq)
      sub.distinct++
      if (seq < sub.catchTarget && ++sub.below === sub.catchTarget && sub.caughtUpAt < 0) sub.caughtUpAt = t
      // (f): logs sent while the subscriber was away are replayed, not live: their latency is
      // the gap, measured as catch-up instead.
      if (sent >= measureStart && seq >= sub.catchTarget) {
        e2eHist.record(t - sent)
        deliveriesMeasured++
      }
      return
    }
    let frame: { type?: string; data?: { task_id?: string; recovered?: boolean; message?: string } }
    try {
      frame = JSON.parse(data)
    } catch {
      sub.malformed++
      note(`non-JSON frame: ${data.slice(0, 200)}`)
      return
    }
    if (frame.type === 'subscribed') {
      if (frame.data?.task_id !== sub.task.taskId) {
        sub.malformed++
        note(`subscribed frame for the wrong task: ${data.slice(0, 200)}`)
      }
      if (frame.data?.recovered === false) sub.recoveredFalse++
      sub.subscribed = true
      sub.onSubscribed?.()
    } else if (frame.type === 'error') note(`error frame: ${data.slice(0, 200)}`)
    else if (frame.type !== 'pong' && frame.type !== 'status') note(`unexpected frame: ${data.slice(0, 200)}`)
  }

  /** Opens the subscriber's socket; resolves on `subscribed`, rejects on close or after 15 s. */
  function connect(sub: Subscriber, since?: string): Promise<void> {
    sub.subscribed = false
    sub.closing = false
    const query = new URLSearchParams(since ? { since } : {})
    if (job.token) query.set('token', job.token)
    const url = `${wsBase}/api/v1/ws/tasks/${sub.task.taskId}/logs${query.size ? `?${query}` : ''}`
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail('no subscribed frame within 15 s'), 15_000)
      const fail = (why: string) => {
        clearTimeout(timer)
        sub.onSubscribed = sub.onFailed = undefined
        reject(new Error(why))
      }
      sub.onSubscribed = () => {
        clearTimeout(timer)
        sub.onSubscribed = sub.onFailed = undefined
        resolve()
      }
      sub.onFailed = fail
      const ws = new WebSocket(url)
      sub.ws = ws
      ws.onmessage = (ev) => {
        if (sub.ws === ws) onFrame(sub, typeof ev.data === 'string' ? ev.data : String(ev.data))
      }
      ws.onclose = (ev) => {
        if (sub.ws !== ws || sub.closing) return
        sub.dropped++
        note(`socket closed by the server: ${ev.code} ${ev.reason}`)
        sub.onFailed?.(`closed ${ev.code} ${ev.reason}`)
      }
    })
  }

  async function connectAll(list: Subscriber[], since?: (s: Subscriber) => string | undefined): Promise<number> {
    let failed = 0
    for (let i = 0; i < list.length; i += p.connectBatch) {
      const chunk = list.slice(i, i + p.connectBatch)
      const results = await Promise.allSettled(chunk.map((s) => connect(s, since?.(s))))
      for (const r of results)
        if (r.status === 'rejected') {
          failed++
          note(`subscribe failed: ${(r.reason as Error).message}`)
        }
    }
    return failed
  }

  async function closeAll(list: Subscriber[], waitMs = 5000): Promise<void> {
    const closed = list.map(
      (s) =>
        new Promise<void>((resolve) => {
          const ws = s.ws
          if (!ws || ws.readyState === WebSocket.CLOSED) return resolve()
          s.closing = true
          ws.addEventListener('close', () => resolve())
          ws.close()
        }),
    )
    await Promise.race([Promise.all(closed), sleep(waitMs)])
  }

  /** Waits (at most maxMs) until every subscriber has every acknowledged log of its task. */
  async function drain(maxMs: number): Promise<void> {
    const deadline = now() + maxMs
    while (now() < deadline) {
      if (subs.every((s) => s.distinct >= s.task.ackedCount)) return
      await sleep(20)
    }
    note(`drain: not every subscriber had every log after ${maxMs} ms`)
  }

  function correctness(extra: Partial<Correctness> = {}): Correctness {
    const c: Correctness = {
      lost: 0,
      dup: 0,
      order: 0,
      malformed: 0,
      postErrors,
      droppedSockets: 0,
      unacked: 0,
      notCaughtUp: 0,
      recoveredFalse: 0,
      ...extra,
    }
    for (const s of subs) {
      c.dup += s.dup
      c.order += s.order
      c.malformed += s.malformed
      c.droppedSockets += s.dropped
      c.recoveredFalse += s.recoveredFalse
      const task = s.task
      for (let seq = 0; seq < task.issued; seq++) {
        const acked = task.acked.has(seq)
        const seen = s.seen.has(seq)
        if (acked && !seen) c.lost++
        else if (seen && !acked) c.unacked++
      }
    }
    return c
  }

  // ---------- the run ----------
  const server = { cpu0: 0, redis0: 0, loader0: process.cpuUsage(), helpers0: 0, machine0: 0, threads0: new Map<string, number>() }
  /** CPU of this process's children, in ms: (g)'s watcher processes are the load generator too. */
  const helpersCpuMs = () => treeCpuMs(process.pid) - cpuMs(process.pid)
  const startMeasuring = () => {
    measureStart = now()
    server.loader0 = process.cpuUsage()
    server.helpers0 = helpersCpuMs()
    server.machine0 = machineBusyMs()
    server.cpu0 = cpuMs(job.serverPid)
    server.threads0 = threadCpuMs(job.serverPid)
    server.redis0 = cpuMs(job.redisPid)
  }
  const finish = (windowMs: number, extra: Partial<LoadResult> = {}, c: Partial<Correctness> = {}): LoadResult => {
    const serverCpu = cpuMs(job.serverPid) - server.cpu0
    const threads: Record<string, number> = {}
    for (const [name, ms] of threadCpuMs(job.serverPid)) {
      const used = ms - (server.threads0.get(name) ?? 0)
      if (used > 0 && logsAckedMeasured) threads[name] = used / logsAckedMeasured
    }
    const redisCpu = cpuMs(job.redisPid) - server.redis0
    const mem = memKiB(job.serverPid)
    const windowS = windowMs / 1000
    const loader = process.cpuUsage(server.loader0)
    const loaderMs = (loader.user + loader.system) / 1000 + helpersCpuMs() - server.helpers0
    const elapsedMs = now() - measureStart
    const otherMs = machineBusyMs() - server.machine0 - serverCpu - redisCpu - loaderMs
    const correct = correctness(c)
    return {
      scenario: job.scenario,
      server: job.server,
      ok: true,
      windowS,
      logsAcked: logsAckedMeasured,
      acksPerS: logsAckedMeasured / windowS,
      requestsPerS: requestsMeasured / windowS,
      deliveries: deliveriesMeasured,
      deliveriesPerS: deliveriesMeasured / windowS,
      post: postHist.summary(),
      e2e: e2eHist.summary(),
      serverCpuMs: serverCpu,
      serverCpuMsPerLog: logsAckedMeasured ? serverCpu / logsAckedMeasured : Number.NaN,
      serverThreadsMsPerLog: threads,
      redisCpuMs: redisCpu,
      redisCpuMsPerLog: logsAckedMeasured ? redisCpu / logsAckedMeasured : Number.NaN,
      serverRssKiB: mem.rss,
      serverPeakRssKiB: mem.hwm,
      loaderCpuPct: (100 * loaderMs) / elapsedMs,
      otherCpuPct: Math.max(0, (100 * otherMs) / elapsedMs),
      correctness: correct,
      notes,
      ...extra,
    }
  }

  const tasks: TaskState[] = []
  for (let i = 0; i < p.tasks; i++) tasks.push(await createTask(`${job.scenario}-${i}`))

  if (job.scenario === 'g') return await broadcastToWatchers(tasks[0]!)

  if (job.scenario === 'e') {
    const n = p.idleConnections ?? 10_000
    for (let i = 0; i < (p.idleWarmup ?? 0); i++) subs.push(new Subscriber(tasks[0]!))
    const failedWarmup = await connectAll(subs)
    await sleep(500)
    const before = memKiB(job.serverPid).rss
    const measured: Subscriber[] = []
    for (let i = 0; i < n; i++) measured.push(new Subscriber(tasks[0]!))
    subs.push(...measured)
    const t0 = now()
    const failed = failedWarmup + (await connectAll(measured))
    const connectMs = now() - t0
    await sleep(1500)
    const after = memKiB(job.serverPid).rss
    // One log to everyone: every idle socket must still be live.
    startMeasuring()
    const t1 = now()
    await post(tasks[0]!, 1)
    await drain(10_000)
    const result = finish(now() - t1, {
      // One log: rates and CPU per log mean nothing here; e2e is the fan-out to every socket.
      acksPerS: Number.NaN,
      requestsPerS: Number.NaN,
      serverCpuMsPerLog: Number.NaN,
      serverThreadsMsPerLog: {},
      redisCpuMsPerLog: Number.NaN,
      idle: idleMemory(n, before, after, connectMs),
    }, { droppedSockets: failed })
    await closeAll(subs)
    return result
  }

  for (const task of tasks) for (let i = 0; i < p.subscribers; i++) subs.push(new Subscriber(task))
  const failedConnects = await connectAll(subs)
  await sleep(200)

  if (job.scenario === 'f') {
    const task = tasks[0]!
    const t0 = now()
    const total = p.warmupMs + (p.reconnectGapMs ?? 1000) + 500 + (p.afterReconnectMs ?? 4000)
    const endAt = t0 + total
    setTimeout(startMeasuring, p.warmupMs)
    const producing = openLoop(tasks, t0, endAt)
    await sleep(p.warmupMs)
    // Drop everyone at once, stay away while the worker keeps logging, come back with `since`.
    await closeAll(subs)
    await sleep(p.reconnectGapMs ?? 1000)
    const target = task.issued
    const distinctBefore = subs.reduce((n, s) => n + s.distinct, 0)
    for (const s of subs) {
      s.catchTarget = target
      s.below = 0
      for (let seq = 0; seq < target; seq++) if (s.seen.has(seq)) s.below++
      if (s.below === target) s.caughtUpAt = now()
    }
    const reconnectAt = now()
    const failed = await connectAll(subs, (s) => s.lastId || undefined)
    await producing
    const windowMs = now() - measureStart
    await drain(5000)
    const times = subs.filter((s) => s.caughtUpAt >= 0).map((s) => Math.max(0, s.caughtUpAt - reconnectAt))
    const h = new Histogram()
    for (const x of times) h.record(x)
    const replayed = subs.reduce((n, s) => n + s.distinct, 0) - distinctBefore
    const result = finish(
      windowMs,
      { catchUp: { subscribers: subs.length, p50: h.quantile(0.5), p99: h.quantile(0.99), max: h.max, replayed } },
      { droppedSockets: failedConnects + failed, notCaughtUp: subs.length - times.length },
    )
    await closeAll(subs)
    return result
  }

  const t0 = now()
  const endAt = t0 + p.warmupMs + p.durationMs
  setTimeout(startMeasuring, p.warmupMs)
  if (p.rate > 0) await openLoop(tasks, t0, endAt)
  else await closedLoop(tasks, endAt)
  const windowMs = now() - measureStart
  await drain(5000)
  const result = finish(windowMs, {}, { droppedSockets: failedConnects })
  await closeAll(subs)
  return result

  /**
   * (g): opens the watchers in processes of their own (as many as this process's open-files
   * limit needs), each over source addresses of its own, then broadcasts one log at a time.
   */
  async function broadcastToWatchers(task: TaskState): Promise<LoadResult> {
    const { hostname, port } = new URL(base)
    const perProcess = Math.min(WATCHERS_PER_PROCESS, openFilesLimit() - 500)
    let address = 0
    const spawn = (count: number): WatcherProcess[] => {
      const processes = Math.ceil(count / perProcess)
      return Array.from({ length: processes }, (_, i) => {
        const share = Math.floor((count * (i + 1)) / processes) - Math.floor((count * i) / processes)
        const sources = Array.from({ length: Math.ceil(share / WATCHERS_PER_ADDRESS) }, () => sourceAddress(address++))
        return new WatcherProcess({
          host: hostname,
          port: Number(port),
          taskId: task.taskId,
          count: share,
          sources,
          connectBatch: p.connectBatch,
        })
      })
    }
    const connect = async (list: WatcherProcess[]) => {
      let failed = 0
      for (const c of await Promise.all(list.map((w) => w.connected))) {
        failed += c.failed
        c.notes.forEach(note)
      }
      return failed
    }
    const n = p.idleConnections ?? 100_000
    const warm = spawn(p.idleWarmup ?? 0)
    const watchers = [...warm]
    try {
      let failed = await connect(warm)
      await sleep(500)
      const before = treeRssKiB(job.serverPid)
      const t0 = now()
      const measured = spawn(n)
      watchers.push(...measured)
      failed += await connect(measured)
      const connectMs = now() - t0
      await sleep(1500)
      const after = treeRssKiB(job.serverPid)
      const seqs: number[] = []
      const split: BroadcastSplit[] = []
      const serverPids = treePids(job.serverPid)
      const senders = leafPids(job.serverPid)
      const broadcast = async () => {
        const seq = task.issued
        seqs.push(seq)
        const everyone = Promise.all(watchers.map((w) => w.received(seq)))
        // The watchers wait while the servers send: on this machine their reading would take
        // the cores the servers send with. Arrival times are the kernel's, not their reads'.
        for (const w of watchers) w.pause()
        const measuring = measureBroadcast(serverPids, senders, [process.pid, ...watchers.map((w) => w.pid)])
        try {
          await post(task, 1)
          await Promise.race([measuring.serversIdle(), sleep(BROADCAST_WAIT_MS)])
        } finally {
          for (const w of watchers) w.resume()
        }
        if ((await Promise.race([everyone.then(() => true), sleep(BROADCAST_WAIT_MS).then(() => false)])) === false)
          note(`broadcast ${seq}: not every watcher had it after ${BROADCAST_WAIT_MS} ms`)
        split.push(measuring.stop())
        await sleep(p.broadcastGapMs ?? 1000)
      }
      // Not counted: a fresh server's first log compiles its ingest and delivery paths.
      await broadcast()
      startMeasuring()
      const t1 = now()
      for (let b = 0; b < (p.broadcasts ?? 1); b++) await broadcast()
      const reports: WatchersReport[] = await Promise.all(watchers.map((w) => w.report(seqs.filter((q) => task.acked.has(q)))))
      const lastMs: number[] = []
      for (const [i, seq] of seqs.entries()) {
        let last = 0
        for (const r of reports)
          for (const ms of r.latencies[seq] ?? []) {
            if (i > 0) {
              e2eHist.record(ms)
              deliveriesMeasured++
            }
            if (ms > last) last = ms
          }
        lastMs.push(last)
      }
      for (const r of reports) r.notes.forEach(note)
      const sum = (key: 'lost' | 'dup' | 'order' | 'malformed' | 'dropped' | 'unstamped') => reports.reduce((total, r) => total + r[key], 0)
      if (sum('unstamped')) note(`${sum('unstamped')} logs without the kernel's receive time: timed when read`)
      return finish(
        now() - t1,
        {
          acksPerS: Number.NaN,
          requestsPerS: Number.NaN,
          serverCpuMsPerLog: Number.NaN,
          serverThreadsMsPerLog: {},
          redisCpuMsPerLog: Number.NaN,
          serverRssKiB: treeRssKiB(job.serverPid),
          idle: idleMemory(n, before, after, connectMs),
          broadcast: {
            warmUpLastMs: lastMs[0]!,
            lastMs: lastMs.slice(1),
            split: split.slice(1),
            warmUpSplit: split[0]!,
            watcherProcesses: watchers.length,
            sourceAddresses: address,
          },
        },
        {
          lost: sum('lost'),
          dup: sum('dup'),
          order: sum('order'),
          malformed: sum('malformed'),
          droppedSockets: failed + sum('dropped'),
        },
      )
    } finally {
      await Promise.all(watchers.map((w) => w.close()))
    }
  }

  function validLogFrame(text: string, task: TaskState, id: string): boolean {
    try {
      const f = JSON.parse(text) as { type: unknown; data: Record<string, unknown>; timestamp: unknown }
      const d = f.data
      return (
        Object.keys(f).join(',') === 'type,data,timestamp' &&
        typeof f.timestamp === 'string' &&
        ISO.test(f.timestamp) &&
        Object.keys(d).join(',') === DATA_KEYS &&
        d.id === id &&
        LOG_ID.test(id) &&
        d.task_id === task.taskId &&
        d.subtask_id === task.subtaskId &&
        d.level === 'info' &&
        typeof d.message === 'string' &&
        JSON.stringify(d.metadata) === JSON.stringify(METADATA) &&
        typeof d.timestamp === 'string' &&
        ISO.test(d.timestamp)
      )
    } catch {
      return false
    }
  }
}

if (import.meta.main) {
  const job = JSON.parse(process.argv[2] ?? '{}') as LoadJob
  let result: LoadResult
  try {
    result = await runLoad(job)
  } catch (err) {
    result = { scenario: job.scenario, server: job.server, ok: false, error: (err as Error).message } as LoadResult
  }
  process.stdout.write(`${JSON.stringify(result)}\n`)
  process.exit(0)
}

/** What opening `n` idle sockets did to the server's memory (RSS in KiB before and after). */
function idleMemory(n: number, before: number, after: number, connectMs: number) {
  return { connections: n, rssBeforeKiB: before, rssAfterKiB: after, bytesPerConnection: ((after - before) * 1024) / n, connectMs }
}
