/**
 * `bun run bench [--quick] [--scenario a,b,...] [--reps N] [--servers tasklog,baseline,floor-multi]
 *                [--idle N] [--out FILE] [--cpu-prof] [--threads] [--warmup MS] [--gc] [--floor-with-app]`
 *
 * Starts a private redis-server, then for every scenario runs tasklog and the baseline
 * (bench/baseline/server.ts) alternately, `reps` times each, every run on a fresh server
 * process against the same Redis (FLUSHALL before each run). The load generator
 * (bench/load.ts) runs as its own process. Prints a Markdown table of medians with the ratio
 * tasklog/baseline, checks the performance targets, writes bench/results/<timestamp>.json, and
 * exits non-zero when any correctness counter (lost, dup, order, ...) is non-zero or a run failed.
 * In the ingest scenarios (MULTI_FLOOR_SCENARIOS) a third server, floor-multi (the baseline with
 * BASELINE_STORE=multi), is the floor of Redis work per log: tasklog's Redis CPU per log is
 * reported as a multiple of its.
 *
 * --quick: small sizes and one repetition, under a minute: CI runs it for the counters.
 * --gc: each server logs its garbage collections (BUN_JSC_logGC=1, to bench/results/gc-<time>/);
 *   each run reports its number of collections and their pauses.
 * --floor-with-app: the baseline also loads tasklog's app, warmed and then idle
 *   (bench/lib/idle-app.ts), to measure what holding tasklog's code costs the floor.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { gcPauses, type GcPauses } from './lib/gc-log'
import { median } from './lib/histogram'
import { CLK_TCK, openFilesLimit } from './lib/proc'
import { children, ROOT, startRedis, startServer, stop, type RunningServer } from './lib/processes'
import { ALL_SCOPES } from '../src/auth/scopes'
import { Tokens } from '../src/auth/tokens'
import { BROADCAST_WAIT_MS, type Correctness, type LoadJob, type LoadResult } from './load'
import { SCENARIOS, type ScenarioId } from './scenarios'

const SERVER_NAMES = ['tasklog', 'baseline', 'floor-multi'] as const
type ServerName = (typeof SERVER_NAMES)[number]
/** The scenarios floor-multi runs in: it delivers in-process, so only ingest compares with it. */
const MULTI_FLOOR_SCENARIOS: ReadonlySet<ScenarioId> = new Set(['a', 'd'])

// ---------- arguments ----------
/** `bench/results/<prefix>-<now>`: where a run's extra files go (git-ignored). */
const resultsPath = (prefix: string) => join(import.meta.dir, 'results', `${prefix}-${new Date().toISOString().replace(/[:.]/g, '-')}`)

