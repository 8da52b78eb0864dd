/**
 * The benchmark scenarios, with their full and --quick sizes.
 * Times are in ms. `warmupMs` of load runs before measuring starts (JIT, connection pools);
 * logs sent during warm-up still count for correctness, not for rates, latency or CPU.
 * The full runs measure steady state: JavaScriptCore tiers code up by call counts, and at
 * 1,000-2,000 logs/s it FTL-compiles the servers' hot paths (Elysia's handler, the ingest
 * route, node-redis' encoder and decoder, ...) for about 14 s: in (b) tasklog spent 258 ms
 * compiling between 6.5 and 13.5 s, the floor 132 ms (BUN_JSC_reportCompileTimes=1). Those
 * compile bursts take a core from whatever else runs, and with a 5 s warm-up they were most of
 * the difference in (b)'s p99. A server runs for hours, so the measurement starts after 15 s;
 * `--warmup 5000` measures the first seconds instead, and `--threads` shows the JIT's share.
 */
export type ScenarioId = 'a' | 'b' | 'c' | 'd' | 'e' | 'f' | 'g'

export interface LoadParams {
  /** Tasks; each gets `subscribers` WebSocket watchers. */
  tasks: number
  subscribers: number
  /** Closed loop: requests in flight. Open loop: 0 (see `rate`). */
  concurrency: number
  /** Open loop: logs per second over all tasks (0 = closed loop). */
  rate: number
  /** Logs per request (1 = POST .../log, more = POST .../logs). */
  batch: number
  warmupMs: number
  durationMs: number
  /** (e), (g): idle WebSockets to open. */
  idleConnections?: number
  /**
   * (e), (g): idle WebSockets opened, and kept, before memory is first read: what a server
   * compiles and allocates once, for its first connections, is then not counted per connection.
   */
  idleWarmup?: number
  /**
   * (g): logs posted to the task every watcher follows, one at a time, each once all have the one
   * before; after one more that is not counted (a fresh server's first log compiles its paths).
   */
  broadcasts?: number
  /** (g): pause between a broadcast's last arrival and the next broadcast. */
  broadcastGapMs?: number
  /** (f): how long subscribers stay away before reconnecting with `since`. */
  reconnectGapMs?: number
  /** (f): how long the worker keeps logging after the reconnect. */
  afterReconnectMs?: number
  /** WebSockets connecting at once (in (g): per watcher process). */
  connectBatch: number
}

export interface Scenario {
  id: ScenarioId
  title: string
  full: LoadParams
  quick: LoadParams
}

/** Warm-up of the full (a)-(d) runs, in ms. */
const WARMUP = 15_000

const base = { tasks: 1, subscribers: 1, concurrency: 0, rate: 0, batch: 1, connectBatch: 250 }

export const SCENARIOS: Scenario[] = [
  {
    id: 'a',
    title: 'ingest: closed loop, 32 in flight, 1 task, 1 subscriber',
    full: { ...base, concurrency: 32, warmupMs: WARMUP, durationMs: 8000 },
    quick: { ...base, concurrency: 32, warmupMs: 300, durationMs: 1500 },
  },
  {
    id: 'b',
    title: 'fan-out: 1 task × 200 subscribers at 1,000 logs/s',
    full: { ...base, subscribers: 200, rate: 1000, warmupMs: WARMUP, durationMs: 8000 },
    quick: { ...base, subscribers: 50, rate: 1000, warmupMs: 300, durationMs: 1500 },
  },
  {
    id: 'c',
    title: '10 tasks × 10 subscribers at 2,000 logs/s',
    full: { ...base, tasks: 10, subscribers: 10, rate: 2000, warmupMs: WARMUP, durationMs: 8000 },
    quick: { ...base, tasks: 10, subscribers: 10, rate: 2000, warmupMs: 300, durationMs: 1500 },
  },
  {
    id: 'd',
    title: 'batch ingest: 100-line batches, closed loop, 8 in flight, 1 subscriber',
    full: { ...base, concurrency: 8, batch: 100, warmupMs: WARMUP, durationMs: 8000 },
    quick: { ...base, concurrency: 8, batch: 100, warmupMs: 300, durationMs: 1500 },
  },
  {
    id: 'e',
    title: 'idle WebSockets: server memory per connection',
    full: { ...base, subscribers: 0, warmupMs: 0, durationMs: 0, idleConnections: 10_000, idleWarmup: 1000, connectBatch: 500 },
    quick: { ...base, subscribers: 0, warmupMs: 0, durationMs: 0, idleConnections: 1000, idleWarmup: 100, connectBatch: 500 },
  },
  {
    id: 'f',
    title: 'reconnect storm: subscribers drop and reconnect with since while a worker logs at 100/s',
    full: {
      ...base,
      subscribers: 1000,
      rate: 100,
      warmupMs: 2000,
      durationMs: 0,
      reconnectGapMs: 1000,
      afterReconnectMs: 4000,
    },
    quick: {
      ...base,
      subscribers: 200,
      rate: 100,
      warmupMs: 500,
      durationMs: 0,
      reconnectGapMs: 500,
      afterReconnectMs: 1500,
    },
  },
  {
    id: 'g',
    title: '100,000 watchers of one task: idle memory, then one broadcast to all',
    full: {
      ...base,
      subscribers: 0,
      warmupMs: 0,
      durationMs: 0,
      idleConnections: 100_000,
      idleWarmup: 1000,
      broadcasts: 3,
      broadcastGapMs: 1000,
      connectBatch: 100,
    },
    quick: {
      ...base,
      subscribers: 0,
      warmupMs: 0,
      durationMs: 0,
      idleConnections: 2000,
      idleWarmup: 100,
      broadcasts: 3,
      broadcastGapMs: 200,
      connectBatch: 100,
    },
  },
]
