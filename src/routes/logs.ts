import { Elysia, t } from 'elysia'
import { ApiError, notFound } from '../errors'
import { encodeRequests, type LogLimits } from '../logs/encode'
import type { HistoryStore } from '../logs/backend'
import { requestFingerprint } from '../logs/idempotency'
import { toLogMessage } from '../logs/frames'
import type { Hub } from '../logs/hub'
import type { Metrics } from '../metrics'
import { compareLogIds, logIdAfter } from '../../clients/ts/src/log-id'
import { SubtaskParams, TaskParams } from '../schemas/common'
import { ErrorBody, commonErrors, ingestErrors } from '../schemas/error'
import { BatchAccepted, IngestHeaders, LogAccepted, LogBatch, LogHistory, LogHistoryQuery, LogRequest } from '../schemas/log'
import { canonicalId } from '../../clients/ts/src/ids'
import type { SubtaskDirectory } from '../tasks/subtask-directory'
import type { KnownTasks } from '../tasks/known-tasks'
import { parseJson } from '../http/json-body'
import type { Access } from '../auth/access'
import { requires } from '../auth/scopes'
import type { Caller } from '../auth/caller'
import type { Server } from 'elysia/universal'

export const logRoutes = (deps: {
  tasks: KnownTasks
  subtasks: SubtaskDirectory
  history: HistoryStore
  hub: Hub
  metrics: Metrics
  /** `maxBatch`, and `rateBurst`: the most logs a task may send at once (0: no rate limit). */
  limits: LogLimits & { maxBatch: number; rateBurst: number }
  access: Access
}) => {
  const { tasks, subtasks, history, hub, metrics, limits, access } = deps

  /** The 404 of an unknown subtask, pointing out a task id given instead (looked up only on this path). */
  async function subtaskNotFound(subtaskId: string): Promise<ApiError> {
    if (!(await tasks.exists(subtaskId))) return notFound('Subtask', subtaskId)
    return new ApiError(
      'not_found',
      `Subtask ${subtaskId} not found: it is a task id. Logs go to one of the task's subtasks (GET /api/v1/tasks/${subtaskId} lists them)`,
    )
  }

  /**
   * Stores a request's logs; with an idempotency key, a repeat of an applied request stores
   * nothing and answers the first answer's ids (`replayed`).
   */
  async function ingest(
    request: Request,
    server: Server | null,
    set: object,
    subtaskId: string,
    requests: LogRequest[],
    path: string,
    key: string | undefined,
  ) {
    // Cache hits (a token seen before, a subtask looked up before) cost no await: this is the hot path.
    const found = access.authenticate(request, server, set)
    const caller: Caller = access.permit(found instanceof Promise ? await found : found, 'logs:write')
    const subtask = subtasks.cached(subtaskId) ?? (await subtasks.lookup(subtaskId))
    if (!subtask) throw await subtaskNotFound(subtaskId)
    access.permit(caller, 'logs:write', subtask.task_id)
    const logs = encodeRequests(requests, subtask, limits, path)
    // Nothing is allocated for a request without a key.
    const options = key === undefined ? undefined : { idempotency: { key, fingerprint: requestFingerprint(subtaskId, requests) } }
    const { firstId, subscribersElsewhere, replayed } = await history.append(subtask.task_id, logs, options)
    if (!replayed) for (const log of logs) metrics.logIngested(log.level)
    return { firstId, replayed, broadcasted: hub.recipients(subtask.task_id, logs, subscribersElsewhere) }
  }

  /** Marks a replayed answer, as the first answer it repeats carried no such header. */
  const replayedHeader = (set: { headers: Record<string, string | number> }, replayed: true | undefined) => {
    if (replayed) set.headers['idempotency-replayed'] = 'true'
  }

  // Acknowledgements are our own output, typed and documented by their schemas; NoValidate
  // skips re-checking them on every ingest request.
  return new Elysia({ name: 'logs', prefix: '/api/v1', detail: { tags: ['logs'] } })
    .post(
      '/subtasks/:subtask_id/log',
      async ({ request, server, params, headers, body, set }) => {
        const { firstId, broadcasted, replayed } = await ingest(
          request,
          server,
          set,
          canonicalId(params.subtask_id),
          [body],
          '',
          headers['idempotency-key'],
        )
        replayedHeader(set, replayed)
        set.status = 201
        return { success: true as const, message: 'Log stored and broadcast', broadcasted, id: firstId }
      },
      {
        params: SubtaskParams,
        headers: IngestHeaders,
        body: LogRequest,
        ...parseJson,
        response: { 201: t.NoValidate(LogAccepted), 404: ErrorBody, 413: ErrorBody, 429: ErrorBody, ...ingestErrors },
        detail: {
          ...requires('logs:write'),
          summary: 'Send one log line',
          description:
            "Stores the line in the task's history and broadcasts it to the task's subscribers. A 201 means stored; any other status means not stored. A retry with the same Idempotency-Key stores the line at most once; without a key, a retry after a 503 or a lost answer may store it twice.",
          responses: { 201: { description: 'Stored, and sent to `broadcasted` subscribed connections' } },
        },
      },
    )
    .post(
      '/subtasks/:subtask_id/logs',
      async ({ request, server, params, headers, body, set }) => {
        if (body.logs.length > limits.maxBatch)
          throw new ApiError('validation', `A batch holds at most ${limits.maxBatch} logs; got ${body.logs.length}`, [
            { path: '/logs', message: `at most ${limits.maxBatch} items` },
          ])
        // It could never fit the task's rate limit: retrying it would not help.
        if (limits.rateBurst > 0 && body.logs.length > limits.rateBurst)
          throw new ApiError(
            'validation',
            `A batch holds at most RATE_LIMIT_BURST (${limits.rateBurst}) logs, the most a task may send at once; got ${body.logs.length}`,
            [{ path: '/logs', message: `at most ${limits.rateBurst} items` }],
          )
        const key = headers['idempotency-key']
        const { firstId, broadcasted, replayed } = await ingest(
          request,
          server,
          set,
          canonicalId(params.subtask_id),
          body.logs,
          '/logs/{i}',
          key,
        )
        replayedHeader(set, replayed)
        set.status = 201
        return {
          success: true as const,
          accepted: body.logs.length,
          broadcasted,
          first_id: firstId,
          last_id: logIdAfter(firstId, body.logs.length - 1),
        }
      },
      {
        params: SubtaskParams,
        headers: IngestHeaders,
        body: LogBatch,
        ...parseJson,
        response: { 201: t.NoValidate(BatchAccepted), 404: ErrorBody, 413: ErrorBody, 429: ErrorBody, ...ingestErrors },
        detail: {
          ...requires('logs:write'),
          summary: 'Send a batch of log lines',
          description: `All or nothing: one invalid entry rejects the whole batch, and the error names its index. At most MAX_BATCH (default 1000) logs. A retry with the same Idempotency-Key stores the batch at most once.`,
          responses: { 201: { description: 'All stored, with consecutive ids from `first_id` to `last_id`' } },
        },
      },
    )
    .get(
      '/tasks/:task_id/logs',
      async ({ request, server, set, params, query }) => {
        const taskId = canonicalId(params.task_id)
        access.permit(await access.authenticate(request, server, set), 'logs:read', taskId)
        if (!(await tasks.exists(taskId))) throw notFound('Task', params.task_id)
        const logs = await history.read(taskId, {
          limit: query.limit ?? 100,
          order: query.order ?? (query.since ? 'asc' : 'desc'),
          since: query.since,
          minLevel: query.level,
          subtaskId: query.subtask_id && canonicalId(query.subtask_id),
        })
        let newest: string | null = null
        for (const log of logs) if (newest === null || compareLogIds(log.id, newest) > 0) newest = log.id
        return { task_id: taskId, logs: logs.map(toLogMessage), count: logs.length, next_since: newest }
      },
      {
        params: TaskParams,
        query: LogHistoryQuery,
        response: { 200: LogHistory, 404: ErrorBody, ...commonErrors },
        detail: {
          ...requires('logs:read'),
          summary: "Read a task's recent logs",
          description:
            'Default: the newest `limit` logs, newest first. With `since`: logs after that id, oldest first. `level` keeps that level and above. Logs expire LOG_TTL_SECONDS after they were written; a known task whose logs expired gives an empty list.',
          responses: { 200: { description: 'The logs, and the id to pass as `since` to poll for newer ones' } },
        },
      },
    )
}
