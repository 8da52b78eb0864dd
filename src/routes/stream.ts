import { Elysia, t } from 'elysia'
import { notFound } from '../errors'
import type { Hub } from '../logs/hub'
import type { Logger } from '../logger'
import type { Metrics } from '../metrics'
import type { TObject } from '@sinclair/typebox'
import { Input, LevelSchema, LogId, QueryInteger, TaskParams, UuidInput } from '../schemas/common'
import { canonicalId } from '../../clients/ts/src/ids'
import { ErrorBody } from '../schemas/error'
import { requestInfo } from '../http/request-info'
import type { KnownTasks } from '../tasks/known-tasks'
import { sseResponse } from './stream-sse'
import { MAX_SUBSCRIPTIONS, OpenSockets, WebSocketConnection, type StreamContext } from './stream-websocket'

/** The start of a stream, as the SSE route's documented example. */
const sseExample = [
  'retry: 2000',
  'event: subscribed',
  'data: {"task_id":"01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f"}',
  '',
  'id: 1764152130123-0',
  'event: log',
  `data: {"id":"1764152130123-0","task_id":"01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f","subtask_id":"01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e70","level":"info","message":"Processing step 1","metadata":{"step":1},"worker_id":"worker-7","worker_name":"builder-7","timestamp":"2026-11-26T10:15:30.123Z"}`,
  '',
  'event: status',
  `data: {"task_id":"01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f","subtask_id":"01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e70","status":"completed","task_status":"in_progress","worker_name":"builder-7"}`,
  '',
  ': heartbeat',
  '',
  '',
].join('\n')

/** A stream's options, the same for both transports. */
const streamQuery = (historyMax: number) =>
  Input({
    since: t.Optional(LogId),
    history: t.Optional(QueryInteger('history', 0, historyMax, { description: 'Replay the newest n logs first' })),
    level: t.Optional(LevelSchema),
  })

/**
 * OpenAPI has no words for WebSocket messages: the route points at their schemas (named in
 * routes/docs.ts) in its description and in extension fields a tool can follow. Its query is
 * checked when the socket opens (a bad one closes it with 1008), so it is documented here.
 */
const webSocketDoc = (query: TObject) => ({
  tags: ['stream'],
  parameters: [
    // As the OpenAPI plugin writes the SSE route's.
    ...Object.entries({ task_id: UuidInput, ...query.properties }).map(([name, schema]) => ({
      name,
      in: name === 'task_id' ? 'path' : 'query',
      required: name === 'task_id',
      schema,
    })),
  ],
  summary: 'Follow a task over WebSocket',
  description: [
    'Query: `since=<log id>`, `history=<n>`, `level=<min level>`. Every message is JSON text.',
    'The server sends `ServerFrame`s `{ type, data?, timestamp }` (see Schemas): `subscribed`, then replayed logs, then live `log` and `status` frames; `pong` and `error` answer actions.',
    `The client may send \`ClientAction\`s: \`{"action":"ping"}\`, \`{"action":"subscribe","task_id":…,"since"?,"history"?,"level"?}\` (at most ${MAX_SUBSCRIPTIONS} tasks per connection), \`{"action":"unsubscribe","task_id":…}\`.`,
    'An unknown task or an invalid query is accepted, then closed with code 1008; after 1013 (try again later) or 1012 (server shutting down), reconnect with `since` to resume.',
  ].join('\n\n'),
  responses: {
    101: { description: 'Switched to WebSocket: the server sends `ServerFrame`s, the client may send `ClientAction`s' },
  },
  'x-websocket-server-frames': { $ref: '#/components/schemas/ServerFrame' },
  'x-websocket-client-actions': { $ref: '#/components/schemas/ClientAction' },
})

export const streamRoutes = (
  tasks: KnownTasks,
  hub: Hub,
  metrics: Metrics,
  sockets: OpenSockets,
  logger: Logger,
  limits: { historyMax: number; maxJsonDepth: number },
) => {
  const { historyMax } = limits
  const query = streamQuery(historyMax)
  const context: StreamContext = { tasks, hub, metrics, historyMax, maxJsonDepth: limits.maxJsonDepth, sockets, logger }
  hub.onInterrupted((reason) => sockets.closeWatching(1013, reason))

  return (
    new Elysia({ name: 'stream', prefix: '/api/v1' })
      .get(
        '/ws/tasks/:task_id/logs',
        // Upgraded here rather than with Elysia's ws(), which keeps the whole request context
        // per connection; the socket's data is just its WebSocketConnection.
        ({ request, server, params, query, set }) => {
          // Ids in any form paths take (schemas/common.ts UuidInput).
          const connection = new WebSocketConnection(context, canonicalId(params.task_id), query)
          const info = requestInfo(set)
          if (server?.upgrade(request, { data: connection, headers: info && { 'x-request-id': info.id } })) {
            if (info) info.upgraded = true
            return
          }
          set.status = 426
          set.headers['upgrade'] = 'websocket'
          return { error: 'upgrade_required', message: 'This endpoint speaks WebSocket: connect with a WebSocket client' }
        },
        {
          response: { 426: ErrorBody },
          detail: webSocketDoc(query),
        },
      )
      .get(
        '/tasks/:task_id/logs/stream',
        async ({ params, query, headers }) => {
          const taskId = canonicalId(params.task_id)
          if (!(await tasks.exists(taskId))) throw notFound('Task', params.task_id)
          const since = headers['last-event-id'] ?? query.since
          return sseResponse(hub, metrics, taskId, query.level ?? 'debug', { since, history: query.history })
        },
        {
          params: TaskParams,
          query,
          headers: Input({ 'last-event-id': t.Optional(LogId) }),
          response: { 404: ErrorBody, 422: ErrorBody },
          detail: {
            tags: ['stream'],
            summary: 'Follow a task with Server-Sent Events',
            description:
              "For clients that cannot use WebSocket. Events: `subscribed` first on every (re)connection (its data is the WebSocket `subscribed` frame's: `task_id`, and `recovered` when resuming), then `log` (with `id:` = log id) and `status`. Resumes after `Last-Event-ID` or `?since=`; a comment heartbeat every 15 s.",
            responses: {
              200: {
                description:
                  'An endless `text/event-stream`: a `subscribed` event (`data:` `{ task_id, recovered? }`), then `log` events (`data:` a `LogMessage`, `id:` its id) and `status` events (`data:` a `StatusChange`)',
                content: { 'text/event-stream': { schema: { type: 'string' }, example: sseExample } },
              },
            },
          },
        },
      )
  )
}
