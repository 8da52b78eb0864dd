/**
 * `bun bench/archive-discovery.ts [keys=100000] [pending=1000] [rounds=15]`: what the archive's
 * look for work costs on a 3-master Redis Cluster, where the tasks with logs to archive wait in
 * one set per slot, which a script on each master reads for the slots it serves. Each master
 * holds about `keys` other keys (which the look should not depend on) and `pending` tasks wait over
 * the slots. Per round: one `pending(1000)` (the archiver's, once per round) and one `backlog()`
 * (each /metrics and /ready), each timed, and the masters' CPU over both (from /proc, in 10 ms
 * ticks: a mean over the rounds, net of what they spend idle over as long). One Redis with the
 * same keys and tasks runs beside it, interleaved, for comparison (one set).
 */
import { RedisArchiveSource } from '../src/logs/redis/archive-source'
import { createRedisConnection, type RedisConnection } from '../src/logs/redis/connection'
import { RedisHistory } from '../src/logs/redis/history'
import { testLog } from '../tests/support/logs'
import { startRedisCluster } from '../tests/support/redis-cluster'
import { startRedis } from '../tests/support/redis-server'
import { cpuMs } from './lib/proc'

const [keys, pendingTasks, rounds] = [100_000, 1000, 15].map((fallback, i) => Number(process.argv[2 + i] ?? fallback)) as [
  number,
  number,
  number,
]
if (!(keys >= 0) || !(pendingTasks >= 1) || !(rounds >= 1)) {
  console.error('usage: bun bench/archive-discovery.ts [keys=100000] [pending=1000] [rounds=15]')
  process.exit(2)
}

/** Keys filled per script call, each call in the slot of its own hash tag. */
const FILL_PER_CALL = 50_000

interface Side {
  name: string
  pids: number[]
  client: RedisConnection
  source: RedisArchiveSource
  history: RedisHistory
  stop(): Promise<void>
}

async function side(name: string, url: string, pids: number[], stop: () => Promise<void>): Promise<Side> {
  // RedisHistory.connect connects the client.
  const client = createRedisConnection(url, 10_000)
  const history = await RedisHistory.connect({ url, client, ttlSeconds: 3600, maxPerTask: 100, archive: true })
  const source = new RedisArchiveSource({ client, instanceId: name, ttlSeconds: 3600, leaseMs: 5000, timeoutMs: 10_000 })
  // Other keys, `keys` per master on average, in a few slots.
  const total = keys * pids.length
  for (let filled = 0, call = 0; filled < total; call++) {
    const n = Math.min(FILL_PER_CALL, total - filled)
    const prefix = `{fill-${call}}:`
    const fill = "for i = 1, tonumber(ARGV[1]) do redis.call('SET', KEYS[1] .. i, 'x') end"
    await client.send(prefix, ['EVAL', fill, '1', prefix, String(n)])
    filled += n
  }
  for (let i = 0; i < pendingTasks; i++) {
    const task = crypto.randomUUID()
    await history.append(task, [testLog(task, task, 'info', 'waiting')])
  }
  return { name, pids, client, source, history, stop }
}

const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)]!
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`

const cluster = await startRedisCluster({ masters: 3 })
const single = await startRedis()
const sides = [
  await side('one Redis', single.url, [single.pid], () => single.stop()),
  await side('3-master cluster', cluster.url, (await cluster.masters()).map((m) => m.pid), () => cluster.stop()),
]
try {
  const results = new Map(
    sides.map((s) => [s.name, { pending: [] as number[], backlog: [] as number[], redisCpu: 0, idleCpu: 0 }]),
  )
  for (let round = 0; round < rounds; round++) {
    for (const s of round % 2 ? sides.toReversed() : sides) {
      const r = results.get(s.name)!
      const cpu = () => s.pids.reduce((sum, pid) => sum + cpuMs(pid), 0)
      const cpu0 = cpu()
      const t0 = performance.now()
      const found = await s.source.pending(1000)
      const t1 = performance.now()
      const { tasks } = await s.source.backlog()
      const t2 = performance.now()
      r.pending.push(t1 - t0)
      r.backlog.push(t2 - t1)
      r.redisCpu += cpu() - cpu0
      // What the servers spend idle (cron; on a cluster, its bus) over as long, to take off.
      const idle0 = cpu()
      await Bun.sleep(t2 - t0)
      r.idleCpu += cpu() - idle0
      if (found.length !== Math.min(1000, pendingTasks) || tasks !== pendingTasks) {
        throw new Error(`${s.name}: ${found.length} found, ${tasks} waiting`)
      }
    }
  }
  console.log(`${keys} other keys per master, ${pendingTasks} tasks waiting, ${rounds} rounds (wall time: median, min–max)`)
  for (const [name, r] of results) {
    console.log(
      `${name.padEnd(17)} pending(1000) ${median(r.pending).toFixed(1)} ms (${spread(r.pending)})` +
        `  backlog() ${median(r.backlog).toFixed(1)} ms (${spread(r.backlog)})` +
        `  Redis CPU for both, all masters, net of idle: ${((r.redisCpu - r.idleCpu) / rounds).toFixed(1)} ms a round`,
    )
  }
} finally {
  for (const s of sides) {
    await s.history.close()
    await s.stop()
  }
}
