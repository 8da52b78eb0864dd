/** tasklog client SDK (`tasklog/client`): runs wherever `fetch` and `WebSocket` exist (Bun, Node 22+, browsers). */
export { WorkerLogger, type WorkerLoggerOptions, type LoggerStats, type DeliveryError } from './worker-logger'
export { LogStreamClient, type LogStreamOptions, type SubscribeOptions, type StreamEvents } from './log-stream-client'
export { TasklogApi, TasklogApiError, type LogQuery, type TaskQuery } from './api'
export { compareLogIds } from '../shared/log-id'
export * from './types'
