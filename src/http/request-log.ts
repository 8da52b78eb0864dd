import { Elysia } from 'elysia'
import { infoLine, type Logger } from '../logger'
import type { Metrics } from '../metrics'
import { toErrorResponse } from './error-handler'
import { beginRequest, loggedUrl, requestInfo } from './request-info'

/**
 * Every request's duration by route pattern (metrics) and one access log line, errors included;
 * WebSocket upgrades and SSE streams are logged once, when they open. Hooks destructure what
 * they use: Elysia infers from that which parts of a request to parse, and a hook taking the
 * whole context makes it parse cookies and headers on every request. Both are recorded inline,
 * as onAfterResponse would cost an extra event-loop turn per request.
 */
export const requestLog = (metrics: Metrics, logger: Logger) => {
  const logging = logger.isLevelEnabled('info')
  const record = (set: object, request: Request, route: string | undefined, status: number) => {
    const info = requestInfo(set)
    if (!info) return
    const seconds = (performance.now() - info.start) / 1000
    if (route) metrics.requestFinished(request.method, route, status, seconds)
    if (status >= 500 || logging) {
      const line = {
        method: request.method,
        route,
        url: loggedUrl(request.url),
        status,
        ms: Math.round(seconds * 1e6) / 1000,
        request_id: info.id,
        sub: info.sub,
      }
      if (status >= 500) logger.warn(line, 'request')
      else infoLine(logger, 'request', line)
    }
  }
  return (
    new Elysia({ name: 'request-log' })
      .onRequest(({ request, set }) => {
        set.headers['x-request-id'] = beginRequest(set, request.headers.get('x-request-id')).id
      })
      // A block body: Elysia awaits a hook whose source looks like it returns a call, which
      // cost a microtask per request.
      .onAfterHandle({ as: 'global' }, ({ request, route, set, response }) => {
        const status = requestInfo(set)?.upgraded
          ? 101
          : response instanceof Response
            ? response.status
            : Number(set.status ?? 200)
        record(set, request, route, status)
      })
      // Runs before the error handler has set the status, so it derives the status the same way.
      .onError({ as: 'global' }, ({ request, route, set, code, error }) =>
        record(set, request, route, toErrorResponse(code, error).status),
      )
  )
}
