/**
 * Where the time of one (g) broadcast goes, from /proc: the CPU the server's processes and the
 * load generator's (its watcher processes) use from the POST until the last watcher has the log, and how long the
 * servers stay busy sending it. Sampled every few ms while the broadcast runs.
 */
import { wallNow } from './clock'
import { mainThreadSchedNs, processRunNs, userSystemMs } from './proc'

const SAMPLE_MS = 5
/**
 * A server's main thread counts as busy in a sample when it was runnable (running, or waiting
 * for a core) for at least this share of it: on a loaded machine a busy thread mostly waits.
 */
const BUSY_SHARE = 0.25
/** A server process that has been idle this long after sending has finished with the broadcast. */
const QUIET_MS = 100
/** A server process not busy this long after the POST had little to send. */
const NOTHING_SENT_MS = 1000

export interface BroadcastSplit {
  /** CPU of all the server's processes (every thread), ms. */
  serverCpuMs: number
  /** The share of serverCpuMs spent in the kernel (system time; clock ticks, so rough below 100 ms). */
  serverSystemShare: number
  /** CPU of the load generator: the watcher processes and the one posting (every thread), ms. */
  loadCpuMs: number
  loadSystemShare: number
  /**
   * From the POST to the end of the last sample in which a server process's main thread (where
   * Bun writes to sockets) was busy with the broadcast, ms: when the servers had finished sending.
   */
  serverBusyMs: number
  /** How long the servers' main threads were runnable but waited for a core, summed, ms. */
  serverWaitMs: number
  /** From the POST until serversIdle resolved (the watchers were paused meanwhile), ms. */
  idleAfterMs: number
}

export interface BroadcastMeasure {
  /**
   * Resolves once the servers have finished sending: every sending process quiet for QUIET_MS
   * since its last busy sample and since this call (made when the POST has been answered), and
   * busy at least once (or NOTHING_SENT_MS gone by).
   */
  serversIdle(): Promise<void>
  stop(): BroadcastSplit
}

/**
 * Starts sampling at the POST; `stop` once the last watcher has the log. `serverPids` are all
 * the server's processes, `senders` those holding sockets (its workers, not their supervisor).
 */
export function measureBroadcast(serverPids: number[], senders: number[], loadPids: number[]): BroadcastMeasure {
  const sum = (pids: number[]) => pids.reduce((total, pid) => total + (processRunNs(pid) || 0), 0) / 1e6
  const ticks = (pids: number[]) => {
    let user = 0
    let system = 0
    for (const pid of pids) {
      const { userMs, systemMs } = userSystemMs(pid)
      user += userMs || 0
      system += systemMs || 0
    }
    return { user, system }
  }
  const share = (pids: number[], before: { user: number; system: number }) => {
    const { user, system } = ticks(pids)
    return (system - before.system) / (user - before.user + system - before.system)
  }
  const serverTicks0 = ticks(serverPids)
  const loadTicks0 = ticks(loadPids)
  const t0 = wallNow()
  const server0 = sum(serverPids)
  const load0 = sum(loadPids)
  const sched0 = senders.map(mainThreadSchedNs)
  /** Per server process: its last sample, and the end of its last busy one while it sends the broadcast. */
  const state = sched0.map((s) => ({ at: t0, ns: s.runNs + s.waitNs, busyUntil: t0, done: false }))
  const timer = setInterval(() => {
    const at = wallNow()
    senders.forEach((pid, i) => {
      const { runNs, waitNs } = mainThreadSchedNs(pid)
      const ns = runNs + waitNs
      const p = state[i]!
      if (!p.done) {
        if ((ns - p.ns) / 1e6 >= BUSY_SHARE * (at - p.at)) p.busyUntil = at
        // Its timers (idle sweeps, pings) wake it later: what follows a quiet stretch is not the broadcast.
        else if (p.busyUntil > t0 && at - p.busyUntil >= QUIET_MS) p.done = true
      }
      p.at = at
      p.ns = ns
    })
    // A process not yet busy may still be waiting for the broadcast (Redis is slow to publish
    // it on a loaded machine): only a long quiet means it had little to send.
    const quiet = (p: (typeof state)[number]) =>
      (p.busyUntil > t0 || at - t0 >= NOTHING_SENT_MS) && at - Math.max(idle!.since, p.busyUntil) >= QUIET_MS
    if (idle && state.every(quiet)) {
      idle.resolve()
      idle = undefined
      idleAfterMs = at - t0
    }
  }, SAMPLE_MS)
  let idle: { since: number; resolve: () => void } | undefined
  let idleAfterMs = Number.NaN
  return {
    serversIdle() {
      return new Promise<void>((resolve) => (idle = { since: wallNow(), resolve }))
    },
    stop() {
      clearInterval(timer)
      idle?.resolve()
      const waitNs = senders.reduce((total, pid, i) => total + (mainThreadSchedNs(pid).waitNs - sched0[i]!.waitNs || 0), 0)
      return {
        serverCpuMs: sum(serverPids) - server0,
        serverSystemShare: share(serverPids, serverTicks0),
        loadCpuMs: sum(loadPids) - load0,
        loadSystemShare: share(loadPids, loadTicks0),
        serverBusyMs: Math.max(...state.map((p) => p.busyUntil)) - t0,
        serverWaitMs: waitNs / 1e6,
        idleAfterMs: idleAfterMs,
      }
    },
  }
}