function parseArgs(argv: string[]) {
  const opts = {
    quick: false,
    scenarios: SCENARIOS.map((s) => s.id) as ScenarioId[],
    reps: 0,
    servers: [...SERVER_NAMES] as ServerName[],
    idle: 0,
    out: '',
    /** Directory for `bun --cpu-prof` profiles of every server run (off when empty). */
    cpuProf: '',
    /** Overrides every scenario's warm-up (ms). */
    warmupMs: undefined as number | undefined,
    /** Print each run's server CPU per log by thread (main, JIT, GC, ...). */
    threads: false,
    /** Self-test: make the baseline drop, duplicate or reorder frames (BENCH_FAULT). */
    fault: '',
    /** Directory for the servers' GC logs (off when empty). */
    gcDir: '',
    floorWithApp: false,
    /** `token`: tasklog in token mode, every request and socket with a bearer token (compare with `local`). */
    auth: 'local' as 'local' | 'token',
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const value = () => {
      const v = inline ?? argv[++i]
      if (v === undefined) usage(`${flag} needs a value`)
      return v!
    }
    switch (flag) {
      case '--quick':
        opts.quick = true
        break
      case '--scenario':
      case '--scenarios': {
        const ids = value().split(',').map((s) => s.trim()).filter(Boolean)
        for (const id of ids) if (!SCENARIOS.some((s) => s.id === id)) usage(`unknown scenario ${id}`)
        opts.scenarios = ids as ScenarioId[]
        break
      }
      case '--reps':
        opts.reps = Number(value())
        if (!Number.isInteger(opts.reps) || opts.reps < 1 || opts.reps > 50) usage('--reps must be 1..50')
        break
      case '--servers': {
        const names = value().split(',').map((s) => s.trim())
        for (const n of names) if (!(SERVER_NAMES as readonly string[]).includes(n)) usage(`unknown server ${n}`)
        opts.servers = names as ServerName[]
        break
      }
      case '--idle':
        opts.idle = Number(value())
        if (!Number.isInteger(opts.idle) || opts.idle < 1 || opts.idle > 100_000) usage('--idle must be 1..100000')
        break
      case '--out':
        opts.out = value()
        break
      case '--fault':
        opts.fault = value()
        if (!['drop', 'dup', 'reorder'].includes(opts.fault)) usage('--fault must be drop, dup or reorder')
        break
      case '--warmup':
        opts.warmupMs = Number(value())
        if (!Number.isInteger(opts.warmupMs) || opts.warmupMs < 0) usage('--warmup must be a whole number of ms')
        break
      case '--threads':
        opts.threads = true
        break
      case '--gc':
        opts.gcDir = resultsPath('gc')
        break
      case '--auth': {
        const mode = value()
        if (mode !== 'local' && mode !== 'token') usage('--auth must be local or token')
        opts.auth = mode as 'local' | 'token'
        break
      }
      case '--floor-with-app':
        opts.floorWithApp = true
        break
      case '--cpu-prof':
        opts.cpuProf = resultsPath('prof')
        break
      case '-h':
      case '--help':
        usage()
        break
      default:
        usage(`unknown argument ${arg}`)
    }
  }
  if (!opts.reps) opts.reps = opts.quick ? 1 : 3
  return opts
}

/** "bun 25.1, JITWorker 2.3, ..." in µs per log, largest first. */
const threadSummary = (byThread: Record<string, number>): string =>
  Object.entries(byThread)
    .sort((a, b) => b[1] - a[1])
    .map(([name, ms]) => `${name} ${fmt(ms * 1000, 1)}`)
    .join(', ')

function usage(problem?: string): never {
  if (problem) console.error(`bench: ${problem}`)
  console.error(
    'usage: bun run bench [--quick] [--scenario a,b,c,d,e,f,g] [--reps N] [--servers tasklog,baseline,floor-multi] [--idle N] [--out FILE] [--cpu-prof] [--threads] [--warmup MS] [--gc] [--floor-with-app] [--fault drop|dup|reorder] [--auth local|token]',
  )
  for (const s of SCENARIOS) console.error(`  ${s.id}  ${s.title}`)
  process.exit(problem ? 2 : 0)
}

// ---------- processes ----------
const BENCH_SECRET = 'bench-secret-bench-secret-bench-secret-0123'
/** With `--auth token`: one admin token for the whole run, as a deployment's clients each hold theirs. */
let benchToken: string | undefined
/**
 * Starts a server under test. `processes` > 1 (scenario g, when one process may not hold every
 * socket): both run as WORKERS processes on one port (tasklog's over a SQLite file its workers share).
 */
