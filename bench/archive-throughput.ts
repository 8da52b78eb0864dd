/**
 * The archiver's throughput and lag on PostgreSQL at the ingest rate of scenario (d): `CONCURRENCY`
 * clients (8) post 100-line batches to `TASKS` tasks (1, as in (d)) as fast as they can for
 * `SECONDS`, with ARCHIVE_DAYS=1, while /metrics is sampled every 250 ms. Prints the rate
 * ingested and the rate archived while ingesting, the archive's lag while ingesting (median and
 * largest), how long it took to catch up once ingest stopped, and the server's and Redis' CPU per log
 * (ingest and archive together, until caught up).
 * An optional checkout directory runs that build instead of this one.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bun bench/archive-throughput.ts [dir]
 */
import { treeCpuMs } from './lib/proc'
import { startRedis, startServer, stop } from './lib/processes'

const SECONDS = Number(process.env.DURATION_SECONDS ?? 20)
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8)
const TASKS = Number(process.env.TASKS ?? 1)
const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const cwd = process.argv[2]

const redis = await startRedis()
const server = await startServer({
  name: 'tasklog',
  ...(cwd && { cwd }),
  entry: 'src/index.ts',
  redisUrl: redis.url,
  env: { DATABASE_URL: databaseUrl, ARCHIVE_DAYS: '1', LOG_LEVEL: 'warn', LOG_HISTORY_MAX: '1000000' },
})

const post = (path: string, body: unknown) =>
  fetch(`${server.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

async function archiveFigures(): Promise<{ lag: number; pending: number; written: number }> {
  const text = await (await fetch(`${server.base}/metrics`)).text()
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  return {
    lag: value('tasklog_archive_lag_seconds'),
    pending: value('tasklog_archive_pending_tasks'),
    written: value('tasklog_archive_rows_written_total'),
  }
}

const subtasks: string[] = []
for (let i = 0; i < TASKS; i++) {
  const task = (await (
    await post('/api/v1/tasks', { description: `archive bench ${i}`, subtasks: [{ description: 's' }] })
  ).json()) as {
    subtasks: { subtask_id: string }[]
  }
  subtasks.push(task.subtasks[0]!.subtask_id)
}
const batch = JSON.stringify({
  logs: Array.from({ length: 100 }, (_, i) => ({
    level: 'info',
    message: `line ${i} of a build step, about eighty bytes of text long`,
  })),
})

let ingested = 0
const lags: number[] = []
const written0 = (await archiveFigures()).written
const cpu0 = treeCpuMs(server.proc.pid)
const redisCpu0 = treeCpuMs(redis.server.pid)
const start = performance.now()
const end = start + SECONDS * 1000
const sampler = setInterval(async () => {
  lags.push((await archiveFigures()).lag)
}, 250)
await Promise.all(
  Array.from({ length: CONCURRENCY }, async (_, c) => {
    for (let n = 0; performance.now() < end; n++) {
      const subtask = subtasks[(c + n) % subtasks.length]!
      const res = await fetch(`${server.base}/api/v1/subtasks/${subtask}/logs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: batch,
      })
      if (res.status === 201) ingested += 100
      await res.arrayBuffer()
    }
  }),
)
clearInterval(sampler)
const ingestSeconds = (performance.now() - start) / 1000
const archivedWhileIngesting = (await archiveFigures()).written - written0
let maxLag = Math.max(0, ...lags)
for (;;) {
  const figures = await archiveFigures()
  maxLag = Math.max(maxLag, figures.lag)
  // Nothing left to archive: every log was, or left history (LOG_HISTORY_MAX) before it was.
  if (figures.pending === 0) break
  await Bun.sleep(100)
}
const catchUpSeconds = (performance.now() - start) / 1000 - ingestSeconds
const lost = ingested - ((await archiveFigures()).written - written0)
const cpuMs = treeCpuMs(server.proc.pid) - cpu0
const redisCpuMs = treeCpuMs(redis.server.pid) - redisCpu0
lags.sort((a, b) => a - b)
const perSecond = (n: number) => Math.round(n / ingestSeconds).toLocaleString('en')
console.log(
  `ingested ${perSecond(ingested)} logs/s, archived ${perSecond(archivedWhileIngesting)} logs/s while ingesting (${SECONDS} s); ` +
    `lag median ${(lags[Math.floor(lags.length / 2)] ?? 0).toFixed(2)} s, max ${maxLag.toFixed(2)} s; ` +
    `caught up ${catchUpSeconds.toFixed(1)} s after ingest stopped; CPU per log: server ${((cpuMs * 1000) / ingested).toFixed(2)} µs, ` +
    `Redis ${((redisCpuMs * 1000) / ingested).toFixed(2)} µs` +
    (lost > 0 ? `; ${lost.toLocaleString('en')} logs left history before they were archived (LOG_HISTORY_MAX)` : ''),
)
await stop(server.proc)
await redis.server.stop()
process.exit(0)
