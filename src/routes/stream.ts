import { Elysia, t } from 'elysia'
import type { Access } from '../auth/access'
import { requires } from '../auth/scopes'
import type { ConnectionLimit } from '../auth/connection-limit'
import type { Origins } from '../auth/origins'
import { ApiError, notFound } from '../errors'
import type { Hub } from '../logs/hub'
import type { Logger } from '../logger'
import type { Metrics } from '../metrics'
import type { TObject } from '@sinclair/typebox'
import type { Server } from 'elysia/universal'
import { Input, LevelSchema, LogId, QueryInteger, TaskParams, UuidInput } from '../schemas/common'
import { canonicalId } from '../../clients/ts/src/ids'
import { ErrorBody } from '../schemas/error'
import { requestInfo } from '../http/request-info'
import type { KnownTasks } from '../tasks/known-tasks'
import { sseResponse } from './stream-sse'
import { MAX_SUBSCRIPTIONS, OpenSockets, WebSocketConnection, type Admission, type StreamContext } from './stream-websocket'

/** Who may open a stream: the caller's token and scope, the page's origin, the client's open connections. */
interface StreamGuard {
  access: Access
  origins: Origins
  connections: ConnectionLimit
}

/** A WebSocket close reason holds at most 123 bytes. */
const closeReason = (text: string) => (text.length > 120 ? `${text.slice(0, 119)}…` : text)

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
    token: t.Optional(t.String({ description: 'A bearer token, for clients that cannot send an Authorization header' })),
  })

/**
 * OpenAPI has no words for WebSocket messages: the route points at their schemas (named in
 * routes/docs.ts) in its description and in extension fields a tool can follow. Its query is
 * checked when the socket opens (a bad one closes it with 1008), so it is documented here.
 */
const webSocketDoc = (query: TObject) => ({
  ...requires('logs:read'),
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
    'In token mode the token (`?token=` or `Authorization: Bearer`) needs `logs:read`: a missing, invalid or expired one is accepted, then closed with 4001 before any frame, one not allowed to read the task with 4003; a token expiring while the socket is open closes it with 4001. A page from another origin than the server and CORS_ORIGINS gets 403, a client past MAX_CONNECTIONS_PER_CLIENT 429, before the upgrade.',
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
  guard: StreamGuard,
) => {
  const { access, origins, connections } = guard
  /** Admits a WebSocket: an HTTP error (origin, local mode, too many connections) is thrown before the upgrade. */
  async function admit(
    request: Request,
    server: Server | null,
    set: object,
    taskId: string,
    token: string | undefined,
  ): Promise<Admission> {
    origins.check(request)
    let caller
    try {
      caller = await access.authenticate(request, server, set, token)
    } catch (error) {
      if (error instanceof ApiError && error.code === 'unauthorized') return { close: 4001, reason: closeReason(error.message) }
      throw error
    }
    if (!access.mayRead(caller, taskId)) return { close: 4003, reason: `This token may not read task ${taskId}` }
    return { caller, client: connections.acquire(access.client(caller, request, server)) }
  }

  const { historyMax } = limits
  const query = streamQuery(historyMax)
  const context: StreamContext = { tasks, hub, metrics, historyMax, maxJsonDepth: limits.maxJsonDepth, sockets, logger, access }
  hub.onInterrupted((reason) => sockets.closeWatching(1013, reason))

  return (
    new Elysia({ name: 'stream', prefix: '/api/v1' })
      .get(
        '/ws/tasks/:task_id/logs',
        // Upgraded here rather than with Elysia's ws(), which keeps the whole request context
        // per connection; the socket's data is just its WebSocketConnection.
        async ({ request, server, params, query, set }) => {
          // Ids in any form paths take (schemas/common.ts UuidInput).
          const taskId = canonicalId(params.task_id)
          const admission = await admit(request, server, set, taskId, query.token)
          const connection = new WebSocketConnection(context, taskId, query, admission)
          const info = requestInfo(set)
          if (server?.upgrade(request, { data: connection, headers: info && { 'x-request-id': info.id } })) {
            if (info) info.upgraded = true
            return
          }
          if ('client' in admission) admission.client.release()
          set.status = 426
          set.headers['upgrade'] = 'websocket'
          return { error: 'upgrade_required', message: 'This endpoint speaks WebSocket: connect with a WebSocket client' }
        },
        {
          response: { 403: ErrorBody, 426: ErrorBody, 429: ErrorBody },
          detail: webSocketDoc(query),
        },
      )
      .get(
        '/tasks/:task_id/logs/stream',
        async ({ request, server, set, params, query, headers }) => {
          origins.check(request)
          const taskId = canonicalId(params.task_id)
          const caller = access.permit(await access.authenticate(request, server, set, query.token), 'logs:read', taskId)
          if (!(await tasks.exists(taskId))) throw notFound('Task', params.task_id)
          const since = headers['last-event-id'] ?? query.since
          const client = connections.acquire(access.client(caller, request, server))
          return sseResponse(
            hub,
            metrics,
            taskId,
            query.level ?? 'debug',
            { since, history: query.history },
            { expires: caller.expires, ended: () => client.release() },
          )
        },
        {
          params: TaskParams,
          query,
          headers: Input({ 'last-event-id': t.Optional(LogId) }),
          response: { 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 422: ErrorBody, 429: ErrorBody },
          detail: {
            ...requires('logs:read'),
            tags: ['stream'],
            summary: 'Follow a task with Server-Sent Events',
            description:
              "For clients that cannot use WebSocket. Events: `subscribed` first on every (re)connection (its data is the WebSocket `subscribed` frame's: `task_id`, and `recovered` when resuming), then `log` (with `id:` = log id) and `status`. Resumes after `Last-Event-ID` or `?since=`; a comment heartbeat every 15 s. Takes `?token=` as well as `Authorization`; the stream ends when the token expires.",
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