const startBenchServer = (
  name: ServerName,
  redisUrl: string,
  profileName?: string,
  gcLog?: string,
  { processes = 1, taskDb = '', manyStreams = false } = {},
) =>
  startServer({
    name,
    entry: name === 'tasklog' ? 'src/index.ts' : 'bench/baseline/server.ts',
    redisUrl,
    processes,
    env: {
      ...(processes > 1 && { WORKERS: String(processes) }),
      ...(processes > 1 && name === 'tasklog' && { DATABASE_URL: `sqlite://${taskDb}` }),
      // (g) holds up to 25,000 sockets per source address, in local mode one client each.
      ...(name === 'tasklog' && manyStreams ? { MAX_CONNECTIONS_PER_CLIENT: '10000000' } : {}),
      ...(name === 'floor-multi' ? { BASELINE_STORE: 'multi' } : {}),
      ...(name === 'baseline' && opts.fault ? { BENCH_FAULT: opts.fault } : {}),
      ...(name === 'baseline' && opts.floorWithApp ? { BENCH_FLOOR_WITH_APP: '1' } : {}),
      ...(gcLog ? { BUN_JSC_logGC: '1' } : {}),
      // Limits high enough never to refuse, so that only their cost is measured.
      ...(name === 'tasklog' && opts.auth === 'token' ? { AUTH_SECRET: BENCH_SECRET, MAX_CONNECTIONS_PER_CLIENT: '10000000' } : {}),
    },
    stderrFile: gcLog,
    // --cpu-prof: the profile (.cpuprofile and .md) is written when the server exits on SIGTERM.
    bunArgs: profileName
      ? ['--cpu-prof', '--cpu-prof-md', '--cpu-prof-interval=250', `--cpu-prof-dir=${opts.cpuProf}`, `--cpu-prof-name=${profileName}`]
      : [],
  })

async function runLoadProcess(job: LoadJob, timeoutMs: number): Promise<LoadResult> {
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, 'load.ts'), JSON.stringify(job)], {
    cwd: ROOT,
    stdout: 'pipe',
    stderr: 'inherit',
  })
  children.add(proc)
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  const text = await new Response(proc.stdout).text()
  await proc.exited
  clearTimeout(timer)
  children.delete(proc)
  const line = text.trim().split('\n').pop() ?? ''
  try {
    return JSON.parse(line) as LoadResult
  } catch {
    const why = proc.signalCode === 'SIGKILL' ? `timed out after ${timeoutMs} ms` : `exit ${proc.exitCode}`
    return { scenario: job.scenario, server: job.server, ok: false, error: `load generator ${why}: ${text.slice(-300)}` } as LoadResult
  }
}

/** Top-level Redis command calls during a run, e.g. { evalsha: 1000 } (commands inside Lua included). */
function commandStats(info: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const m of info.matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2])
  return out
}

// ---------- report ----------
interface Row {
  scenario: ScenarioId
  server: ServerName
  runs: LoadResult[]
}

const fmt = (x: number, digits = 2): string => {
  if (!Number.isFinite(x)) return '–'
  if (digits === 0) return Math.round(x).toLocaleString('en-US')
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US')
  if (Math.abs(x) >= 100) return x.toFixed(0)
  if (Math.abs(x) >= 10) return x.toFixed(1)
  return x.toFixed(digits)
}

type Metric = { key: string; head: string; get: (r: LoadResult) => number; digits?: number }
const METRICS: Metric[] = [
  { key: 'acksPerS', head: 'acks/s', get: (r) => r.acksPerS },
  { key: 'deliveriesPerS', head: 'deliveries/s', get: (r) => r.deliveriesPerS },
  { key: 'postP50', head: 'POST p50 ms', get: (r) => r.post.p50 },
  { key: 'postP99', head: 'POST p99 ms', get: (r) => r.post.p99 },
  { key: 'e2eP50', head: 'e2e p50 ms', get: (r) => r.e2e.p50 },
  { key: 'e2eP99', head: 'e2e p99 ms', get: (r) => r.e2e.p99 },
  { key: 'e2eMax', head: 'e2e max ms', get: (r) => r.e2e.max },
  { key: 'cpuPerLog', head: 'CPU ms/log', get: (r) => r.serverCpuMsPerLog, digits: 4 },
  { key: 'redisCpuPerLog', head: 'Redis CPU ms/log', get: (r) => r.redisCpuMsPerLog, digits: 4 },
  { key: 'rss', head: 'RSS MiB', get: (r) => r.serverRssKiB / 1024, digits: 1 },
  { key: 'loaderCpu', head: 'load gen CPU %', get: (r) => r.loaderCpuPct, digits: 0 },
  {
    key: 'extra',
    head: 'KiB/conn · catch-up max ms',
    get: (r) => (r.idle ? r.idle.bytesPerConnection / 1024 : r.catchUp ? r.catchUp.max : Number.NaN),
  },
]

