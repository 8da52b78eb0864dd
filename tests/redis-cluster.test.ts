/**
 * What only a Redis Cluster shows: tasks spread over its masters, each task's keys on the master
 * serving its slot; a master that dies and is replaced by its replica (watchers resume without
 * losing a log); the archive's set of pending tasks kept per slot, beside each task, and every
 * master's tasks archived. The suites that run on every deployment (tests/support/redis-deployments.ts)
 * cover delivery, history, replay, several instances and the archive's core.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { sdkWatcher } from './support/sdk-watcher'
import { compareLogIds, logIdAfter } from '../clients/ts/src/log-id'
import { Database } from 'bun:sqlite'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectRedisBackend } from '../src/logs/redis'
import { createRedisConnection } from '../src/logs/redis/connection'
import { RedisHistory } from '../src/logs/redis/history'
import { ARCHIVE_PENDING_KEY, archivePendingCopy, archivePendingKey, logKey, newestIdKey } from '../src/logs/redis/keys'
import { keySlot, SLOTS } from '../src/logs/redis/slots'
import { StoreUnavailableError } from '../src/store-errors'
import { testLog } from './support/logs'
import { startRedisCluster, type ClusterNode, type RedisCluster } from './support/redis-cluster'
import { createTask, json, post, sendLog, startInstances, startServer, type TestServer } from './support/server'

const eventually = async (check: () => Promise<boolean> | boolean, tries = 200) => {
  for (let i = 0; i < tries && !(await check()); i++) await Bun.sleep(50)
  return check()
}

describe('a 3-master cluster', () => {
  let cluster: RedisCluster
  let a: TestServer
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
    ;[a] = (await startInstances(cluster.url, 1)) as [TestServer]
  })
  afterAll(async () => {
    await a?.stop()
    await cluster?.stop()
  })

  test("tasks spread over all three masters; each task's keys live on the master serving its slot", async () => {
    const used = new Set<ClusterNode>()
    for (let i = 0; i < 100 && used.size < 3; i++) {
      const task = await createTask(a)
      await sendLog(a, task.subtasks[0]!.subtask_id, { level: 'info', message: `task ${i}` })
      const master = await cluster.masterOf(logKey(task.task_id))
      // One command on several keys answers CROSSSLOT unless they share a slot.
      expect((await cluster.cli(master, 'EXISTS', logKey(task.task_id), newestIdKey(task.task_id))).trim()).toBe('2')
      used.add(master)
    }
    expect(used.size).toBe(3)
    expect(new Set(await cluster.masters())).toEqual(used)
  })

  test("a task's slot moved to another master: watchers get 1013 and resume, every acknowledged log once, in order", async () => {
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const { stream, received, closes, subscribed } = sdkWatcher(a.wsUrl, task.task_id)
    await subscribed
    const acked: string[] = []
    for (let i = 0; i < 10; i++) acked.push((await sendLog(a, sub, { level: 'info', message: `before ${i}` })).id)
    const from = await cluster.masterOf(logKey(task.task_id))
    const to = (await cluster.masters()).find((node) => node !== from)!
    await cluster.moveSlot(logKey(task.task_id), to)
    expect(await cluster.masterOf(logKey(task.task_id))).toBe(to)
    // Appends follow the slot (MOVED); the feed cannot know what it missed while it moved.
    for (let i = 0; i < 10; i++) acked.push((await sendLog(a, sub, { level: 'info', message: `after ${i}` })).id)
    expect(await eventually(() => received.length >= acked.length)).toBe(true)
    await Bun.sleep(100) // room for any duplicate to arrive
    expect(received).toEqual(acked)
    // 1013 again while the feed reconnects, if the client comes back before it has.
    expect(closes.length).toBeGreaterThan(0)
    expect(closes.every((code) => code === 1013)).toBe(true)
    stream.close()
  })

  test("a hash tag for every slot: each slot's copy of a shared key is in that slot, a task's copy in the task's slot", async () => {
    const client = createRedisConnection(cluster.url, 2000)
    await client.connect()
    try {
      const keyslot = async (key: string) => Number(await client.send(key, ['CLUSTER', 'KEYSLOT', key]))
      const copies = Array.from({ length: SLOTS }, (_, slot) => archivePendingCopy(slot))
      expect(await Promise.all(copies.map(keyslot))).toEqual(copies.map((_, slot) => slot))
      // Hash tags as Redis reads them: the first {...} that is not empty, else the whole key.
      const keys = ['foo', '{user1000}.following', 'foo{}{bar}', 'a{b}c{d}', 'x{', '}{y}', '{é😀}z', logKey(Bun.randomUUIDv7())]
      expect(keys.map(keySlot)).toEqual(await Promise.all(keys.map(keyslot)))
      for (let i = 0; i < 50; i++) {
        const task = crypto.randomUUID()
        expect(await keyslot(archivePendingKey(task, true))).toBe(await keyslot(logKey(task)))
      }
    } finally {
      await client.close()
    }
  })

  test('the archive source takes the tasks waiting longest from the sets of every slot, oldest first', async () => {
    const backend = await connectRedisBackend({
      url: cluster.url,
      ttlSeconds: 60,
      maxPerTask: 100,
      logger: { warn() {}, info() {} },
      archive: { leaseMs: 5000 },
    })
    try {
      // Four tasks in one slot, appended first; then four in slots of their own.
      const crowded = Array.from({ length: 60_000 }, (_, i) => `crowded-${i}`)
        .filter((id) => keySlot(logKey(id)) === keySlot(logKey('crowded-0')))
        .slice(0, 4)
      const alone = Array.from({ length: 4 }, () => crypto.randomUUID())
      const tasks = [...crowded, ...alone]
      expect(new Set(tasks.map((t) => keySlot(logKey(t)))).size).toBe(5)
      for (const task of tasks) {
        await backend.history.append(task, [testLog(task, task, 'info', task)])
        await Bun.sleep(2) // each its own ms: an order to check
      }
      // A slot moves where the connection does not see it: its set is read where it went.
      const movedFrom = await cluster.masterOf(logKey(alone[0]!))
      await cluster.moveSlot(logKey(alone[0]!), (await cluster.masters()).find((node) => node !== movedFrom)!)
      const source = backend.archiveSource!
      expect(await source.pending(100)).toEqual(tasks)
      expect(await source.pending(4)).toEqual(crowded)
      expect(await source.pending(6)).toEqual(tasks.slice(0, 6))
      // Only tasks whose oldest waiting log was written by a time: the archiver's tasks due.
      const writtenMs = async (task: string) =>
        Number((await backend.history.replay(task, undefined, 1)).logs[0]!.id.split('-')[0])
      expect(await source.pending(100, await writtenMs(tasks[5]!))).toEqual(tasks.slice(0, 6))
      expect(await source.pending(2, await writtenMs(tasks[5]!))).toEqual(tasks.slice(0, 2))
      expect(await source.pending(100, (await writtenMs(tasks[0]!)) - 1)).toEqual([])
      const { tasks: waiting, oldestMs } = await source.backlog()
      expect(waiting).toBe(8)
      expect(oldestMs).toBe(Number((await backend.history.replay(crowded[0]!, undefined, 1)).logs[0]!.id.split('-')[0]))
      for (const task of tasks) await source.commit(task, (await source.take(task, 10))!.lastId, true)
      expect(await source.backlog()).toEqual({ tasks: 0 })
    } finally {
      await backend.close()
    }
  })

  test("tasks on all three masters are archived; a task's pending entry waits beside its keys and moves with its slot", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasklog-cluster-archive-'))
    const databaseUrl = `sqlite://${join(dir, 'tasks.sqlite')}`
    const env = { LOG_TTL_SECONDS: '60', ARCHIVE_DAYS: '1', ARCHIVE_INTERVAL_MS: '100', DATABASE_URL: databaseUrl }
    // Appends with the archive on, archiving left to another instance: the tasks wait in their sets.
    const writer = await startServer({ redisUrl: cluster.url, env: { ...env, ARCHIVER: 'off' } })
    let archiver: TestServer | undefined
    try {
      const sent = new Map<string, string[]>()
      const byMaster = new Map<ClusterNode, string>()
      for (let i = 0; i < 100 && byMaster.size < 3; i++) {
        const task = await createTask(writer)
        const logs = Array.from({ length: 5 }, (_, n) => ({ level: 'info', message: `${i}.${n}` }))
        const res = await post(`${writer.url}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/logs`, { logs })
        const { first_id } = await json(res)
        sent.set(task.task_id, logs.map((_, n) => logIdAfter(first_id, n)))
        byMaster.set(await cluster.masterOf(logKey(task.task_id)), task.task_id)
      }
      expect(byMaster.size).toBe(3)
      const waitsOn = async (node: ClusterNode, task: string) =>
        Number(await cluster.cli(node, 'ZSCORE', archivePendingKey(task, true), task)) > 0
      for (const [master, task] of byMaster) expect(await waitsOn(master, task)).toBe(true)

      // Resharding moves a slot's keys: the entry goes with its task.
      const [from, moved] = [...byMaster][0]!
      const to = [...byMaster.keys()].find((node) => node !== from)!
      await cluster.moveSlot(logKey(moved), to)
      expect(await waitsOn(to, moved)).toBe(true)
      expect(await waitsOn(from, moved)).toBe(false)

      const { url } = (archiver = await startServer({ redisUrl: cluster.url, env }))
      const db = new Database(join(dir, 'tasks.sqlite'), { readonly: true })
      const archived = (task: string) =>
        db
          .query<{ ms: number; seq: number }, [string]>('SELECT ms, seq FROM logs WHERE task_id = ? ORDER BY ms, seq')
          .all(task)
          .map(({ ms, seq }) => `${ms}-${seq}`)
      try {
        expect(await eventually(() => [...sent].every(([task, ids]) => Bun.deepEquals(archived(task), ids)))).toBe(true)
      } finally {
        db.close()
      }
      // The last commits empty the sets, which are then gone.
      const sets = async () =>
        Promise.all((await cluster.masters()).map((node) => cluster.cli(node, 'KEYS', `${ARCHIVE_PENDING_KEY}*`)))
      expect(await eventually(async () => (await sets()).join('').trim() === '')).toBe(true)
      expect((await json(await fetch(`${url}/ready`))).archive).toEqual({ state: 'ok', lag_seconds: 0, pending_tasks: 0 })
    } finally {
      await archiver?.stop()
      await writer.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 30_000)

  test('/ready asks every master; /metrics sums their memory', async () => {
    expect((await json(await fetch(`${a.url}/ready`))).components.history).toEqual({ status: 'ok' })
    const metrics = await (await fetch(`${a.url}/metrics`)).text()
    const reported = Number(/\ntasklog_history_memory_bytes (\d+)/.exec(metrics)?.[1])
    const each = await Promise.all(
      (await cluster.masters()).map(async (node) => Number(/used_memory:(\d+)/.exec(await cluster.cli(node, 'INFO', 'memory'))?.[1])),
    )
    // Each master's memory moves a little between the two reads.
    expect(reported).toBeGreaterThan(each.reduce((sum, n) => sum + n, 0) * 0.9)
    expect(reported).toBeGreaterThan(Math.max(...each) * 2)
  })
})

test('a hung master (SIGSTOP): calls on its tasks fail after timeoutMs and the connection is reset; all works again on SIGCONT', async () => {
  const cluster = await startRedisCluster({ masters: 3 })
  const warnings: string[] = []
  const history = await RedisHistory.connect({
    url: cluster.url,
    ttlSeconds: 60,
    maxPerTask: 100,
    timeoutMs: 500,
    logger: { info() {}, warn: (m: string) => warnings.push(m) },
  })
  try {
    const task = Bun.randomUUIDv7()
    await history.append(task, [testLog(task, task, 'info', 'before')])
    const master = await cluster.masterOf(logKey(task))
    await master.pause()
    try {
      const results = await Promise.allSettled([history.append(task, [testLog(task, task, 'info', 'during')]), history.replay(task, undefined, 10)])
      for (const r of results) expect(r.status === 'rejected' && r.reason instanceof StoreUnavailableError).toBe(true)
      expect(warnings).toContain(`[history] ${cluster.url} answered nothing for 500 ms; reconnecting`)
    } finally {
      master.resume()
    }
    await cluster.waitUntilOk()
    expect(
      await eventually(() =>
        history.ping().then(
          () => true,
          () => false,
        ),
      ),
    ).toBe(true)
    await history.append(task, [testLog(task, task, 'info', 'after')])
    // The append that timed out had been sent: the master applied it once it resumed.
    expect((await history.replay(task, undefined, 10)).logs.map((l) => JSON.parse(l.body).message)).toEqual(['before', 'during', 'after'])
  } finally {
    await history.close()
    await cluster.stop()
  }
}, 30_000)

describe('a master killed and replaced by its replica', () => {
  let cluster: RedisCluster
  let servers: TestServer[] = []
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 1000 })
    servers = await startInstances(cluster.url, 2, { ARCHIVE_DAYS: '1', ARCHIVE_INTERVAL_MS: '100' })
  })
  afterAll(async () => {
    await Promise.allSettled(servers.map((s) => s.stop()))
    await cluster?.stop()
  })

  test('watchers on both instances get 1013 and resume with since: every acknowledged log once, in order, and archived', async () => {
    const [a, b] = servers as [TestServer, TestServer]
    const task = await createTask(a)
    const sub = task.subtasks[0]!.subtask_id
    const watchers = [a, b].map((server) => sdkWatcher(server.wsUrl, task.task_id))
    await Promise.all(watchers.map((w) => w.subscribed))

    const acked: string[] = []
    const refused: number[] = []
    /** Posts one log to `a`; a 201 means stored, anything else not. */
    const send = async (message: string) => {
      const res = await post(`${a.url}/api/v1/subtasks/${sub}/log`, { level: 'info', message })
      if (res.status === 201) acked.push((await json(res)).id)
      else refused.push(res.status)
      return res.status === 201
    }
    for (let i = 0; i < 20; i++) expect(await send(`before ${i}`)).toBe(true)

    const victim = await cluster.masterOf(logKey(task.task_id))
    // Replication is asynchronous: a crash loses what the replica has not received yet. Wait for it,
    // so that every acknowledged log is the replica's too.
    expect(await eventually(async () => replicaCaughtUp(await cluster.cli(victim, 'INFO', 'replication')))).toBe(true)
    await victim.kill()

    // Appends fail while the slot has no master, then succeed on the replica that took over.
    let after = 0
    for (let i = 0; i < 600 && after < 20; i++) {
      if (await send(`after ${i}`)) after++
      else await Bun.sleep(50)
    }
    expect(after).toBe(20)
    expect(refused.length).toBeGreaterThan(0)
    expect(refused.every((status) => status === 503)).toBe(true)
    const successor = await cluster.masterOf(logKey(task.task_id))
    expect(successor).not.toBe(victim)

    for (const { received, closes } of watchers) {
      expect(await eventually(() => acked.every((id) => received.includes(id)))).toBe(true)
      await Bun.sleep(100) // room for any duplicate to arrive
      for (let i = 1; i < received.length; i++) expect(compareLogIds(received[i - 1]!, received[i]!)).toBeLessThan(0)
      expect(received).toEqual(acked)
      expect(closes).toContain(1013)
    }
    for (const { stream } of watchers) stream.close()
    for (const server of [a, b]) {
      expect((await json(await fetch(`${server.url}/ready`))).components).toEqual({
        tasks: { status: 'ok' },
        history: { status: 'ok' },
        feed: { status: 'ok' },
      })
    }

    // The task's entry in the set of its slot failed over with its logs: the archivers, failing
    // while the slot had no master, archive every acknowledged log once it has one.
    const db = new Database(a.config.databaseUrl.slice('sqlite://'.length), { readonly: true })
    try {
      const archived = () =>
        db
          .query<{ ms: number; seq: number }, [string]>('SELECT ms, seq FROM logs WHERE task_id = ? ORDER BY ms, seq')
          .all(task.task_id)
          .map(({ ms, seq }) => `${ms}-${seq}`)
      expect(await eventually(() => Bun.deepEquals(archived(), acked))).toBe(true)
    } finally {
      db.close()
    }
    for (const server of [a, b]) {
      expect(await eventually(async () => (await json(await fetch(`${server.url}/ready`))).archive.state === 'ok')).toBe(true)
    }
  }, 60_000)
})

/** Whether INFO replication of a master shows its replica at the master's offset. */
function replicaCaughtUp(info: string): boolean {
  const master = Number(/master_repl_offset:(\d+)/.exec(info)?.[1])
  const replica = Number(/slave0:.*offset=(\d+)/.exec(info)?.[1])
  return master > 0 && replica === master
}
