/**
 * Reading a process's resource use from /proc, so that server CPU and memory are measured
 * for the server process alone, whatever else (load generator, Redis) shares the machine.
 */
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second (`getconf CLK_TCK`), the unit of utime/stime in /proc/<pid>/stat. */
export const CLK_TCK: number = (() => {
  try {
    const out = Bun.spawnSync(['getconf', 'CLK_TCK']).stdout.toString().trim()
    const n = Number(out)
    return Number.isInteger(n) && n > 0 ? n : 100
  } catch {
    return 100
  }
})()

/** User + system CPU time of the whole process (all threads), in ms; NaN when it is gone. */
export function cpuMs(pid: number): number {
  const { userMs, systemMs } = userSystemMs(pid)
  return userMs + systemMs
}

/** User and system (kernel) CPU time of the whole process (all threads), in ms; NaN when it is gone. */
export function userSystemMs(pid: number): { userMs: number; systemMs: number } {
  return statMs(`/proc/${pid}/stat`)
}

/**
 * CPU time of a process's main thread alone (the one running its JavaScript event loop), in ms,
 * from /proc/<pid>/task/<pid>/stat; NaN when it is gone.
 */
export function mainThreadCpuMs(pid: number): number {
  const { userMs, systemMs } = statMs(`/proc/${pid}/task/${pid}/stat`)
  return userMs + systemMs
}

/** utime and stime of a process's or a thread's stat file, in ms; NaN when it is gone. */
function statMs(path: string): { userMs: number; systemMs: number } {
  try {
    const stat = readFileSync(path, 'utf8')
    // Fields after "(comm)": state is field 3, utime 14, stime 15 (1-based).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { userMs: (Number(rest[11]) * 1000) / CLK_TCK, systemMs: (Number(rest[12]) * 1000) / CLK_TCK }
  } catch {
    return { userMs: Number.NaN, systemMs: Number.NaN }
  }
}

/** The process ids of a process's children (from every thread's list); empty when it is gone. */
function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    )
  } catch {
    return []
  }
}

/**
 * CPU time of a process and of its living descendants, in ms: a supervisor and its workers
 * (`WORKERS=N`) measured as one server. NaN when the process is gone.
 */
export function treeCpuMs(pid: number): number {
  const [, ...descendants] = treePids(pid)
  return descendants.reduce((sum, child) => sum + (cpuMs(child) || 0), cpuMs(pid))
}

/** A process and its living descendants. */
export function treePids(pid: number): number[] {
  return [pid, ...childPids(pid).flatMap(treePids)]
}

/**
 * CPU time of the main threads of a tree's leaf processes (a supervisor's workers, or a lone
 * process), in ms: the threads that serve requests. NaN when the process is gone.
 */
export function treeMainThreadCpuMs(pid: number): number {
  return leafPids(pid).reduce((sum, leaf) => sum + mainThreadCpuMs(leaf), 0)
}

/** The processes of a tree that have no children: a supervisor's workers, or a lone process itself. */
export function leafPids(pid: number): number[] {
  const children = childPids(pid)
  return children.length ? children.flatMap(leafPids) : [pid]
}

/**
 * CPU time of each thread of a process, in ms, summed by thread name (`comm`: the main thread
 * carries the process name; JavaScriptCore names its JIT and GC threads): where a server's CPU
 * goes besides running JavaScript. Empty when the process is gone.
 */
export function threadCpuMs(pid: number): Map<string, number> {
  const byName = new Map<string, number>()
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return byName
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      // Numbered threads of one pool ("HeapHelper 1", ...) count as one.
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8')
        .trim()
        .replace(/\s*\d+$/, '')
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const ms = ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK
      byName.set(name, (byName.get(name) ?? 0) + ms)
    } catch {
      // The thread ended between listing and reading.
    }
  }
  return byName
}