function medians(runs: LoadResult[]): Record<string, number> {
  const ok = runs.filter((r) => r.ok)
  return Object.fromEntries(METRICS.map((m) => [m.key, median(ok.map(m.get))]))
}

function sumCorrectness(runs: LoadResult[]): Correctness {
  const total: Correctness = {
    lost: 0,
    dup: 0,
    order: 0,
    malformed: 0,
    postErrors: 0,
    droppedSockets: 0,
    unacked: 0,
    notCaughtUp: 0,
    recoveredFalse: 0,
  }
  for (const r of runs)
    if (r.correctness) for (const k of Object.keys(total) as (keyof Correctness)[]) total[k] += r.correctness[k]
  return total
}

const correctnessCell = (c: Correctness, failedRuns: number): string => {
  const extra = Object.entries(c)
    .filter(([k, v]) => !['lost', 'dup', 'order'].includes(k) && v !== 0)
    .map(([k, v]) => `${k} ${v}`)
  if (failedRuns) extra.push(`failed runs ${failedRuns}`)
  return `${c.lost}/${c.dup}/${c.order}${extra.length ? ` (${extra.join(', ')})` : ''}`
}

function table(rows: Row[]): string {
  const head = ['scenario', 'server', ...METRICS.map((m) => m.head), 'lost/dup/order']
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' --- ').join('|')}|`]
  for (const id of new Set(rows.map((r) => r.scenario))) {
    const group = rows.filter((r) => r.scenario === id)
    const med = new Map(group.map((r) => [r.server, medians(r.runs)]))
    for (const r of group) {
      const m = med.get(r.server)!
      const c = sumCorrectness(r.runs)
      const failed = r.runs.filter((x) => !x.ok).length
      lines.push(`| ${id} | ${r.server} | ${METRICS.map((x) => fmt(m[x.key]!, x.digits)).join(' | ')} | ${correctnessCell(c, failed)} |`)
    }
    const t = med.get('tasklog')
    const b = med.get('baseline')
    const f = med.get('floor-multi')
    if (t && b)
      lines.push(`| ${id} | **ratio** | ${METRICS.map((x) => `**${fmt(t[x.key]! / b[x.key]!, 2)}**`).join(' | ')} | |`)
    if (t && f)
      lines.push(`| ${id} | **÷ floor-multi** | ${METRICS.map((x) => `**${fmt(t[x.key]! / f[x.key]!, 2)}**`).join(' | ')} | |`)
  }
  return lines.join('\n')
}

/** Issue 5's targets (tasklog / baseline, medians). */
function targets(rows: Row[]): { check: string; value: string; pass: boolean }[] {
  const m = (id: ScenarioId, server: ServerName) => {
    const row = rows.find((r) => r.scenario === id && r.server === server)
    return row ? medians(row.runs) : undefined
  }
  const out: { check: string; value: string; pass: boolean }[] = []
  const ratio = (id: ScenarioId, key: string, max: number, label: string) => {
    const t = m(id, 'tasklog')
    const b = m(id, 'baseline')
    if (!t || !b) return
    const r = t[key]! / b[key]!
    out.push({ check: `(${id}) ${label} ≤ ${max}×`, value: `${fmt(r)}×`, pass: r <= max })
  }
  ratio('a', 'cpuPerLog', 1.25, 'server CPU/log')
  for (const id of MULTI_FLOOR_SCENARIOS) {
    const t = m(id, 'tasklog')
    const f = m(id, 'floor-multi')
    if (!t || !f) continue
    const r = t.redisCpuPerLog! / f.redisCpuPerLog!
    out.push({ check: `(${id}) Redis CPU/log ≤ 1.7× the plain-MULTI floor's`, value: `${fmt(r)}×`, pass: r <= 1.7 })
  }
  ratio('c', 'cpuPerLog', 1.25, 'server CPU/log')
  ratio('b', 'cpuPerLog', 1.2, 'server CPU/log')
  // uWS coalesces frames published in one event-loop tick into one write per socket, so a
  // server that falls behind (several logs per tick) spends less CPU per log: only a server
  // that sustains the rate is comparable here.
  const bt = m('b', 'tasklog')
  const last = out[out.length - 1]
  if (bt && last?.check.startsWith('(b) server CPU') && !(bt.acksPerS! >= 990)) {
    last.pass = false
    last.value += ' (not comparable: tasklog did not sustain 1,000 logs/s)'
  }
  ratio('b', 'e2eP99', 1.1, 'e2e p99')
  ratio('c', 'e2eP99', 1.1, 'e2e p99')
  const b = m('b', 'tasklog')
  if (b) out.push({ check: '(b) tasklog sustains 1,000 logs/s', value: `${fmt(b.acksPerS!)}/s`, pass: b.acksPerS! >= 990 })
  const d = m('d', 'tasklog')
  if (d) out.push({ check: '(d) tasklog ≥ 100,000 logs/s', value: `${fmt(d.acksPerS!)}/s`, pass: d.acksPerS! >= 100_000 })
  ratio('e', 'extra', 1.5, 'memory per idle connection')
  // (g): absolute targets, with the floor's figure of the same run beside tasklog's.
  const g = m('g', 'tasklog')
  const gFloor = m('g', 'baseline')
  const floorSays = (x: number | undefined, unit: string) => (x === undefined ? '' : ` (the floor ${fmt(x)} ${unit})`)
  if (g) {
    out.push({
      check: '(g) tasklog ≤ 2.5 KiB per idle watcher',
      value: `${fmt(g.extra!)} KiB${floorSays(gFloor?.extra, 'KiB')}`,
      pass: g.extra! <= 2.5,
    })
    out.push({
      check: '(g) tasklog: a broadcast reaches the watchers within 1 s at p99',
      value: `p99 ${fmt(g.e2eP99!)} ms, last ${fmt(g.e2eMax!)} ms${floorSays(gFloor?.e2eP99, 'ms at p99')}`,
      pass: g.e2eP99! <= 1000,
    })
  }
  const f = rows.find((r) => r.scenario === 'f' && r.server === 'tasklog')
  if (f) {
    const runs = f.runs.filter((r) => r.ok && r.catchUp)
    const worst = Math.max(...runs.map((r) => r.catchUp!.max))
    const c = sumCorrectness(f.runs)
    out.push({
      check: '(f) tasklog: all caught up within 2 s, 0 gaps, 0 duplicates',
      value: `max ${fmt(worst)} ms, lost ${c.lost}, dup ${c.dup}, not caught up ${c.notCaughtUp}`,
      pass: runs.length > 0 && worst <= 2000 && c.lost === 0 && c.dup === 0 && c.notCaughtUp === 0,
    })
  }
  return out
}

