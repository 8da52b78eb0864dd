import { ValueErrorType } from '@sinclair/typebox/errors'
import { Elysia } from 'elysia'
import { ApiError } from '../errors'
import type { Logger } from '../logger'
import type { Metrics } from '../metrics'
import { loggedUrl, requestInfo } from './request-info'
import { malformedJson } from './json-body'
import { InvalidInputError, RateLimitedError, StoreFullError, StoreUnavailableError } from '../store-errors'

interface SchemaError {
  type?: ValueErrorType
  path?: string
  message?: string
  summary?: string
  schema?: { error?: unknown; enum?: unknown[]; 'x-parameter'?: string }
}

/**
 * What a value failed, in words: the schema's own `error` text, or its allowed values (TypeBox
 * says "Expected kind 'UnionEnum'"); else, and for a missing field, Elysia's summary. Elysia
 * itself uses `error` only for its first error's message, so every detail is worded here.
 */
function requirement({ type, schema, summary, message }: SchemaError): string {
  if (type !== ValueErrorType.ObjectRequiredProperty) {
    if (typeof schema?.error === 'string') return schema.error
    if (Array.isArray(schema?.enum)) return `must be one of ${schema.enum.join(', ')}`
  }
  return summary ?? message ?? 'Invalid value'
}

/** Parts of a request that are flat name-value pairs, by Elysia's `ValidationError.type`. */
const NAMED_PARTS: Record<string, string> = { params: 'path parameter', query: 'query parameter', headers: 'header' }

/**
 * Renders every failure in the error shape `{ error, message, details? }`. The stores' errors
 * (store-errors.ts) and Elysia's own (validation, parse, unknown route) are translated; anything
 * unexpected is a 500 that hides internals.
 */
export function toErrorResponse(code: string | number, error: unknown): ApiError {
  if (error instanceof ApiError) return error
  if (error instanceof StoreUnavailableError) return new ApiError('unavailable', error.message)
  if (error instanceof StoreFullError) return new ApiError('insufficient_storage', error.message)
  if (error instanceof InvalidInputError) return new ApiError('validation', error.message, error.problems)
  if (error instanceof RateLimitedError) return rateLimited(error)
  switch (code) {
    case 'VALIDATION': {
      const v = error as { type?: string; all?: SchemaError[] }
      // Elysia's 'property' errors (a numeric query parameter out of range) carry no path: the
      // schema names its parameter (schemas/common.ts QueryInteger).
      const named = v.type === 'property' ? v.all?.[0]?.schema?.['x-parameter'] : undefined
      const details = (v.all ?? []).map((e) => ({ path: named ? `/${named}` : e.path || '/', message: requirement(e) }))
      const first = details[0]
      if (!first) return new ApiError('validation', 'Invalid request')
      const part = named ? NAMED_PARTS.query : NAMED_PARTS[v.type ?? '']
      const where = part ? `${part} ${first.path.slice(1)}` : v.type === 'body' ? `request body at ${first.path}` : 'value'
      return new ApiError('validation', `Invalid ${where}: ${first.message}`, details)
    }
    case 'PARSE':
      // Elysia wraps whatever the body parser threw; keep our own message when it was ours.
      if ((error as Error).cause instanceof ApiError) return (error as Error).cause as ApiError
      return malformedJson()
    case 'NOT_FOUND':
      return new ApiError('not_found', 'No such route; see /swagger for the API')
    default:
      return new ApiError('internal', 'Internal server error')
  }
}

/**
 * A 429 with when to come back (`Retry-After`, whole seconds, at least 1) and the task's bucket:
 * `RateLimit-Limit` the burst, `RateLimit-Remaining` the lines it could send now,
 * `RateLimit-Reset` the seconds until it could send a whole burst again.
 */
function rateLimited(error: RateLimitedError): ApiError {
  return new ApiError('rate_limited', error.message, undefined, {
    'retry-after': String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))),
    'ratelimit-limit': String(error.limit.burst),
    'ratelimit-remaining': String(error.remaining),
    'ratelimit-reset': String(Math.ceil(error.resetMs / 1000)),
  })
}

/** The two ingest routes, by path: errors raised before routing (a body too large) have no route pattern. */
const INGEST_PATH = /^\/api\/v1\/subtasks\/[^/?]+\/logs?(\?|$)/

/** Every error of every route, as `{ error, message, details? }` with its status. */
export const errorHandler = (metrics: Metrics, logger: Logger) =>
  new Elysia({ name: 'error-handler' }).onError({ as: 'global' }, ({ code, error, set, request }) => {
    const failure = toErrorResponse(code, error)
    if (failure.code === 'internal') logger.error({ err: error, request_id: requestInfo(set)?.id }, 'request failed')
    if (request.method === 'POST' && INGEST_PATH.test(loggedUrl(request.url))) metrics.logsRejected(failure.code)
    if (error instanceof RateLimitedError) metrics.requestRateLimited()
    if (failure.code === 'unavailable' || failure.code === 'insufficient_storage') metrics.storeErrors++
    set.status = failure.status
    if (failure.headers) Object.assign(set.headers, failure.headers)
    return failure.toJSON()
  })
