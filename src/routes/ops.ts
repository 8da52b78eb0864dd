import { Elysia, t } from 'elysia'
import type { Metrics } from '../metrics'
import { StoreFullError } from '../store-errors'
import { withTimeout } from '../timeout'
import type { Access } from '../auth/access'
import { requires } from '../auth/scopes'

/** A store /ready checks: its name and a ping that rejects when it does not answer. */
export interface Dependency {
  name: string
  ping(): Promise<void>
}

async function check(dep: Dependency, timeoutMs: number): Promise<{ status: 'ok' | 'down' | 'full'; error?: string }> {
  try {
    await withTimeout(dep.ping(), timeoutMs, `no answer in ${timeoutMs} ms`)
    return { status: 'ok' }
  } catch (error) {
    return { status: error instanceof StoreFullError ? 'full' : 'down', error: (error as Error).message }
  }
}

const Component = t.Object({
  status: t.UnionEnum(['ok', 'down', 'full'], { description: '`full`: the store refuses writes for lack of memory' }),
  error: t.Optional(t.String()),
})
const Archive = t.Object(
  {
    state: t.UnionEnum(['starting', 'ok', 'failing', 'stopped'], {
      description: '`failing`: the last round failed and is retried; logs wait in history meanwhile',
    }),
    error: t.Optional(t.String()),
    lag_seconds: t.Optional(t.Number({ description: 'Age of the oldest log not archived yet' })),
    pending_tasks: t.Optional(t.Integer({ description: 'Tasks with logs not archived yet' })),
  },
  { description: 'With ARCHIVE_DAYS > 0: the archiver, which does not decide readiness (ingest does not wait for it)' },
)
const Readiness = t.Object(
  { status: t.UnionEnum(['ready', 'unavailable']), components: t.Record(t.String(), Component), archive: t.Optional(Archive) },
  { examples: [{ status: 'ready', components: { tasks: { status: 'ok' }, history: { status: 'ok' }, feed: { status: 'ok' } } }] },
)

/** The archiver's state for /ready, when the archive is on. */
type ArchiveReadiness = () => Promise<typeof Archive.static>

/** /health and /ready are public; /metrics needs `admin` (in local mode: a loopback client). */
export const opsRoutes = (metrics: Metrics, deps: Dependency[], timeoutMs: number, access: Access, archive?: ArchiveReadiness) =>
  new Elysia({ name: 'ops', detail: { tags: ['ops'] } })
    .get('/health', () => ({ status: 'ok' as const }), {
      response: { 200: t.Object({ status: t.Literal('ok') }) },
      detail: {
        security: [],
        summary: 'Liveness: 200 while the process runs',
        description: 'Checks no store: use it to restart a process that stopped answering.',
        responses: { 200: { description: 'The process runs' } },
      },
    })
    .get(
      '/ready',
      async ({ set }) => {
        const [results, archiver] = await Promise.all([Promise.all(deps.map((dep) => check(dep, timeoutMs))), archive?.()])
        const components = Object.fromEntries(deps.map((d, i) => [d.name, results[i]!]))
        const ready = results.every((r) => r.status === 'ok')
        if (!ready) set.status = 503
        return {
          status: ready ? ('ready' as const) : ('unavailable' as const),
          components,
          ...(archiver && { archive: archiver }),
        }
      },
      {
        response: { 200: Readiness, 503: Readiness },
        detail: {
          security: [],
          summary: 'Readiness: 200 when every configured store answers, else 503',
          description:
            'Pings the task store, the log history and the live feed, each within STORE_TIMEOUT_MS: use it to route traffic only to instances that can store logs.',
          responses: {
            200: { description: 'Every store answers' },
            503: {
              description: 'A store is down (or, for Redis, out of memory): `components` says which',
              content: {
                'application/json': {
                  example: {
                    status: 'unavailable',
                    components: {
                      tasks: { status: 'ok' },
                      history: { status: 'down', error: 'no answer in 2000 ms' },
                      feed: { status: 'ok' },
                    },
                  },
                },
              },
            },
          },
        },
      },
    )
    .get(
      '/metrics',
      async ({ request, server, set }) => {
        access.permit(await access.authenticate(request, server, set), 'admin')
        return new Response(await metrics.render(), { headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' } })
      },
      {
        detail: {
          ...requires('admin'),
          summary: 'Prometheus metrics',
          description:
            "Process CPU, memory, file descriptors and start time; build info; connections (WebSocket and SSE), subscriptions, logs ingested by level and rejected by reason, rate-limited requests, frames sent, slow readers closed, store errors, the history store's memory and request durations, in the Prometheus text format.",
          responses: {
            200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } },
          },
        },
      },
    )
