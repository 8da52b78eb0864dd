/** tasklog client SDK (`tasklog-client`): runs wherever `fetch` and `WebSocket` exist (Bun, Node 22+, browsers). */
export { WorkerLogger, type WorkerLoggerOptions, type LoggerStats, type DeliveryError } from './worker-logger.js'
export { LogStreamClient, type LogStreamOptions, type SubscribeOptions, type StreamEvents } from './log-stream-client.js'
export { TasklogApi, TasklogApiError, type LogQuery, type TaskQuery, type TasklogApiOptions } from './api.js'
export { compareLogIds } from './log-id.js'
export * from './types.js'
