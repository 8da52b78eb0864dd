import { readdirSync } from 'node:fs'
import { version } from '../package.json'
import type { RunningArchiver } from './archive/running-archiver'
import type { ErrorCode } from './errors'
import { LEVELS, levelRank, type Level } from './schemas/common'

/** Why a log ingest request stored nothing, for `tasklog_logs_rejected_total`. */
const REJECTION_REASONS = [
  'validation',
  'payload_too_large',
  'not_found',
  'rate_limited',
  'unavailable',
  'insufficient_storage',
] as const
type RejectionReason = (typeof REJECTION_REASONS)[number]

/** How long the history store's memory figure is reused: Redis answers INFO with a page of text. */
const HISTORY_MEMORY_TTL_MS = 5_000

/** Seconds since the epoch when the process started. */
const START_TIME_SECONDS = Math.round(performance.timeOrigin) / 1000

/** Open file descriptors, where the system lists them (Linux); undefined elsewhere. */
function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length
  } catch {
    return undefined
  }
}

/** A Prometheus metric: its HELP, TYPE and samples (a sample with no labels is just its value). */
const metric = (name: string, type: 'gauge' | 'counter', help: string, samples: [labels: string, value: number][]): string[] => [
  `# HELP ${name} ${help}`,
  `# TYPE ${name} ${type}`,
  ...samples.map(([labels, value]) => `${name}${labels ? `{${labels}}` : ''} ${value}`),
]

/** Upper bounds (seconds) of the request duration histogram. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

class Histogram {
  /** Per bucket, not cumulative (render sums them): one increment per observation. */
  readonly counts = BUCKETS.map(() => 0)
  count = 0
  sum = 0
  observe(seconds: number): void {
    this.count++
    this.sum += seconds
    let i = 0
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++
    if (i < BUCKETS.length) this.counts[i]!++
  }
}

/** Process-wide counters, rendered in the Prometheus text format by `GET /metrics`. */
export class Metrics {
  private readonly ingested = LEVELS.map(() => 0)
  connections = 0
  /** Open Server-Sent Events streams. */
  sseConnections = 0
  storeErrors = 0
  /** Readers dropped for falling behind: WebSockets closed with 1013, SSE streams ended. */
  readonly slowReadersClosed = { websocket: 0, sse: 0 }
  private readonly rejected = new Map<RejectionReason, number>(REJECTION_REASONS.map((reason) => [reason, 0]))
  private rateLimitedRequests = 0
  private historyMemory: { bytes: number | undefined; at: number } = { bytes: undefined, at: -Infinity }
  /** route -> method -> status -> histogram: no string is built per request. */
  private readonly durations = new Map<string, Map<string, Map<number, Histogram>>>()

  constructor(
    private readonly hub: { readonly subscriptions: number; readonly framesSent: number; readonly interruptions: number },
    private readonly history: { usedMemory(): Promise<number> },
    /** A supervisor's worker number: every sample gains a `worker` label (the workers share a port). */
    private readonly worker?: number,
    /** With ARCHIVE_DAYS > 0: the archiver, whose figures /metrics shows. */
    private readonly archiver?: RunningArchiver,
  ) {}

  /** The archiver's figures; its backlog only while the history store answers. */
  private async archiveLines(): Promise<string[]> {
    const archiver = this.archiver
    if (!archiver) return []
    const backlog = await archiver.backlog().catch(() => undefined)
    return [
      ...(backlog === undefined
        ? []
        : [
            ...metric(
              'tasklog_archive_lag_seconds',
              'gauge',
              'Age of the oldest log not archived yet, in seconds; 0 when none waits.',
              [['', backlog.lagSeconds]],
            ),
            ...metric('tasklog_archive_pending_tasks', 'gauge', 'Tasks with logs not archived yet.', [['', backlog.tasks]]),
          ]),
      ...metric('tasklog_archive_rows_written_total', 'counter', 'Logs this instance wrote to the archive.', [
        ['', archiver.rowsWritten],
      ]),
      ...metric(
        'tasklog_archive_errors_total',
        'counter',
        'Archiver rounds that failed, with failed attempts to open its stores and deaths of its thread (all are retried).',
        [['', archiver.errors]],
      ),
      ...metric(
        'tasklog_archive_gaps_total',
        'counter',
        'Batches whose first log did not follow the last archived one: logs left history before they were archived (or a task whose whole history expired began again).',
        [['', archiver.gaps]],
      ),
    ]
  }

  /** A log ingest request refused: counted when its error is one of REJECTION_REASONS. */
  logsRejected(code: ErrorCode): void {
    const count = this.rejected.get(code as RejectionReason)
    if (count !== undefined) this.rejected.set(code as RejectionReason, count + 1)
  }

  /** A request refused with 429 by a rate limit. */
  requestRateLimited(): void {
    this.rateLimitedRequests++
  }

  logIngested(level: Level): void {
    this.ingested[levelRank(level)]!++
  }

  /** `route` is the route pattern (e.g. /api/v1/tasks/:task_id), so label cardinality stays bounded. */
  requestFinished(method: string, route: string, status: number, seconds: number): void {
    let byMethod = this.durations.get(route)
    if (!byMethod) this.durations.set(route, (byMethod = new Map()))
    let byStatus = byMethod.get(method)
    if (!byStatus) byMethod.set(method, (byStatus = new Map()))
    let h = byStatus.get(status)
    if (!h) byStatus.set(status, (h = new Histogram()))
    h.observe(seconds)
  }

