import { Elysia } from 'elysia'
import type { Metrics } from '../metrics'
import { toErrorResponse } from './error-handler'

/** A request's start time, kept on its `set` (a plain per-request object): no lookup table. */
const STARTED = Symbol('started')
type Timed = { [STARTED]?: number }

/**
 * Records every request's duration by route pattern, errors included. Hooks destructure what
 * they use: Elysia infers from that which parts of a request to parse, and a hook taking the
 * whole context makes it parse cookies and headers on every request. Durations are recorded
 * inline, as onAfterResponse would cost an extra event-loop turn per request.
 */
export const requestTiming = (metrics: Metrics) => {
  const record = (set: object, method: string, route: string | undefined, status: unknown) => {
    const start = (set as Timed)[STARTED]
    if (start === undefined || !route) return
    metrics.requestFinished(method, route, Number(status ?? 200), (performance.now() - start) / 1000)
  }
  return (
    new Elysia({ name: 'request-timing' })
      .onRequest(({ set }) => {
        ;(set as Timed)[STARTED] = performance.now()
      })
      // A block body: Elysia awaits a hook whose source looks like it returns a call, which
      // cost a microtask per request.
      .onAfterHandle({ as: 'global' }, ({ request, route, set }) => {
        record(set, request.method, route, set.status)
      })
      // Runs before the error handler has set the status, so it derives the status the same way.
      .onError({ as: 'global' }, ({ request, route, set, code, error }) =>
        record(set, request.method, route, toErrorResponse(code, error).status),
      )
  )
}
