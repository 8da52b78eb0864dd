/**
 * What the append script costs Redis per call, by what a request asks of it: Redis' own
 * `usec_per_call` for EVALSHA (INFO commandstats) over many appends to a private redis-server,
 * for one log and for a batch of 100, without and with the rate limit, without and with an
 * idempotency key; the redis-server's own CPU time per log (/proc/<pid>/schedstat: parsing,
 * replies and the published messages' writes included); and where the script's time goes, the
 * `usec_per_call` of the commands it calls. The last rows are the plain-MULTI floor
 * (bench/baseline/server.ts BASELINE_STORE=multi: `XADD … MAXLEN ~` per log and `EXPIRE` in
 * one MULTI) for the same logs. Not a load test: appends go 32 at a time (8 for batches) from
 * one connection, to 100 tasks whose channels one other connection follows, as an instance
 * with subscribers does; the streams stay below their cap. The cases take turns for `ROUNDS`
 * rounds and each reports its median, since a shared machine makes single runs vary.
 *
 *   bun run bench/append-script-cost.ts [single-log appends per case and round, default 20000]
 */
import { readFileSync } from 'node:fs'
import { createClient } from 'redis'
import { encodeLog } from '../src/logs/encode'
import { RedisHistory } from '../src/logs/redis/history'
import { logKey } from '../src/logs/redis/keys'
import { startRedis } from '../tests/support/redis-server'

const APPENDS = Number(process.argv[2] ?? 20_000)
const IN_FLIGHT = 32
const ROUNDS = 9
const silent = { warn() {}, info() {} }

const redis = await startRedis()
const stats = createClient({ url: redis.url })
await stats.connect()
const subscriber = stats.duplicate()
await subscriber.connect()

/** The redis-server's CPU time so far, in µs (its one thread that does the work). */
const redisCpuUs = () => Number(readFileSync(`/proc/${redis.pid}/schedstat`, 'utf8').split(' ')[0]) / 1000

/** The commands whose `usec_per_call` the table shows: the script's and the floor's. */
const COMMANDS = ['evalsha', 'xadd', 'publish', 'get', 'set', 'exec', 'expire'] as const
type Usec = Record<(typeof COMMANDS)[number], number>

/** Each command's microseconds per call in Redis while `run` appends, and Redis' CPU time meanwhile. */
async function measureRun(run: () => Promise<void>): Promise<{ usec: Usec; cpuUs: number }> {
  await stats.sendCommand(['CONFIG', 'RESETSTAT'])
  const cpu0 = redisCpuUs()
  await run()
  const cpuUs = redisCpuUs() - cpu0
  const info = String(await stats.sendCommand(['INFO', 'commandstats']))
  const usec = Object.fromEntries(
    COMMANDS.map((c) => [c, Number(new RegExp(`cmdstat_${c}:calls=\\d+,usec=\\d+,usec_per_call=([\\d.]+)`).exec(info)?.[1] ?? Number.NaN)]),
  ) as Usec
  return { usec, cpuUs }
}

const log = (taskId: string, i: number) =>
  encodeLog({
    task_id: taskId,
    subtask_id: taskId,
    level: 'info',
    message: `step ${i} of the job finished in 12 ms`,
    metadata: { step: i },
    worker_id: 'worker-1',
    worker_name: 'worker one',
    timestamp: new Date().toISOString(),
  })

interface Case {
  batch: number
  /** The plain-MULTI floor instead of the append script. */
  floor: boolean
  rateLimited: boolean
  keyed: boolean
  samples: { usec: Usec; cpuUs: number }[]
}
const cases: Case[] = []
for (const batch of [1, 100]) {
  for (const rateLimited of [false, true])
    for (const keyed of [false, true]) cases.push({ batch, floor: false, rateLimited, keyed, samples: [] })
}
for (const batch of [1, 100]) cases.push({ batch, floor: true, rateLimited: false, keyed: false, samples: [] })

/** What the plain-MULTI floor sends for one append. */
async function floorAppend(taskId: string, logs: { level: string; body: string }[]): Promise<void> {
  const key = logKey(taskId)
  const multi = stats.multi()
  for (const l of logs) multi.addCommand(['XADD', key, 'MAXLEN', '~', '1000000', '*', 'l', l.level, 'd', l.body])
  multi.addCommand(['EXPIRE', key, '3600'])
  await multi.exec()
}

async function measure(c: Case): Promise<{ usec: Usec; cpuUs: number }> {
  const tasks = Array.from({ length: 100 }, () => Bun.randomUUIDv7())
  const channels = tasks.map(logKey)
  await subscriber.subscribe(channels, () => {})
  const history = await RedisHistory.connect({
    url: redis.url,
    ttlSeconds: 3600,
    maxPerTask: 1_000_000,
    logger: silent,
    follower: { instanceId: crypto.randomUUID(), follows: () => true },
    // High enough never to refuse, so that only its cost shows.
    rateLimit: c.rateLimited ? { perSecond: 100_000_000, burst: 1_000_000_000 } : undefined,
  })
  const logs = tasks.map((task) => Array.from({ length: c.batch }, (_, i) => log(task, i)))
  const appends = c.batch === 1 ? APPENDS : Math.ceil(APPENDS / 10)
  let n = 0
  const result = await measureRun(async () => {
    const lane = async () => {
      while (n < appends) {
        const i = n++
        const task = i % tasks.length
        const options = c.keyed ? { idempotency: { key: `request-${i}`, fingerprint: 'f'.repeat(44) } } : undefined
        if (c.floor) await floorAppend(tasks[task]!, logs[task]!)
        else await history.append(tasks[task]!, logs[task]!, options)
      }
    }
    await Promise.all(Array.from({ length: c.batch === 1 ? IN_FLIGHT : IN_FLIGHT / 4 }, lane))
  })
  await history.close()
  await subscriber.unsubscribe(channels)
  await stats.sendCommand(['FLUSHALL'])
  return { usec: result.usec, cpuUs: result.cpuUs / appends }
}

for (let round = 0; round < ROUNDS; round++) for (const c of cases) c.samples.push(await measure(c))
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const cell = (x: number) => (Number.isNaN(x) ? '–' : x.toFixed(2))
const inner = COMMANDS.filter((x) => x !== 'evalsha')
console.log(
  `| logs per append | append | rate limit | Idempotency-Key | Redis CPU µs per log (median) | EVALSHA or EXEC µs per append | ${inner.join(' | ')} µs per call |`,
)
console.log(`| --- | --- | --- | --- | --- | --- | ${inner.map(() => '---').join(' | ')} |`)
for (const c of cases) {
  const m = (f: (s: { usec: Usec; cpuUs: number }) => number) => median(c.samples.map(f))
  console.log(
    `| ${c.batch} | ${c.floor ? 'plain MULTI' : 'script'} | ${c.rateLimited ? 'on' : 'off'} | ${c.keyed ? 'yes' : 'no'} | ` +
      `${(m((s) => s.cpuUs) / c.batch).toFixed(3)} | ${cell(m((s) => (c.floor ? s.usec.exec : s.usec.evalsha)))} | ` +
      `${inner.map((x) => cell(m((s) => s.usec[x]))).join(' | ')} |`,
  )
}
await subscriber.close()
await stats.close()
await redis.stop()