function machine(redisVersion: string) {
  const cpu = cpus()
  let memTotal = ''
  try {
    memTotal = /MemTotal:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? ''
  } catch {}
  return {
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    memGiB: memTotal ? Math.round(Number(memTotal) / 1024 / 1024) : undefined,
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    bun: Bun.version,
    redis: redisVersion,
    clkTck: CLK_TCK,
    openFilesLimit: Number(Bun.spawnSync(['sh', '-c', 'ulimit -n']).stdout.toString().trim()),
  }
}

/**
 * (g) needs a file descriptor per socket in the servers and the watcher processes: this lifts
 * the limit that every child inherits as far as this process may (past the hard limit only with
 * CAP_SYS_RESOURCE; without it, (g) spreads its sockets over more processes). Bun raises each
 * process's soft limit to the hard one by itself.
 */
function raiseOpenFilesLimit(): void {
  const most = readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()
  try {
    Bun.spawnSync(['prlimit', `--pid=${process.pid}`, `--nofile=${most}:${most}`], { stderr: 'ignore' })
  } catch {
    // No prlimit: the limit stays as it is.
  }
}

// ---------- main ----------
const opts = parseArgs(process.argv.slice(2))
if (opts.scenarios.includes('g')) raiseOpenFilesLimit()
if (opts.auth === 'token')
  benchToken = await new Tokens(BENCH_SECRET).sign({ sub: 'bench', scopes: ALL_SCOPES, tasks: null, exp: Math.floor(Date.now() / 1000) + 86_400 })
