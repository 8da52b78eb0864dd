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
 */
import { treeCpuMs } from './lib/proc'
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
const IN_FLIGHT = 16
const JSON_HEADERS = { 'content-type': 'application/json' }
const METADATA = { host: 'bench-worker-1', attempt: 1, tags: ['bench', 'load'] }

interface Server extends RunningServer {
  logUrl: string
  acked: number
  failed: number
}

async function start(which: string, redisUrl: string): Promise<Server> {
  const [dir, ...settings] = which.split(',') as [string, ...string[]]
  const env = Object.fromEntries(settings.map((s) => [s.slice(0, s.indexOf('=')), s.slice(s.indexOf('=') + 1)]))
  const running =
    dir === 'baseline'
      ? await startServer({ name: which, entry: 'bench/baseline/server.ts', redisUrl, env })
      : await startServer({ name: which, cwd: dir, entry: 'src/index.ts', redisUrl, env })
  const res = await fetch(`${running.base}/api/v1/tasks`, { method: 'POST', headers: JSON_HEADERS, body: '{"description":"ab"}' })
  const task = (await res.json()) as { task_id: string; subtasks: { subtask_id: string }[] }
  // One watcher, so that every log is also published.
  const ws = new WebSocket(`${running.base.replace('http', 'ws')}/api/v1/ws/tasks/${task.task_id}/logs`)
  await new Promise((resolve, reject) => {
    ws.onopen = resolve
    ws.onerror = reject
  })
  return { ...running, logUrl: `${running.base}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`, acked: 0, failed: 0 }
}

let running = true
function feed(server: Server): Promise<unknown> {
  return Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      for (let seq = 0; running; seq += batch) {
        const logs = Array.from({ length: batch }, (_, i) => ({
          level: 'info',
          message: `bench#${seq + i}#${performance.now().toFixed(3)}# step output: processed batch of records, all checks passed`,
          metadata: METADATA,
        }))
        const res = await fetch(batch === 1 ? server.logUrl : `${server.logUrl}s`, {
          method: 'POST',
          headers: JSON_HEADERS,
          body: JSON.stringify(batch === 1 ? logs[0] : { logs }),
        })
        await res.arrayBuffer()
        if (res.status === 201) server.acked += batch
        else server.failed++
      }
    }),
  )
}

const redis = await startRedis()
const [sa, sb] = [await start(a, redis.url), await start(b, redis.url)]
const feeding = [feed(sa), feed(sb)]
await Bun.sleep(WARMUP_MS)
const ratios: number[] = []
const perLog = (s: Server, cpu0: number, acked0: number) => ((treeCpuMs(s.proc.pid) - cpu0) * 1000) / (s.acked - acked0)
for (let r = 1; r <= rounds; r++) {
  const [ca, cb, na, nb] = [treeCpuMs(sa.proc.pid), treeCpuMs(sb.proc.pid), sa.acked, sb.acked]
  await Bun.sleep(seconds * 1000)
  const [ua, ub] = [perLog(sa, ca, na), perLog(sb, cb, nb)]
  ratios.push(ub / ua)
  console.log(
    `round ${r}: A ${ua.toFixed(2)} µs/log (${((sa.acked - na) / seconds).toFixed(0)}/s)  ` +
      `B ${ub.toFixed(2)} µs/log (${((sb.acked - nb) / seconds).toFixed(0)}/s)  B/A ${(ub / ua).toFixed(3)}`,
  )
}
running = false
await Promise.all(feeding)
ratios.sort((x, y) => x - y)
const failed = sa.failed + sb.failed
console.log(`median B/A ${ratios[Math.floor(ratios.length / 2)]!.toFixed(3)}${failed ? ` (${failed} POSTs failed)` : ''}`)
await Promise.all([stop(sa.proc), stop(sb.proc)])
await redis.client.close()
await redis.server.stop()
process.exit(failed ? 1 : 0)
