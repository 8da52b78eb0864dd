import { Elysia } from 'elysia'
import type { Config } from './config'
import { ApiError, toErrorResponse } from './errors'
import { Metrics } from './metrics'
import type { HistoryStore } from './logs/history-store'
import { Hub } from './logs/hub'
import { docsRoutes } from './routes/docs'
import { logRoutes } from './routes/logs'
import { opsRoutes } from './routes/ops'
import { streamRoutes } from './routes/stream'
import { subtaskRoutes } from './routes/subtasks'
import { taskRoutes } from './routes/tasks'
import { simpleDecomposer, type Decomposer } from './tasks/decompose'
import { KnownTasks } from './tasks/known-tasks'
import { SubtaskDirectory } from './tasks/subtask-directory'
import type { TaskStore } from './tasks/task-store'

export interface AppDeps {
  config: Config
  tasks: TaskStore
  history: HistoryStore
  decomposer?: Decomposer
}

const JSON_TYPE = /^application\/([\w.+-]+\+)?json\b/i

/** Builds the whole service; `index.ts` listens, tests build their own with their own stores. */
export function createApp({ config, tasks, history, decomposer = simpleDecomposer }: AppDeps) {
  const hub = new Hub(history, { replayMax: config.logHistoryMax })
  const metrics = new Metrics(hub)
  const subtasks = new SubtaskDirectory(tasks)
  /** Request durations by route pattern. */
  const started = new WeakMap<Request, number>()
  const recordDuration = (request: Request, route: string | undefined, status: unknown) => {
    const start = started.get(request)
    if (start === undefined || !route) return
    metrics.requestFinished(request.method, route, Number(status ?? 200), (performance.now() - start) / 1000)
  }
  const knownTasks = new KnownTasks(tasks)
  return (
    new Elysia({
      // Validate input as sent, without Elysia's normalizing pass: it cost a quarter of ingest CPU,
      // and its default mirror coerced a string `metadata` into an object. Request schemas accept
      // unknown fields instead (schemas/common.ts Input).
      normalize: false,
      serve: {
        maxRequestBodySize: config.maxBodyBytes + 1024,
        // Elysia defaults to Bun's development mode unless NODE_ENV=production, and to reusePort,
        // which lets a second server silently share a port that is already in use.
        development: false,
        reusePort: false,
      },
      websocket: {
        idleTimeout: config.wsIdleTimeoutSeconds,
        sendPings: true,
        // The stream route closes slow readers with 1013 at wsBackpressureBytes; this hard cap
        // catches bursts between its checks (Bun closes those abruptly, with 1006, rather than
        // silently dropping frames).
        backpressureLimit: 16 * config.wsBackpressureBytes,
        closeOnBackpressureLimit: true,
        maxPayloadLength: 64 * 1024,
      },
    })
      .decorate('hub', hub)
      .onStart(({ server }) => {
        if (server) hub.attach(server)
      })
      // Hooks destructure what they use: Elysia infers from that which request parts to parse,
      // and a hook taking the whole context made it parse cookies and headers on every request.
      .onRequest(({ request }) => {
        started.set(request, performance.now())
      })
      // Not async: the common case (application/json) returns at once, without a promise.
      .onParse(({ request, contentType }) => {
        // WebSocket upgrades are GETs that Elysia would otherwise try to parse.
        if (request.method === 'GET') return
        // Checked before reading; Bun's maxRequestBodySize stops a body that lies about its length.
        const length = Number(request.headers.get('content-length'))
        if (length > config.maxBodyBytes)
          throw new ApiError('payload_too_large', `Request body is ${length} bytes; at most ${config.maxBodyBytes} are accepted`)
        // Plain JSON goes to Elysia's native parser (malformed JSON becomes its PARSE error).
        if (contentType?.startsWith('application/json')) return
        // Other JSON types, and a missing Content-Type so that minimal clients work, are read as JSON.
        if (contentType && !JSON_TYPE.test(contentType))
          throw new ApiError('validation', `Content-Type must be application/json, not ${contentType}`, [
            { path: '/', message: 'unsupported content type' },
          ])
        return request.text().then((text) => {
          try {
            return JSON.parse(text)
          } catch {
            throw new ApiError('validation', 'Request body is not valid JSON', [{ path: '/', message: 'malformed JSON' }])
          }
        })
      })
      // Durations are recorded inline: onAfterResponse would cost an extra event-loop turn per request.
      .onAfterHandle(({ request, route, set }) => recordDuration(request, route, set.status))
      .onError(({ code, error, set, request, route }) => {
        const failure = toErrorResponse(code, error)
        if (failure.code === 'internal') console.error(error)
        if (failure.code === 'unavailable') metrics.storeErrors++
        set.status = failure.status
        recordDuration(request, route, failure.status)
        if (failure.headers) Object.assign(set.headers, failure.headers)
        return failure.toJSON()
      })
      .use(docsRoutes)
      .use(
        opsRoutes(metrics, [
          { name: 'tasks', ping: () => tasks.ping() },
          { name: 'history', ping: () => history.ping() },
        ]),
      )
      .use(taskRoutes(tasks, decomposer))
      .use(subtaskRoutes(tasks, subtasks, hub))
      .use(
        logRoutes({
          tasks: knownTasks,
          subtasks,
          history,
          hub,
          metrics,
          limits: {
            maxMessageBytes: config.maxMessageBytes,
            maxMetadataBytes: config.maxMetadataBytes,
            maxBatch: config.maxBatch,
          },
        }),
      )
      .use(
        streamRoutes(knownTasks, hub, metrics, {
          historyMax: config.logHistoryMax,
          backpressureBytes: config.wsBackpressureBytes,
        }),
      )
  )
}

export type App = ReturnType<typeof createApp>