const startedAt = new Date()
const t0 = performance.now()
const redis = await startRedis()
const info = machine(redis.version)
console.error(
  `bench: ${opts.quick ? 'quick, ' : ''}scenarios ${opts.scenarios.join(',')} × ${opts.reps} rep(s) × ${opts.servers.join(' + ')}; ` +
    `redis ${redis.version} at ${redis.url}; ${info.cores} cores, ${info.cpu}; ulimit -n ${info.openFilesLimit}`,
)

const rows: Row[] = []
const runLog: (LoadResult & { rep: number; serverProcesses: number; redisCommands: Record<string, number>; serverOutput?: string[]; gc?: GcPauses })[] =
  []
if (opts.gcDir) mkdirSync(opts.gcDir, { recursive: true })
for (const id of opts.scenarios) {
  const scenario = SCENARIOS.find((s) => s.id === id)!
  const params = { ...(opts.quick ? scenario.quick : scenario.full) }
  if (opts.warmupMs !== undefined) params.warmupMs = opts.warmupMs
  // --idle N: (e)'s and (g)'s connections, e.g. (g) at a size one server process holds.
  if ((id === 'e' || id === 'g') && opts.idle) params.idleConnections = opts.idle
  if (id === 'e') {
    // Each idle socket is a file descriptor in this machine's load generator (and one in the server).
    const limit = info.openFilesLimit
    const room = limit - 500
    if (Number.isFinite(limit) && limit > 0 && params.idleConnections! + (params.idleWarmup ?? 0) > room) {
      params.idleWarmup = Math.min(params.idleWarmup ?? 0, Math.floor(room / 10))
      params.idleConnections = Math.max(1, room - params.idleWarmup)
      console.error(`bench: (e) lowered to ${params.idleConnections} connections, ${params.idleWarmup} to warm up: ulimit -n is ${limit}`)
    }
  }
  // (g): server processes enough for every socket within the open-files limit, 1,000 spare each.
  const serverProcesses =
    id === 'g' ? Math.ceil((params.idleConnections! + (params.idleWarmup ?? 0)) / (openFilesLimit() - 1000)) : 1
  console.error(`\n(${id}) ${scenario.title}`)
  if (serverProcesses > 1)
    console.error(`bench: (g) each server runs as ${serverProcesses} processes on one port: ulimit -Hn is ${openFilesLimit()}`)
  const servers = opts.servers.filter((s) => s !== 'floor-multi' || MULTI_FLOOR_SCENARIOS.has(id))
  for (const server of servers) rows.push({ scenario: id, server, runs: [] })
  for (let rep = 0; rep < opts.reps; rep++) {
    // Alternate which server goes first, so drift (thermal, page cache) hits both alike.
    const order = rep % 2 === 0 ? servers : [...servers].reverse()
    for (const server of order) {
      const row = rows.find((r) => r.scenario === id && r.server === server)!
      await redis.client.sendCommand(['FLUSHALL'])
      await redis.client.sendCommand(['CONFIG', 'RESETSTAT'])
      let result: LoadResult
      let running: RunningServer | undefined
      const gcLog = opts.gcDir ? join(opts.gcDir, `${id}-${server}-${rep + 1}.log`) : undefined
      const taskDb = join(tmpdir(), `tasklog-bench-${process.pid}-${id}-${rep + 1}.sqlite`)
      try {
        running = await startBenchServer(
          server,
          redis.url,
          opts.cpuProf ? `${id}-${server}-${rep + 1}.cpuprofile` : undefined,
          gcLog,
          { processes: serverProcesses, taskDb, manyStreams: id === 'g' },
        )
        const budget =
          30_000 +
          3 * (params.warmupMs + params.durationMs + (params.reconnectGapMs ?? 0) + (params.afterReconnectMs ?? 0)) +
          // Opening sockets: well under a millisecond each.
          2 * ((params.idleConnections ?? 0) + (params.idleWarmup ?? 0)) +
          (params.broadcasts ?? 0) * (BROADCAST_WAIT_MS + (params.broadcastGapMs ?? 0))
        result = await runLoadProcess(
          { scenario: id, server, base: running.base, serverPid: running.proc.pid, redisPid: redis.server.pid, params, token: benchToken },
          budget,
        )
      } catch (err) {
        result = { scenario: id, server, ok: false, error: (err as Error).message } as LoadResult
      }
      const redisCommands = commandStats(String(await redis.client.sendCommand(['INFO', 'commandstats'])))
      if (running) {
        if (running.proc.exitCode !== null) {
          result.ok = false
          result.error = `${result.error ? `${result.error}; ` : ''}server exited with code ${running.proc.exitCode}`
        }
        await stop(running.proc)
      }
      for (const suffix of ['', '-wal', '-shm']) rmSync(taskDb + suffix, { force: true })
      const gc = gcLog && running ? gcPauses(readFileSync(gcLog, 'utf8')) : undefined
      row.runs.push(result)
      runLog.push({
        ...result,
        rep,
        serverProcesses,
        redisCommands,
        serverOutput: result.ok ? undefined : running?.output.slice(-15),
        gc,
      })
      if (!result.ok) console.error(`  ${server} rep ${rep + 1}: FAILED: ${result.error}`)
      else {
        const c = result.correctness
        console.error(
          `  ${server.padEnd(11)} rep ${rep + 1}: ${fmt(result.acksPerS)} acks/s, ${fmt(result.deliveriesPerS)} deliveries/s, ` +
            `e2e p50 ${fmt(result.e2e.p50)} p99 ${fmt(result.e2e.p99)} ms, CPU ${fmt(result.serverCpuMsPerLog, 4)} ms/log, ` +
            `RSS ${fmt(result.serverRssKiB / 1024, 1)} MiB, load gen CPU ${fmt(result.loaderCpuPct, 0)}%, ` +
            `other CPU ${fmt(result.otherCpuPct, 0)}%` +
            (result.idle ? `, ${fmt(result.idle.bytesPerConnection / 1024)} KiB/conn` : '') +
            (result.catchUp ? `, catch-up max ${fmt(result.catchUp.max)} ms` : '') +
            (result.broadcast
              ? `, last watcher per broadcast ${result.broadcast.lastMs.map((x) => fmt(x)).join(' / ')} ms ` +
                `(the first, not counted: ${fmt(result.broadcast.warmUpLastMs)} ms, servers' CPU ${fmt(result.broadcast.warmUpSplit.serverCpuMs)} ms) ` +
                `(${result.broadcast.watcherProcesses} watcher processes, ${result.broadcast.sourceAddresses} source addresses)` +
                `\n      per broadcast: watchers paused ${result.broadcast.split.map((s) => fmt(s.idleAfterMs)).join(' / ')} ms, ` +
                `servers waiting for a core ${result.broadcast.split.map((s) => fmt(s.serverWaitMs)).join(' / ')} ms, ` +
                `packets dropped ${result.broadcast.split.map((s) => fmt(s.backlogDrops, 0)).join(' / ')}, ` +
                `TCP retransmits ${result.broadcast.split.map((s) => fmt(s.retransmits, 0)).join(' / ')}; CPU ms: ` +
                `servers ${result.broadcast.split.map((s) => `${fmt(s.serverCpuMs)} (${fmt(100 * s.serverSystemShare, 0)}% system)`).join(' / ')}, ` +
                `load generator ${result.broadcast.split.map((s) => `${fmt(s.loadCpuMs)} (${fmt(100 * s.loadSystemShare, 0)}% system)`).join(' / ')}`
              : '') +
            `, lost/dup/order ${c.lost}/${c.dup}/${c.order}` +
            (gc
              ? `\n      GC pauses: ${gc.eden} Eden, median ${fmt(gc.edenP50)} ms, max ${fmt(gc.edenMax)}; ${gc.full} full, max ${fmt(gc.fullMax)} ms`
              : '') +
            (opts.threads ? `\n      server µs/log by thread: ${threadSummary(result.serverThreadsMsPerLog)}` : '') +
            (result.notes.length ? `\n      notes: ${result.notes.slice(0, 3).join(' | ')}` : ''),
        )
      }
    }
  }
}

