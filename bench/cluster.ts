/**
 * `bun bench/cluster.ts [rounds=4] [seconds=8] [tasks=12] [batch=1]`: a Redis Cluster of three
 * masters against one Redis, side by side in one run. Two servers of this checkout run at once,
 * one on a private redis-server, one on a private 3-master cluster, each fed the same way (16
 * POSTs in flight over `tasks` tasks, one WebSocket watcher per task, so every log is also
 * published). Per round it prints each side's acknowledged logs per second, the server's CPU per
 * log, and Redis' CPU per log: the single server's, and each master's per log of the tasks it
 * serves (from /proc, like bench/lib/proc.ts reads a server's). Redis' CPU is net of what each
 * redis-server spends idle (cron, and on a cluster its bus), measured before the load starts:
 * at a few thousand logs per second that would otherwise be a good part of the figure.
 */
import { logKey } from '../src/logs/redis/keys'
import { startRedisCluster } from '../tests/support/redis-cluster'
import { JSON_HEADERS, postLogs } from './lib/closed-loop'
import { cpuMs, treeCpuMs } from './lib/proc'
import { startRedis, startServer, stop, type RunningServer } from './lib/processes'

const [rounds, seconds, taskCount, batch] = [4, 8, 12, 1].map((fallback, i) => Number(process.argv[2 + i] ?? fallback)) as [
  number,
  number,
  number,
  number,
]
if (!(rounds >= 1) || !(seconds > 0) || !(taskCount >= 1) || !Number.isInteger(batch) || batch < 1) {
  console.error('usage: bun bench/cluster.ts [rounds=4] [seconds=8] [tasks=12] [batch=1]')
  process.exit(2)
}
const WARMUP_MS = 5000
const IN_FLIGHT = 16

interface Side extends RunningServer {
  name: string
  /** Per task: its log URL, and the acknowledged logs so far. */
  tasks: { id: string; logUrl: string; acked: number }[]
  failed: number
  sockets: WebSocket[]
}

async function start(name: string, redisUrl: string): Promise<Side> {
  const running = await startServer({ name, entry: 'src/index.ts', redisUrl })
  const tasks: Side['tasks'] = []
  const sockets: WebSocket[] = []
  for (let i = 0; i < taskCount; i++) {
    const res = await fetch(`${running.base}/api/v1/tasks`, { method: 'POST', headers: JSON_HEADERS, body: '{"description":"cluster"}' })
    const task = (await res.json()) as { task_id: string; subtasks: { subtask_id: string }[] }
    const ws = new WebSocket(`${running.base.replace('http', 'ws')}/api/v1/ws/tasks/${task.task_id}/logs`)
    await new Promise((resolve, reject) => {
      ws.onopen = resolve
      ws.onerror = reject
    })
    sockets.push(ws)
    tasks.push({ id: task.task_id, logUrl: `${running.base}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`, acked: 0 })
  }
  return { ...running, name, tasks, failed: 0, sockets }
}

let feeding = true
function feed(side: Side): Promise<unknown> {
  let next = 0
  return Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      for (let seq = 0; feeding; seq += batch) {
        const task = side.tasks[next++ % side.tasks.length]!
        if (await postLogs(task.logUrl, batch, seq)) task.acked += batch
        else side.failed++
      }
    }),
  )
}

const fmt = (n: number, digits = 2) => n.toFixed(digits)
const redis = await startRedis()
const cluster = await startRedisCluster({ masters: 3 })
const single = await start('one redis', redis.url)
const clustered = await start('3-master cluster', cluster.url)
/** The master of each of the cluster side's tasks. */
const masterOf = new Map<string, number>()
for (const task of clustered.tasks) masterOf.set(task.id, (await cluster.masterOf(logKey(task.id))).pid)
const masters = await cluster.masters()
console.log(
  `${taskCount} tasks; on the cluster per master: ${masters.map((m) => clustered.tasks.filter((t) => masterOf.get(t.id) === m.pid).length).join(' / ')}`,
)

/** CPU ms per second each redis-server spends with connected servers and watchers but no load. */
const IDLE_MS = 3000
const redisPids = [redis.server.pid, ...masters.map((m) => m.pid)]
const idle0 = redisPids.map(cpuMs)
await Bun.sleep(IDLE_MS)
const idleRate = new Map(redisPids.map((pid, i) => [pid, (cpuMs(pid) - idle0[i]!) / (IDLE_MS / 1000)]))
console.log(`idle redis CPU, ms/s: one redis ${fmt(idleRate.get(redis.server.pid)!)}, masters ${masters.map((m) => fmt(idleRate.get(m.pid)!)).join(' / ')}`)
/** A redis-server's CPU ms over `seconds` of load, net of its idle rate. */
const busyMs = (pid: number, cpu0: number) => cpuMs(pid) - cpu0 - idleRate.get(pid)! * seconds

const running = [feed(single), feed(clustered)]
await Bun.sleep(WARMUP_MS)
const acked = (side: Side, pid?: number) =>
  side.tasks.filter((t) => pid === undefined || masterOf.get(t.id) === pid).reduce((sum, t) => sum + t.acked, 0)
for (let r = 1; r <= rounds; r++) {
  const before = {
    single: { acked: acked(single), cpu: treeCpuMs(single.proc.pid), redis: cpuMs(redis.server.pid) },
    cluster: { acked: acked(clustered), cpu: treeCpuMs(clustered.proc.pid) },
    masters: masters.map((m) => ({ acked: acked(clustered, m.pid), cpu: cpuMs(m.pid) })),
  }
  await Bun.sleep(seconds * 1000)
  const n1 = acked(single) - before.single.acked
  const n3 = acked(clustered) - before.cluster.acked
  const redisUs = (busyMs(redis.server.pid, before.single.redis) * 1000) / n1
  const perMaster = masters.map((m, i) => {
    const n = acked(clustered, m.pid) - before.masters[i]!.acked
    const cpu = busyMs(m.pid, before.masters[i]!.cpu)
    return { us: (cpu * 1000) / n, cpu }
  })
  const clusterRedisUs = (perMaster.reduce((sum, m) => sum + m.cpu, 0) * 1000) / n3
  console.log(
    `round ${r}: one redis ${fmt(n1 / seconds, 0)} logs/s, server ${fmt(((treeCpuMs(single.proc.pid) - before.single.cpu) * 1000) / n1)} µs/log, ` +
      `redis ${fmt(redisUs)} µs/log | cluster ${fmt(n3 / seconds, 0)} logs/s, server ${fmt(((treeCpuMs(clustered.proc.pid) - before.cluster.cpu) * 1000) / n3)} µs/log, ` +
      `masters ${perMaster.map((m) => `${fmt(m.us)}`).join(' / ')} µs/log of their tasks (all masters ${fmt(clusterRedisUs)} µs/log) | ` +
      `cluster/one: ingest ${fmt(n3 / n1, 3)}, redis CPU per log ${fmt(clusterRedisUs / redisUs, 3)}`,
  )
}
feeding = false
await Promise.all(running)
const failed = single.failed + clustered.failed
if (failed) console.log(`${failed} POSTs failed`)
for (const side of [single, clustered]) for (const ws of side.sockets) ws.close()
await Promise.all([stop(single.proc), stop(clustered.proc)])
await redis.client.close()
await redis.server.stop()
await cluster.stop()
process.exit(failed ? 1 : 0)