  /** The history store's memory, asked at most every HISTORY_MEMORY_TTL_MS; undefined while it cannot answer. */
  private async historyMemoryBytes(): Promise<number | undefined> {
    const now = performance.now()
    if (now - this.historyMemory.at < HISTORY_MEMORY_TTL_MS) return this.historyMemory.bytes
    const bytes = await this.history.usedMemory().catch(() => undefined)
    this.historyMemory = { bytes: Number.isFinite(bytes) ? bytes : undefined, at: now }
    return this.historyMemory.bytes
  }

  /** Process-level metrics, named as Prometheus' client libraries name them. */
  private processLines(): string[] {
    const cpu = process.cpuUsage()
    const fds = openFds()
    return [
      ...metric('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, in seconds.', [
        ['', (cpu.user + cpu.system) / 1e6],
      ]),
      ...metric('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', [['', process.memoryUsage.rss()]]),
      ...(fds === undefined ? [] : metric('process_open_fds', 'gauge', 'Open file descriptors.', [['', fds]])),
      ...metric('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch, in seconds.', [
        ['', START_TIME_SECONDS],
      ]),
      ...metric('tasklog_build_info', 'gauge', 'The running version of tasklog and of Bun; always 1.', [
        [`version="${version}",bun="${Bun.version}"`, 1],
      ]),
    ]
  }

  async render(): Promise<string> {
    const historyBytes = await this.historyMemoryBytes()
    const lines = [
      ...this.processLines(),
      ...(await this.archiveLines()),
      ...metric('tasklog_sse_connections', 'gauge', 'Open Server-Sent Events streams.', [['', this.sseConnections]]),
      ...metric(
        'tasklog_slow_readers_closed_total',
        'counter',
        'Watchers dropped for falling behind (WebSocket: closed with 1013); they resume with since.',
        Object.entries(this.slowReadersClosed).map(([transport, n]) => [`transport="${transport}"`, n]),
      ),
      ...metric(
        'tasklog_logs_rejected_total',
        'counter',
        'Log ingest requests (one log or a batch) that stored nothing, by reason (the error code).',
        [...this.rejected].map(([reason, n]) => [`reason="${reason}"`, n]),
      ),
      ...metric('tasklog_rate_limited_requests_total', 'counter', 'Requests refused with 429 by a rate limit.', [
        ['', this.rateLimitedRequests],
      ]),
      ...(historyBytes === undefined
        ? []
        : metric(
            'tasklog_history_memory_bytes',
            'gauge',
            "Memory the log history takes: Redis' used_memory, or the in-process history's bytes.",
            [['', historyBytes]],
          )),
      '# HELP tasklog_websocket_connections Open WebSocket connections.',
      '# TYPE tasklog_websocket_connections gauge',
      `tasklog_websocket_connections ${this.connections}`,
      '# HELP tasklog_subscriptions Task subscriptions (WebSocket and SSE) on this instance.',
      '# TYPE tasklog_subscriptions gauge',
      `tasklog_subscriptions ${this.hub.subscriptions}`,
      '# HELP tasklog_logs_ingested_total Logs stored, by level.',
      '# TYPE tasklog_logs_ingested_total counter',
      ...LEVELS.map((level, i) => `tasklog_logs_ingested_total{level="${level}"} ${this.ingested[i]}`),
      '# HELP tasklog_frames_sent_total Log and status frames delivered to subscribers.',
      '# TYPE tasklog_frames_sent_total counter',
      `tasklog_frames_sent_total ${this.hub.framesSent}`,
      '# HELP tasklog_live_delivery_interruptions_total Times this instance lost its Redis subscriber connection and closed its watchers so that they resume from history.',
      '# TYPE tasklog_live_delivery_interruptions_total counter',
      `tasklog_live_delivery_interruptions_total ${this.hub.interruptions}`,
      '# HELP tasklog_store_errors_total Requests that failed because a store was unavailable.',
      '# TYPE tasklog_store_errors_total counter',
      `tasklog_store_errors_total ${this.storeErrors}`,
      '# HELP tasklog_http_request_duration_seconds HTTP request durations.',
      '# TYPE tasklog_http_request_duration_seconds histogram',
    ]
    for (const [route, byMethod] of this.durations)
      for (const [method, byStatus] of byMethod)
        for (const [status, h] of byStatus) {
          const labels = `method="${method}",route="${route}",status="${status}"`
          let cumulative = 0
          BUCKETS.forEach((le, i) => {
            cumulative += h.counts[i]!
            lines.push(`tasklog_http_request_duration_seconds_bucket{${labels},le="${le}"} ${cumulative}`)
          })
          lines.push(`tasklog_http_request_duration_seconds_bucket{${labels},le="+Inf"} ${h.count}`)
          lines.push(`tasklog_http_request_duration_seconds_sum{${labels}} ${h.sum}`)
          lines.push(`tasklog_http_request_duration_seconds_count{${labels}} ${h.count}`)
        }
    return (this.worker === undefined ? lines : lines.map((line) => withLabel(line, `worker="${this.worker}"`))).join('\n') + '\n'
  }
}

/** A sample line with `label` first among its labels; comment lines as they are. */
function withLabel(line: string, label: string): string {
  if (line.startsWith('#')) return line
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]
  const rest = line.slice(name.length)
  return rest.startsWith('{') ? `${name}{${label},${rest.slice(1)}` : `${name}{${label}}${rest}`
}
