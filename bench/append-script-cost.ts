/**
 * What the append script costs Redis per call, by what a request asks of it: Redis' own
 * `usec_per_call` for EVALSHA (INFO commandstats) over many appends to a private redis-server,
 * for one log and for a batch of 100, without and with the rate limit, without and with an
 * idempotency key. Not a load test: appends go 32 at a time from one connection, to 100 tasks
 * whose streams stay below their cap; the cases take turns for `ROUNDS` rounds and each reports
 * its median, since a shared machine makes single runs vary.
 *
 *   bun run bench/append-script-cost.ts [single-log appends per case and round, default 20000]
 */
import { createClient } from 'redis'
import { encodeLog } from '../src/logs/encode'
import { RedisHistory } from '../src/logs/redis/history'
import { startRedis } from '../tests/support/redis-server'

const APPENDS = Number(process.argv[2] ?? 20_000)
const IN_FLIGHT = 32
const ROUNDS = 9
const silent = { warn() {}, info() {} }

const redis = await startRedis()
const stats = createClient({ url: redis.url })
await stats.connect()

/** EVALSHA's microseconds per call in Redis while `run` appends. */
async function usecPerCall(run: () => Promise<void>): Promise<number> {
  await stats.sendCommand(['CONFIG', 'RESETSTAT'])
  await run()
  const info = String(await stats.sendCommand(['INFO', 'commandstats']))
  return Number(/cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([\d.]+)/.exec(info)?.[1])
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
  rateLimited: boolean
  keyed: boolean
  samples: number[]
}
const cases: Case[] = []
for (const batch of [1, 100])
  for (const rateLimited of [false, true])
    for (const keyed of [false, true]) cases.push({ batch, rateLimited, keyed, samples: [] })

async function measure(c: Case): Promise<number> {
  const history = await RedisHistory.connect({
    url: redis.url,
    ttlSeconds: 3600,
    maxPerTask: 1_000_000,
    logger: silent,
    // High enough never to refuse, so that only its cost shows.
    rateLimit: c.rateLimited ? { perSecond: 100_000_000, burst: 1_000_000_000 } : undefined,
  })
  const tasks = Array.from({ length: 100 }, () => Bun.randomUUIDv7())
  const logs = tasks.map((task) => Array.from({ length: c.batch }, (_, i) => log(task, i)))
  const appends = c.batch === 1 ? APPENDS : Math.ceil(APPENDS / 10)
  let n = 0
  const usec = await usecPerCall(async () => {
    const lane = async () => {
      while (n < appends) {
        const i = n++
        const task = i % tasks.length
        const options = c.keyed ? { idempotency: { key: `request-${i}`, fingerprint: 'f'.repeat(44) } } : undefined
        await history.append(tasks[task]!, logs[task]!, options)
      }
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane))
  })
  await history.close()
  await stats.sendCommand(['FLUSHALL'])
  return usec
}

for (let round = 0; round < ROUNDS; round++) for (const c of cases) c.samples.push(await measure(c))
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log('| logs per append | rate limit | Idempotency-Key | Redis usec per append (median) | usec per log |')
console.log('| --- | --- | --- | --- | --- |')
for (const c of cases) {
  const usec = median(c.samples)
  console.log(
    `| ${c.batch} | ${c.rateLimited ? 'on' : 'off'} | ${c.keyed ? 'yes' : 'no'} | ${usec.toFixed(2)} | ${(usec / c.batch).toFixed(3)} |`,
  )
}
await stats.close()
await redis.stop()