/** CPU time all processes of the machine spent busy (all cores), in ms, from /proc/stat. */
export function machineBusyMs(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!
    // cpu user nice system idle iowait irq softirq steal guest guest_nice
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number)
    return ((user! + nice! + system! + irq! + softirq! + steal!) * 1000) / CLK_TCK
  } catch {
    return Number.NaN
  }
}

/** Resident set size now and at its peak, in KiB; NaN when the process is gone. */
export function memKiB(pid: number): { rss: number; hwm: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN)
    return { rss: field('VmRSS'), hwm: field('VmHWM') }
  } catch {
    return { rss: Number.NaN, hwm: Number.NaN }
  }
}

/** Resident set size of a process and of its living descendants, in KiB (see treeCpuMs); NaN when it is gone. */
export function treeRssKiB(pid: number): number {
  return childPids(pid).reduce((sum, child) => sum + (treeRssKiB(child) || 0), memKiB(pid).rss)
}

/** This process's hard limit of open files (`ulimit -Hn`; Bun raises its soft limit to it at start). */
export function openFilesLimit(): number {
  const line = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1]
  return line === 'unlimited' ? Number.POSITIVE_INFINITY : Number(line)
}

/**
 * Sockets listening on 127.0.0.1:`port` (several when processes share it with SO_REUSEPORT).
 * Asks `ss`, which filters in the kernel: /proc/net/tcp lists every socket, 100,000s of them
 * after (g).
 */
export function listeners(port: number): number {
  const out = Bun.spawnSync(['ss', '-Hltn', `src 127.0.0.1:${port}`]).stdout.toString()
  return out.split('\n').filter((line) => line.trim()).length
}

/** A port that was free a moment ago (the OS picks it). */
export function freePort(): number {
  const server = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = server.port
  server.stop(true)
  return port
}

/** CPU time of every thread of a process, in ns, from their schedstat (see mainThreadSchedNs); NaN when it is gone. */
export function processRunNs(pid: number): number {
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return Number.NaN
  }
  let ns = 0
  for (const tid of tids) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ', 1)[0])
    } catch {
      // The thread ended between listing and reading.
    }
  }
  return ns
}

/**
 * Time a process's main thread has run, and waited to run while runnable (on a run queue), in
 * ns, from /proc/<pid>/schedstat: precise where utime and stime count clock ticks. NaN when gone.
 */
export function mainThreadSchedNs(pid: number): { runNs: number; waitNs: number } {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')
    return { runNs: Number(run), waitNs: Number(wait) }
  } catch {
    return { runNs: Number.NaN, waitNs: Number.NaN }
  }
}

/**
 * Packets the kernel dropped because a core's input queue was full (`net.core.netdev_max_backlog`),
 * summed over the cores, from /proc/net/softnet_stat: over loopback, every packet a sender writes
 * waits there until the receiving side's TCP takes it.
 */
export function backlogDrops(): number {
  try {
    return readFileSync('/proc/net/softnet_stat', 'utf8')
      .trim()
      .split('\n')
      .reduce((sum, line) => sum + Number.parseInt(line.split(' ')[1]!, 16), 0)
  } catch {
    return Number.NaN
  }
}

/** TCP segments retransmitted by this network namespace (RetransSegs in /proc/net/snmp). */
export function tcpRetransmits(): number {
  try {
    const [names, values] = readFileSync('/proc/net/snmp', 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('Tcp:'))
      .map((line) => line.split(/\s+/))
    return Number(values![names!.indexOf('RetransSegs')])
  } catch {
    return Number.NaN
  }
}

/**
 * The PostgreSQL backends on this machine serving database `name` (their command line reads
 * `postgres: … <user> <name> <client> …`), each with its CPU time in ms.
 */
export function postgresBackendsCpuMs(name: string): Map<number, number> {
  const found = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ')
      if (args.startsWith('postgres: ') && args.includes(` ${name} `)) found.set(Number(entry), cpuMs(Number(entry)))
    } catch {
      // The process ended between listing and reading.
    }
  }
  return found
}