await redis.client.close()
await redis.server.stop()

const markdown = table(rows)
const checks = targets(rows)
const elapsedS = (performance.now() - t0) / 1000
console.log(`\n## tasklog vs baseline (${opts.quick ? 'quick, ' : ''}medians of ${opts.reps} rep(s))\n`)
console.log(markdown)
console.log(
  `\nCPU and RSS are the server process's own (/proc/<pid>); e2e is POST sent → frame received. ` +
    `lost/dup/order summed over all runs. Last column of metrics: (e), (g) KiB per idle WebSocket, (f) max ms to catch up after reconnecting. ` +
    `(g): e2e is POST sent → frame received, over every watcher and broadcast; RSS that of all the server's processes.`,
)
console.log(`Machine: ${info.cores} × ${info.cpu}, ${info.memGiB} GiB, Linux ${info.kernel}, Bun ${info.bun}, Redis ${info.redis}.`)
if (opts.auth === 'token') console.log('tasklog ran in token mode, every request and socket with a bearer token (--auth token).')
if (opts.floorWithApp) console.log('The baseline ran with tasklog\'s app loaded beside it, warmed and idle (--floor-with-app).')
const noisy = rows.flatMap((r) => r.runs).filter((r) => r.ok && r.otherCpuPct > 20)
if (noisy.length)
  console.log(
    `\nWarning: ${noisy.length} run(s) shared the machine with other work (> 20% of a core outside server, Redis and ` +
      `load generator; up to ${fmt(Math.max(...noisy.map((r) => r.otherCpuPct)), 0)}%): ` +
      noisy.map((r) => `${r.scenario}/${r.server}`).join(', ') +
      '. Their numbers are noisy; rerun on an idle machine.',
  )
