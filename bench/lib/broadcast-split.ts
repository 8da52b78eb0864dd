/**
 * Where the time of one (g) broadcast goes, from /proc: the CPU the server's processes and the
 * load generator's (its watcher processes) use from the POST until the last watcher has the
 * log, and when the servers have finished sending it, so that the paused watchers may read.
 * When the servers finished writing is the watchers' last arrival: arrivals are the kernel's
 * receive times, which over loopback are the times the servers wrote.
 */
import { wallNow } from './clock'
import { backlogDrops, mainThreadSchedNs, processRunNs, tcpRetransmits, userSystemMs } from './proc'

const SAMPLE_MS = 5
/**
 * A sending process's main thread (where Bun writes to sockets) counts as busy in a sample when
 * it was runnable (running, or waiting for a core) for at least this share of it: on a loaded
 * machine a busy thread mostly waits.
 */
const BUSY_SHARE = 0.25
/** A sending process that has been idle this long has finished with the broadcast. */
const QUIET_MS = 100
/**
 * CPU a sending process spends on the broadcast before it counts as having sent it: more than
 * answering the POST or one pass of its timers, less than writing to a thousand sockets.
 */
const SENT_CPU_MS = 10
/** A sending process that has not used SENT_CPU_MS this long after the POST had little to send. */
const NOTHING_SENT_MS = 1000

export interface BroadcastSplit {
  /** CPU of all the server's processes (every thread), ms. */
  serverCpuMs: number
  /** The share of serverCpuMs spent in the kernel (system time; clock ticks, so rough below 100 ms). */
  serverSystemShare: number
  /** CPU of the load generator: the watcher processes and the one posting (every thread), ms. */
  loadCpuMs: number
  loadSystemShare: number
  /** How long the sending processes' main threads were runnable but waited for a core, summed, ms. */
  serverWaitMs: number
  /** From the POST until serversIdle resolved (the watchers were paused meanwhile), ms. */
  idleAfterMs: number
  /**
   * Packets dropped from a core's full input queue, and TCP segments sent again, on the whole
   * machine: a dropped frame arrives only when TCP sends it again, 200 ms or more later.
   */
  backlogDrops: number
  retransmits: number
}

export interface BroadcastMeasure {
  /**
   * Resolves once the servers have finished sending: every sending process has sent (SENT_CPU_MS,
   * or NOTHING_SENT_MS gone by) and been quiet for QUIET_MS, since its last busy sample and since
   * this call (made when the POST has been answered).
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
  const drops0 = backlogDrops()
  const retransmits0 = tcpRetransmits()
  const t0 = wallNow()
  const server0 = sum(serverPids)
  const load0 = sum(loadPids)
  const sched0 = senders.map(mainThreadSchedNs)
  /** Per sending process: its last sample, and the end of its last busy one. */
  const state = sched0.map((s) => ({ at: t0, runNs: s.runNs, waitNs: s.waitNs, busyUntil: t0 }))
  let idle: { since: number; resolve: () => void } | undefined
  let idleAfterMs = Number.NaN
  const timer = setInterval(() => {
    const at = wallNow()
    senders.forEach((pid, i) => {
      const { runNs, waitNs } = mainThreadSchedNs(pid)
      const p = state[i]!
      if ((runNs + waitNs - p.runNs - p.waitNs) / 1e6 >= BUSY_SHARE * (at - p.at)) p.busyUntil = at
      Object.assign(p, { at, runNs, waitNs })
    })
    if (!idle) return
    const since = idle.since
    const done = (p: (typeof state)[number], i: number) =>
      ((p.runNs - sched0[i]!.runNs) / 1e6 >= SENT_CPU_MS || at - t0 >= NOTHING_SENT_MS) &&
      at - Math.max(since, p.busyUntil) >= QUIET_MS
    if (state.every(done)) {
      idle.resolve()
      idle = undefined
      idleAfterMs = at - t0
    }
  }, SAMPLE_MS)
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
        serverWaitMs: waitNs / 1e6,
        idleAfterMs,
        backlogDrops: backlogDrops() - drops0,
        retransmits: tcpRetransmits() - retransmits0,
      }
    },
  }
}
