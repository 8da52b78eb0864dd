import { Elysia } from 'elysia'
import { ApiError } from '../errors'
import { isUtf8 } from 'node:buffer'
import { checkParsedJson, textDepthExceeds } from './json-depth'

const JSON_TYPE = /^application\/([\w.+-]+\+)?json\b/i
const WITHOUT_BODY = new Set(['GET', 'HEAD', 'OPTIONS'])

interface BodyLimits {
  maxBodyBytes: number
  maxJsonDepth: number
}

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
export const jsonBody = (limits: BodyLimits) => {
  function boundedJson(this: Request): Promise<unknown> {
    return readJsonBody(this, limits.maxJsonDepth)
  }
  return new Elysia({ name: 'json-body' }).onRequest(({ request }) => {
    if (WITHOUT_BODY.has(request.method)) return
    // Bun's maxRequestBodySize stops a body that lies about its length.
    const length = Number(request.headers.get('content-length'))
    if (length > limits.maxBodyBytes)
      throw new ApiError('payload_too_large', `Request body is ${length} bytes; at most ${limits.maxBodyBytes} are accepted`)
    const contentType = request.headers.get('content-type')
    if (!contentType || !JSON_TYPE.test(contentType)) throw contentTypeError(contentType)
    // What Elysia's JSON parsing (parseJson) calls: its hooks for a custom parser first touch
    // `request.body`, which makes Bun stream the body: a cost on the hot path (bench/README.md).
    request.json = boundedJson
  })
}

/**
 * Bodies up to this size are parsed before their depth is checked: JSON.parse does not recurse,
 * and at this size it takes milliseconds even at the greatest depth (about 90 ns a level), while
 * scanning the text first would cost more than the parse for every ordinary batch. Larger bodies
 * are scanned first, so that no body makes the parser or anything after it stall.
 */
const PARSE_FIRST_MAX_BYTES = 256 * 1024

/** The answer to a body that is not JSON. */
export const malformedJson = () =>
  new ApiError('validation', 'Request body is not valid JSON', [{ path: '/', message: 'Malformed JSON' }])

const tooDeep = (maxJsonDepth: number) =>
  new ApiError('validation', `Request body nests deeper than ${maxJsonDepth} levels`, [
    { path: '/', message: `at most ${maxJsonDepth} levels of nested objects and arrays` },
  ])

/**
 * Reads a JSON body: valid UTF-8 (refused, not replaced with U+FFFD, so that what is stored is
 * what was sent) and at most `maxJsonDepth` levels of nesting, decided before any validation or
 * serialization recurses into it.
 */
async function readJsonBody(request: Request, maxJsonDepth: number): Promise<unknown> {
  const bytes = await request.bytes()
  if (!isUtf8(bytes))
    throw new ApiError('validation', 'Request body is not valid UTF-8; send JSON encoded as UTF-8', [
      { path: '/', message: 'invalid UTF-8' },
    ])
  let text: string | undefined
  if (bytes.length > PARSE_FIRST_MAX_BYTES) {
    text = new TextDecoder().decode(bytes)
    if (textDepthExceeds(text, maxJsonDepth)) throw tooDeep(maxJsonDepth)
  }
  let value: unknown
  try {
    // Bun's Body.json() parses from bytes faster than decoding them to a string first.
    value = text === undefined ? await new Response(bytes).json() : JSON.parse(text)
  } catch {
    throw malformedJson()
  }
  if (checkParsedJson(value, maxJsonDepth)) throw tooDeep(maxJsonDepth)
  return value
}

/** Route option of every route with a body: Elysia reads it with `request.json()`, which jsonBody bounds. */
export const parseJson = { parse: 'json' } as const