if (checks.length) {
  console.log('\n### Targets\n')
  for (const c of checks) console.log(`- [${c.pass ? 'x' : ' '}] ${c.check}: ${c.value}`)
}

const outDir = join(import.meta.dir, 'results')
mkdirSync(outDir, { recursive: true })
const outFile = opts.out || join(outDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(
  outFile,
  `${JSON.stringify(
    {
      startedAt: startedAt.toISOString(),
      elapsedS,
      options: opts,
      machine: info,
      medians: rows.map((r) => ({ scenario: r.scenario, server: r.server, ...medians(r.runs), correctness: sumCorrectness(r.runs) })),
      targets: checks,
      markdown,
      runs: runLog,
    },
    null,
    2,
  )}\n`,
)
console.log(`\nResults: ${outFile} (${fmt(elapsedS, 1)} s)`)
if (opts.cpuProf) console.log(`CPU profiles: ${opts.cpuProf} (summarize: bun bench/profile-top.ts <file.cpuprofile>)`)

const failedRuns = rows.flatMap((r) => r.runs).filter((r) => !r.ok).length
const total = sumCorrectness(rows.flatMap((r) => r.runs))
const bad = Object.entries(total).filter(([k, v]) => v !== 0 && k !== 'recoveredFalse')
if (failedRuns || bad.length) {
  console.error(
    `bench: FAILED: ${[failedRuns ? `${failedRuns} run(s) failed` : '', ...bad.map(([k, v]) => `${k} ${v}`)].filter(Boolean).join(', ')}`,
  )
  process.exit(1)
}
process.exit(0)
