import { Elysia } from 'elysia'
import { ApiError } from '../errors'
import type { Metrics } from '../metrics'

/**
 * Renders every failure in the DESIGN error shape. Elysia's own errors (validation, parse,
 * unknown route) are translated; anything unexpected is a 500 that hides internals.
 */
export function toErrorResponse(code: string | number, error: unknown): ApiError {
  if (error instanceof ApiError) return error
  switch (code) {
    case 'VALIDATION': {
      const v = error as { type?: string; all?: { path?: string; message?: string; summary?: string }[] }
      const details = (v.all ?? []).map((e) => ({ path: e.path || '/', message: e.summary ?? e.message ?? 'Invalid value' }))
      const where = v.type === 'params' ? 'path parameter' : v.type === 'query' ? 'query parameter' : 'request body'
      const first = details[0]
      return new ApiError('validation', `Invalid ${where}${first ? ` at ${first.path}: ${first.message}` : ''}`, details)
    }
    case 'PARSE':
      // Elysia wraps whatever the body parser threw; keep our own message when it was ours.
      if ((error as Error).cause instanceof ApiError) return (error as Error).cause as ApiError
      return new ApiError('validation', 'Request body is not valid JSON', [{ path: '/', message: 'Malformed JSON' }])
    case 'NOT_FOUND':
      return new ApiError('not_found', 'No such route; see /swagger for the API')
    default:
      return new ApiError('internal', 'Internal server error')
  }
}

/** Every error of every route, as `{ error, message, details? }` with its status. */
export const errorHandler = (metrics: Metrics) =>
  new Elysia({ name: 'error-handler' }).onError({ as: 'global' }, ({ code, error, set }) => {
    const failure = toErrorResponse(code, error)
    if (failure.code === 'internal') console.error(error)
    if (failure.code === 'unavailable') metrics.storeErrors++
    set.status = failure.status
    if (failure.headers) Object.assign(set.headers, failure.headers)
    return failure.toJSON()
  })
