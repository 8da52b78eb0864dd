/**
 * Test harness: a throw-away Redis Cluster on free ports: `masters` redis-servers with
 * `--cluster-enabled yes` (each with `replicas` more as its replicas), joined by
 * `redis-cli --cluster create`, ready once every node reports `cluster_state:ok`.
 *
 *   const cluster = await startRedisCluster({ masters: 3 })
 *   ... cluster.url ...                        // redis+cluster://127.0.0.1:<first node>
 *   await cluster.masterOf(logKey(taskId))     // the node that serves the key's slot now
 *   await cluster.stop()
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $, type Subprocess } from 'bun'
import { pauseProcess } from './pause'
import { freePort, spawnReady } from './redis-server'

const REDIS_CLI = process.env.REDIS_CLI_BIN ?? '/usr/bin/redis-cli'

export interface ClusterNode {
  readonly port: number
  readonly pid: number
  /** SIGKILL, as in a crash; resolves once the process has exited. */
  kill(): Promise<void>
  /** SIGSTOP: the node keeps its connections open but answers nothing (a hung server). */
  pause(): Promise<void>
  /** SIGCONT after pause(). */
  resume(): void
}

export interface RedisCluster {
  /** `redis+cluster://127.0.0.1:<port of the first node>` */
  readonly url: string
  readonly nodes: readonly ClusterNode[]
  /** When the last node started (Date.now()): what the cluster holds was written since. */
  readonly startedAt: number
  /** The master that serves `key`'s slot, as the cluster sees it now. */
  masterOf(key: string): Promise<ClusterNode>
  /** The masters, as the cluster sees them now. */
  masters(): Promise<ClusterNode[]>
  /** Runs a command on one node and returns its reply as redis-cli prints it. */
  cli(node: ClusterNode, ...args: string[]): Promise<string>
  /** Moves `key`'s slot, with its keys, to another master (as resharding does, one slot). */
  moveSlot(key: string, to: ClusterNode): Promise<void>
  /** Waits until every node still running reports `cluster_state:ok`. */
  waitUntilOk(): Promise<void>
  stop(): Promise<void>
}

export interface ClusterOptions {
  masters?: number
  /** Replicas per master. */
  replicas?: number
  /** `cluster-node-timeout` in ms: how long a master may be unreachable before its replica takes over. */
  nodeTimeoutMs?: number
}

export async function startRedisCluster(opts: ClusterOptions = {}): Promise<RedisCluster> {
  const masters = opts.masters ?? 3
  const replicas = opts.replicas ?? 0
  const dir = mkdtempSync(join(tmpdir(), 'tasklog-cluster-'))
  const procs = new Map<number, Subprocess>()
  const nodes: ClusterNode[] = []
  let startedAt = 0
  const stop = async () => {
    for (const proc of procs.values()) proc.kill('SIGKILL')
    await Promise.all([...procs.values()].map((p) => p.exited))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await startNode(dir, opts.nodeTimeoutMs ?? 1000, procs)
      const proc = procs.get(port)!
      startedAt = Date.now()
      nodes.push({
        port,
        pid: proc.pid,
        async kill() {
          proc.kill('SIGKILL')
          await proc.exited
        },
        pause: () => pauseProcess(proc),
        resume: () => proc.kill('SIGCONT'),
      })
    }
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`)
    await $`${REDIS_CLI} --cluster create ${addresses} --cluster-replicas ${replicas} --cluster-yes`.quiet()
  } catch (err) {
    await stop()
    throw err
  }

  const cli = (node: ClusterNode, ...args: string[]) => $`${REDIS_CLI} -p ${node.port} ${args}`.text()
  const alive = (node: ClusterNode) => procs.get(node.port)!.exitCode === null && procs.get(node.port)!.signalCode === null
  /** Each master's port and slot ranges, from CLUSTER NODES on a running node. */
  const slotTable = async () => {
    const text = await cli(nodes.find(alive)!, 'cluster', 'nodes')
    const table: { port: number; ranges: [number, number][] }[] = []
    for (const line of text.trim().split('\n')) {
      const [, address, flags, , , , , , ...slots] = line.split(' ')
      if (!flags!.split(',').includes('master') || flags!.includes('fail')) continue
      const ranges = slots.filter((s) => !s.startsWith('[')).map((s) => s.split('-').map(Number) as [number, number])
      table.push({ port: Number(address!.split(':')[1]!.split('@')[0]), ranges: ranges.map(([a, b]) => [a, b ?? a]) })
    }
    return table
  }
  const nodeAt = (port: number) => nodes.find((n) => n.port === port)!
  const cluster: RedisCluster = {
    url: `redis+cluster://127.0.0.1:${nodes[0]!.port}`,
    nodes,
    startedAt,
    async masterOf(key) {
      const slot = Number((await cli(nodes.find(alive)!, 'cluster', 'keyslot', key)).trim())
      const owner = (await slotTable()).find((m) => m.ranges.some(([a, b]) => slot >= a && slot <= b))
      if (!owner) throw new Error(`no master serves slot ${slot}`)
      return nodeAt(owner.port)
    },
    async masters() {
      return (await slotTable()).filter((m) => m.ranges.length > 0).map((m) => nodeAt(m.port))
    },
    cli,
    async moveSlot(key, to) {
      const from = await cluster.masterOf(key)
      const slot = (await cli(from, 'cluster', 'keyslot', key)).trim()
      const [fromId, toId] = await Promise.all([from, to].map(async (n) => (await cli(n, 'cluster', 'myid')).trim()))
      await cli(to, 'cluster', 'setslot', slot, 'importing', fromId!)
      await cli(from, 'cluster', 'setslot', slot, 'migrating', toId!)
      const keys = (await cli(from, 'cluster', 'getkeysinslot', slot, '1000')).split('\n').filter(Boolean)
      if (keys.length > 0) await cli(from, 'migrate', '127.0.0.1', String(to.port), '', '0', '5000', 'keys', ...keys)
      for (const node of new Set([to, from, ...(await cluster.masters())])) await cli(node, 'cluster', 'setslot', slot, 'node', toId!)
    },
    async waitUntilOk() {
      for (let i = 0; i < 200; i++) {
        const states = await Promise.all(nodes.filter(alive).map((n) => cli(n, 'cluster', 'info').catch(() => '')))
        if (states.every((s) => s.includes('cluster_state:ok'))) return
        await Bun.sleep(50)
      }
      throw new Error('the cluster did not reach cluster_state:ok')
    },
    stop,
  }
  try {
    await cluster.waitUntilOk()
  } catch (err) {
    await stop()
    throw err
  }
  return cluster
}

/** One cluster-enabled redis-server on a free port; its nodes file lives in `dir`. */
async function startNode(dir: string, nodeTimeoutMs: number, procs: Map<number, Subprocess>): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = freePort()
    if (port === 6379 || port > 55535) continue // the cluster bus listens on port + 10000
    try {
      const proc = await spawnReady(port, [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        String(nodeTimeoutMs),
        '--dir',
        dir,
      ])
      procs.set(port, proc)
      return port
    } catch (err) {
      if (attempt === 4) throw err
    }
  }
}
