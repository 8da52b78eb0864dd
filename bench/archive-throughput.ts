/**
 * The archiver's throughput on PostgreSQL at the ingest rate of scenario (d): 100-line batches
 * posted as fast as `CONCURRENCY` clients can for `SECONDS`, with ARCHIVE_DAYS=1, while /metrics
 * is sampled for the archive's lag. Prints logs ingested and archived per second and the largest
 * lag seen, once the archive has caught up.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bun bench/archive-throughput.ts
 */
import { startRedis, startServer, stop } from './lib/processes'

const SECONDS = Number(process.env.DURATION_SECONDS ?? 20)
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8)
const TASKS = Number(process.env.TASKS ?? 8)
const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const redis = await startRedis()
const server = await startServer({
  name: 'tasklog',
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
let maxLag = 0
const start = performance.now()
const end = start + SECONDS * 1000
const sampler = setInterval(async () => {
  maxLag = Math.max(maxLag, (await archiveFigures()).lag)
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
const ingestSeconds = (performance.now() - start) / 1000
for (;;) {
  const figures = await archiveFigures()
  maxLag = Math.max(maxLag, figures.lag)
  if (figures.pending === 0 && figures.written >= ingested) break
  await Bun.sleep(100)
}
clearInterval(sampler)
const archiveSeconds = (performance.now() - start) / 1000
console.log(
  `ingested ${ingested} logs in ${ingestSeconds.toFixed(1)} s (${Math.round(ingested / ingestSeconds)}/s); ` +
    `archived all of them in ${archiveSeconds.toFixed(1)} s (${Math.round(ingested / archiveSeconds)}/s); max lag ${maxLag.toFixed(2)} s`,
)
await stop(server.proc)
await redis.server.stop()
process.exit(0)
