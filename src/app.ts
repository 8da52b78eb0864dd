import { Elysia } from 'elysia'
import type { RunningArchiver } from './archive/running-archiver'
import { Access } from './auth/access'
import { ConnectionLimit } from './auth/connection-limit'
import { Origins } from './auth/origins'
import type { Config } from './config'
import { errorHandler } from './http/error-handler'
import { jsonBody } from './http/json-body'
import { requestLog } from './http/request-log'
import { workerHeader } from './http/worker-header'
import { fallbackLogger, type Logger } from './logger'
import { Metrics } from './metrics'
import type { LogBackend } from './logs/backend'
import { Hub } from './logs/hub'
import { docsRoutes } from './routes/docs'
import { logRoutes } from './routes/logs'
import { opsRoutes } from './routes/ops'
import { streamRoutes } from './routes/stream'
import { OpenSockets } from './routes/stream-websocket'
import { subtaskRoutes } from './routes/subtasks'
import { taskRoutes } from './routes/tasks'
import { tokenRoutes } from './routes/tokens'
import { webRoutes } from './routes/web'
import { simpleDecomposer, type Decomposer } from './tasks/decompose'
import { KnownTasks } from './tasks/known-tasks'
import { SubtaskDirectory } from './tasks/subtask-directory'
import type { TaskStore } from './tasks/task-store'

export interface AppDeps {
  config: Config
  tasks: TaskStore
  /** History, feed and presence, from one engine (logs/backend.ts openBackend). */
  logs: Pick<LogBackend, 'history' | 'feed' | 'presence'>
  decomposer?: Decomposer
  /** With ARCHIVE_DAYS > 0: its state for /ready, its figures for /metrics. */
  archiver?: RunningArchiver
  /** Access log, warnings and errors; without one, errors go to stderr. */
  logger?: Logger
}

/**
 * Builds the whole service; `index.ts` listens, tests build their own with their own stores.
 * Besides Elysia's own, the app offers `closeSockets(code, reason)` for shutdown.
 */
export function createApp({ config, tasks, logs, archiver, decomposer = simpleDecomposer, logger = fallbackLogger() }: AppDeps) {
  const { history, feed } = logs
  const hub = new Hub(logs, { replayMax: config.logHistoryMax, logger })
  const metrics = new Metrics(hub, history, config.worker, archiver)
  const sockets = new OpenSockets(config.wsBackpressureBytes, metrics)
  const subtasks = new SubtaskDirectory(tasks)
  const knownTasks = new KnownTasks(tasks)
  const access = new Access(config.authMode, config.authSecret)
  const origins = new Origins(config.corsOrigins)
  const connections = new ConnectionLimit(config.maxConnectionsPerClient)
  const app = new Elysia({
    // Validate input as sent, without Elysia's normalizing pass: it is a large part of ingest CPU,
    // and its default mirror coerces a string `metadata` into an object. Request schemas accept
    // unknown fields instead (schemas/common.ts Input).
    normalize: false,
    serve: {
      maxRequestBodySize: config.maxBodyBytes + 1024,
      // Elysia defaults to Bun's development mode unless NODE_ENV=production, and to reusePort,
      // which lets a second server silently share a port that is already in use: only a
      // supervisor's workers share theirs, on purpose.
      development: false,
      reusePort: config.worker !== undefined,
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
      if (!server) return
      hub.attach(server)
      access.listening(server.hostname)
    })
    .use(origins.plugin())
    .use(requestLog(metrics, logger))
    .use(workerHeader(config.worker))
    .use(errorHandler(metrics, logger))
    .use(jsonBody({ maxBodyBytes: config.maxBodyBytes, maxJsonDepth: config.maxJsonDepth }))
    .use(docsRoutes)
    .use(webRoutes)
    .use(
      opsRoutes(
        metrics,
        [
          { name: 'tasks', ping: () => tasks.ping() },
          { name: 'history', ping: () => history.ping() },
          { name: 'feed', ping: () => feed.sync() },
        ],
        config.storeTimeoutMs,
        access,
        archiver && (() => archiver.readiness()),
      ),
    )
    .use(tokenRoutes(access))
    .use(taskRoutes(tasks, decomposer, access))
    .use(subtaskRoutes(tasks, subtasks, hub, access))
    .use(
      logRoutes({
        tasks: knownTasks,
        subtasks,
        history,
        hub,
        metrics,
        access,
        limits: {
          maxMessageBytes: config.maxMessageBytes,
          maxMetadataBytes: config.maxMetadataBytes,
          maxBatch: config.maxBatch,
          rateBurst: config.rateLimit.perSecond > 0 ? config.rateLimit.burst : 0,
        },
      }),
    )
    .use(
      streamRoutes(
        knownTasks,
        hub,
        metrics,
        sockets,
        logger,
        { historyMax: config.logHistoryMax, maxJsonDepth: config.maxJsonDepth },
        { access, origins, connections },
      ),
    )
  return Object.assign(app, {
    /** Closes every WebSocket with `code` (1012 on shutdown: clients come back and resume). */
    closeSockets: (code: number, reason: string) => sockets.closeAll(code, reason),
  })
}

export type App = ReturnType<typeof createApp>
