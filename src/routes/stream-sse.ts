import type { Hub } from '../logs/hub'
import type { ReplayRequest, Watcher } from '../logs/watcher'
import type { Metrics } from '../metrics'
import type { Level } from '../schemas/common'

/** Comment heartbeat, so proxies and clients see a live connection. */
const SSE_HEARTBEAT_MS = 15_000
/** Frames queued for one SSE reader before it is dropped; EventSource then reconnects with Last-Event-ID. */
const SSE_QUEUE_MAX = 1_000
/** Replay pauses while more than this many frames wait for the reader. */
const SSE_QUEUE_REPLAY = 64

/** Longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1
const encoder = new TextEncoder()

/** How the stream's life is bounded: it ends when the caller's token `expires` (ms since the epoch); `ended` runs once it is over. */
interface SseLifetime {
  expires: number
  ended: () => void
}

export function sseResponse(
  hub: Hub,
  metrics: Pick<Metrics, 'sseConnections' | 'slowReadersClosed'>,
  taskId: string,
  minLevel: Level,
  replay: ReplayRequest,
  life: SseLifetime,
): Response {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  let heartbeat: ReturnType<typeof setInterval> | undefined
  let expiry: ReturnType<typeof setTimeout> | undefined
  const expireAt = () => {
    const left = life.expires - Date.now()
    if (left <= 0) return end()
    expiry = setTimeout(expireAt, Math.min(left, MAX_TIMER_MS))
  }
  let open = true
  let pullWaiters: (() => void)[] = []
  const wake = () => {
    const waiters = pullWaiters
    pullWaiters = []
    for (const w of waiters) w()
  }
  /** Ends the stream's own part once, whoever ends it first (the reader, the hub, expiry); false if it had ended. */
  const release = (): boolean => {
    if (!open) return false
    open = false
    metrics.sseConnections--
    clearInterval(heartbeat)
    clearTimeout(expiry)
    life.ended()
    wake()
    return true
  }
  const stop = () => {
    if (release()) hub.unwatch(taskId, watcher)
  }
  const end = () => {
    if (!open) return
    stop()
    controller.close()
  }
  /** Queues one event; true when the reader is behind. */
  const write = (text: string): boolean => {
    if (!open) return false
    const queued = -(controller.desiredSize ?? 0)
    if (queued >= SSE_QUEUE_MAX) {
      metrics.slowReadersClosed.sse++
      end()
      return false
    }
    controller.enqueue(encoder.encode(text))
    return queued >= SSE_QUEUE_REPLAY
  }
  const watcher: Watcher = {
    minLevel,
    // The WebSocket `subscribed` frame's data, as an event: EventSource drops comments, and a
    // client resuming with Last-Event-ID learns from `recovered` whether history had a gap.
    subscribed: (recovered) =>
      write(
        `retry: 2000\nevent: subscribed\ndata: ${JSON.stringify(recovered === undefined ? { task_id: taskId } : { task_id: taskId, recovered })}\n\n`,
      ),
    sendLog: (log) => write(`id: ${log.id}\nevent: log\ndata: ${log.data}\n\n`),
    sendStatus: (data) => write(`event: status\ndata: ${data}\n\n`),
    drained: () => (open ? new Promise((resolve) => pullWaiters.push(resolve)) : Promise.resolve()),
    batch: (send) => send(),
    lost: end,
    // No native topic for a stream: the hub hands it each event.
    join: (taskId, live) => live.listen(taskId, watcher),
    leave: (taskId, live) => live.unlisten(taskId, watcher),
  }
  const stream = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c
        metrics.sseConnections++
        heartbeat = setInterval(() => write(': heartbeat\n\n'), SSE_HEARTBEAT_MS)
        if (life.expires !== Infinity) expireAt()
        // The hub has already forgotten a watcher whose watch failed; the reader may have gone too.
        hub.watch(taskId, watcher, replay).catch(() => {
          if (release()) controller.close()
        })
      },
      pull: wake,
      cancel: stop,
    },
    { highWaterMark: 0 },
  )
  return new Response(stream, {
    headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' },
  })
}
