import { LEVELS, levelRank, type Level } from './schemas/common'

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
  storeErrors = 0
  /** route -> method -> status -> histogram: no string is built per request. */
  private readonly durations = new Map<string, Map<string, Map<number, Histogram>>>()

  constructor(
    private readonly hub: { readonly subscriptions: number; readonly framesSent: number; readonly interruptions: number },
  ) {}

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

  render(): string {
    const lines = [
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
    return lines.join('\n') + '\n'
  }
}
