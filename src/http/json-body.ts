import { Elysia } from 'elysia'
import { ApiError } from '../errors'
import { jsonDepthExceeds } from './json-depth'

const JSON_TYPE = /^application\/([\w.+-]+\+)?json\b/i
const WITHOUT_BODY = new Set(['GET', 'HEAD', 'OPTIONS'])

export interface BodyLimits {
  maxBodyBytes: number
  maxJsonDepth: number
}

/** UTF-8 that is not valid is refused rather than replaced with U+FFFD: what is stored is what was sent. */
const UTF8 = new TextDecoder('utf-8', { fatal: true })

const contentTypeError = (contentType: string | null) =>
  new ApiError(
    'validation',
    contentType
      ? `Content-Type must be application/json, not ${contentType}`
      : 'Content-Type must be application/json; the request has none',
    [{ path: '/headers/content-type', message: 'expected application/json' }],
  )

/**
 * Request bodies are JSON: a body larger than `maxBodyBytes` is a 413 before it is read, and a
 * request without a JSON Content-Type is a 422, so a web page cannot post to tasklog cross-site
 * without a CORS preflight. Both are decided from the headers as the request arrives.
 */
export const jsonBody = (limits: BodyLimits) =>
  new Elysia({ name: 'json-body' }).decorate('bodyLimits', limits).onRequest(({ request }) => {
    if (WITHOUT_BODY.has(request.method)) return
    // Bun's maxRequestBodySize stops a body that lies about its length.
    const length = Number(request.headers.get('content-length'))
    if (length > limits.maxBodyBytes)
      throw new ApiError('payload_too_large', `Request body is ${length} bytes; at most ${limits.maxBodyBytes} are accepted`)
    const contentType = request.headers.get('content-type')
    if (!contentType || !JSON_TYPE.test(contentType)) throw contentTypeError(contentType)
  })

/**
 * Reads a JSON body: valid UTF-8 and at most `maxJsonDepth` levels of nesting, both decided
 * before the text is parsed, so that no body reaches recursive work (validation, serialization)
 * deep enough to stall the event loop. Errors become Elysia PARSE errors carrying the ApiError.
 */
export function readJsonBody(bytes: ArrayBuffer, maxJsonDepth: number): unknown {
  let text: string
  try {
    text = UTF8.decode(bytes)
  } catch {
    throw new ApiError('validation', 'Request body is not valid UTF-8; send JSON encoded as UTF-8', [
      { path: '/', message: 'invalid UTF-8' },
    ])
  }
  if (jsonDepthExceeds(text, maxJsonDepth))
    throw new ApiError('validation', `Request body nests deeper than ${maxJsonDepth} levels`, [
      { path: '/', message: `at most ${maxJsonDepth} levels of nested objects and arrays` },
    ])
  return JSON.parse(text)
}

/** Route option of every route with a body (see jsonBody, which provides `bodyLimits`). */
export const parseJson = {
  parse: async ({ request, bodyLimits }: { request: Request; bodyLimits?: BodyLimits }) =>
    readJsonBody(await request.arrayBuffer(), bodyLimits!.maxJsonDepth),
}
