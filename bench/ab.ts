/**
 * `bun bench/ab.ts <A> <B> [rounds=4] [seconds=8] [batch=1]`: server CPU per log of two builds under the
 * same load at the same time. A and B are each a checkout directory holding `src/index.ts` (a
 * variant copied beside the repository, say) or `baseline` for `bench/baseline/server.ts`,
 * optionally followed by environment variables for that server: `.,LOG_LEVEL=warn .,LOG_LEVEL=info`
 * compares this checkout without and with its access log; `. .,WORKERS=2,DATABASE_URL=sqlite:///tmp/ab.sqlite`
 * one process against two workers (a server's CPU includes its workers').
 *
 * Sequential runs on a shared two-core machine drift by ±15% from one minute to the next, which
 * hides a 1 µs change in a 30 µs request. Here both servers run side by side against one private
 * redis-server, each fed by its own closed loop (16 POSTs in flight, one WebSocket subscriber),
 * so whatever slows the machine slows both: the ratio B/A of CPU per acknowledged log (from
 * /proc) repeats within 1-2%. The absolute numbers are higher than `bun run bench`'s, as the two
 * servers share the cores.
 *
 * Each round shows a server's CPU per log twice: the whole process (every thread: JIT, GC, the
 * archiver's thread) and its main thread alone (the event loop that serves requests; with
 * `WORKERS=N`, each worker's), and the p99 latency of its POSTs.
 *
 * `AB_LOAD=per-process` gives a server 16 POSTs in flight per process it runs (`WORKERS=2`: 32),
 * so that each of its processes is as busy as the single one's, as when each worker of a loaded
 * server has as much to do as one process had; by default each server gets 16, and two workers
 * share them.
 *
 * `AB_CPU=<n>` pins both servers (every thread of their processes) to CPU n, and the load
 * generator and Redis to the other CPUs: the two servers then compete for one core on equal
 * terms, where unpinned two workers may run on two cores while the single process has one.
 */
import { availableParallelism } from 'node:os'
import { JSON_HEADERS, postLogs } from './lib/closed-loop'
import { Histogram } from './lib/histogram'
import { treeCpuMs, treeMainThreadCpuMs, treePids } from './lib/proc'
import { startRedis, startServer, stop, type RunningServer } from './lib/processes'

const [a, b] = process.argv.slice(2, 4)
const rounds = Number(process.argv[4] ?? 4)
const seconds = Number(process.argv[5] ?? 8)
/** Logs per POST: 1 posts to /log, more to /logs as one batch. */
const batch = Number(process.argv[6] ?? 1)
if (!a || !b || !(rounds >= 1) || !(seconds > 0) || !Number.isInteger(batch) || batch < 1) {
  console.error('usage: bun bench/ab.ts <dir|baseline> <dir|baseline> [rounds=4] [seconds=8] [batch=1]')
  process.exit(2)
}
const WARMUP_MS = 5000
/** POSTs in flight per server (per process with AB_LOAD=per-process). */
const IN_FLIGHT = 16

interface Server extends RunningServer {
  logUrl: string
  /** POSTs kept in flight. */
  inFlight: number
  acked: number
  failed: number
  /** Each POST's time to its answer, in ms, this round. */
  latency: Histogram
}

/**
 * Waits until each of a server's `workers` processes has answered /health on a new connection
 * (`X-Tasklog-Worker`): the first to listen would otherwise get every keep-alive connection.
 */
async function allWorkersListening(base: string, workers: number): Promise<void> {
  const seen = new Set<string | null>()
  for (const deadline = performance.now() + 20_000; workers > 1 && seen.size < workers; ) {
    if (performance.now() > deadline) throw new Error(`${base}: only workers ${[...seen].join(', ')} of ${workers} answered`)
    seen.add((await fetch(`${base}/health`, { keepalive: false })).headers.get('x-tasklog-worker'))
  }
}

