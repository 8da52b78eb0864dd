import { Elysia } from 'elysia'
import type { Metrics } from '../metrics'
import { toErrorResponse } from './error-handler'

/**
 * Records every request's duration by route pattern, errors included. Hooks destructure what
 * they use: Elysia infers from that which parts of a request to parse, and a hook taking the
 * whole context made it parse cookies and headers on every request. Durations are recorded
 * inline, as onAfterResponse would cost an extra event-loop turn per request.
 */
export const requestTiming = (metrics: Metrics) => {
  const started = new WeakMap<Request, number>()
  const record = (request: Request, route: string | undefined, status: unknown) => {
    const start = started.get(request)
    if (start === undefined || !route) return
    metrics.requestFinished(request.method, route, Number(status ?? 200), (performance.now() - start) / 1000)
  }
  return (
    new Elysia({ name: 'request-timing' })
      .onRequest(({ request }) => {
        started.set(request, performance.now())
      })
      .onAfterHandle({ as: 'global' }, ({ request, route, set }) => record(request, route, set.status))
      // Runs before the error handler has set the status, so it derives the status the same way.
      .onError({ as: 'global' }, ({ request, route, code, error }) => record(request, route, toErrorResponse(code, error).status))
  )
}