async function start(which: string, redisUrl: string): Promise<Server> {
  const [dir, ...settings] = which.split(',') as [string, ...string[]]
  const env = Object.fromEntries(settings.map((s) => [s.slice(0, s.indexOf('=')), s.slice(s.indexOf('=') + 1)]))
  const running =
    dir === 'baseline'
      ? await startServer({ name: which, entry: 'bench/baseline/server.ts', redisUrl, env })
      : await startServer({ name: which, cwd: dir, entry: 'src/index.ts', redisUrl, env })
  await allWorkersListening(running.base, Number(env.WORKERS ?? 1) || availableParallelism())
  const res = await fetch(`${running.base}/api/v1/tasks`, { method: 'POST', headers: JSON_HEADERS, body: '{"description":"ab"}' })
  const task = (await res.json()) as { task_id: string; subtasks: { subtask_id: string }[] }
  // One watcher, so that every log is also published.
  const ws = new WebSocket(`${running.base.replace('http', 'ws')}/api/v1/ws/tasks/${task.task_id}/logs`)
  await new Promise((resolve, reject) => {
    ws.onopen = resolve
    ws.onerror = reject
  })
  const processes = process.env.AB_LOAD === 'per-process' ? Number(env.WORKERS ?? 1) || availableParallelism() : 1
  return {
    ...running,
    logUrl: `${running.base}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`,
    inFlight: IN_FLIGHT * processes,
    acked: 0,
    failed: 0,
    latency: new Histogram(),
  }
}

interface Measured {
  /** µs of CPU per acknowledged log: the whole process, and its main thread. */
  total: number
  main: number
  /** Logs acknowledged per second. */
  rate: number
  /** POST latency, ms. */
  p99: number
}

const shown = (m: Measured) =>
  `${m.total.toFixed(2)} µs/log (main thread ${m.main.toFixed(2)}; ${m.rate.toFixed(0)}/s, p99 ${m.p99.toFixed(1)} ms)`

let running = true
function feed(server: Server): Promise<unknown> {
  return Promise.all(
    Array.from({ length: server.inFlight }, async () => {
      for (let seq = 0; running; seq += batch) {
        const sent = performance.now()
        const stored = await postLogs(server.logUrl, batch, seq)
        server.latency.record(performance.now() - sent)
        if (stored) server.acked += batch
        else server.failed++
      }
    }),
  )
}

const redis = await startRedis()
const [sa, sb] = [await start(a, redis.url), await start(b, redis.url)]
const pin = process.env.AB_CPU
if (pin !== undefined) {
  const others = Array.from({ length: availableParallelism() }, (_, cpu) => cpu).filter((cpu) => String(cpu) !== pin)
  const taskset = (cpus: string, pids: number[]) => {
    for (const pid of pids)
      if (Bun.spawnSync(['taskset', '-a', '-p', '-c', cpus, String(pid)]).exitCode !== 0) throw new Error(`cannot pin ${pid} to CPU ${cpus}`)
  }
  taskset(pin, [...treePids(sa.proc.pid), ...treePids(sb.proc.pid)])
  taskset(others.join(','), [process.pid, redis.server.pid])
}
const feeding = [feed(sa), feed(sb)]
await Bun.sleep(WARMUP_MS)
/** The CPU time of a server's processes, and of the main threads among them, in ms. */
const cpu = (s: Server) => ({ total: treeCpuMs(s.proc.pid), main: treeMainThreadCpuMs(s.proc.pid) })
const ratios = { total: [] as number[], main: [] as number[] }
for (let r = 1; r <= rounds; r++) {
  const before = [cpu(sa), cpu(sb)] as const
  const acked = [sa.acked, sb.acked] as const
  sa.latency = new Histogram()
  sb.latency = new Histogram()
  await Bun.sleep(seconds * 1000)
  const [ua, ub] = [sa, sb].map((s, i) => {
    const now = cpu(s)
    const logs = s.acked - acked[i]!
    return {
      total: ((now.total - before[i]!.total) * 1000) / logs,
      main: ((now.main - before[i]!.main) * 1000) / logs,
      rate: logs / seconds,
      p99: s.latency.quantile(0.99),
    }
  }) as [Measured, Measured]
  ratios.total.push(ub.total / ua.total)
  ratios.main.push(ub.main / ua.main)
  console.log(
    `round ${r}: A ${shown(ua)}  B ${shown(ub)}  ` +
      `B/A ${(ub.total / ua.total).toFixed(3)} (main thread ${(ub.main / ua.main).toFixed(3)}, p99 ${(ub.p99 / ua.p99).toFixed(2)})`,
  )
}
running = false
await Promise.all(feeding)
const median = (xs: number[]) => xs.toSorted((x, y) => x - y)[Math.floor(xs.length / 2)]!.toFixed(3)
const failed = sa.failed + sb.failed
console.log(
  `median B/A ${median(ratios.total)}, main thread ${median(ratios.main)}${failed ? ` (${failed} POSTs failed)` : ''}`,
)
await Promise.all([stop(sa.proc), stop(sb.proc)])
await redis.client.close()
await redis.server.stop()
process.exit(failed ? 1 : 0)
