import { Elysia } from 'elysia'
import { ApiError } from '../errors'

const JSON_TYPE = /^application\/([\w.+-]+\+)?json\b/i
const WITHOUT_BODY = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Request bodies are JSON, at most `maxBodyBytes`: a larger one is a 413 before it is read,
 * another content type a 422, and a body without Content-Type is read as JSON so that minimal
 * clients work. Checked from the headers as the request arrives, so that routes can declare
 * `parseJson`: Elysia then reads the body with one `request.json()`, without first touching
 * `request.body` (which makes Bun stream the body) or parsing the content type again.
 * Malformed JSON is Elysia's PARSE error, which the error handler translates.
 */
export const jsonBody = (maxBodyBytes: number) =>
  new Elysia({ name: 'json-body' }).onRequest(({ request }) => {
    if (WITHOUT_BODY.has(request.method)) return
    // Bun's maxRequestBodySize stops a body that lies about its length.
    const length = Number(request.headers.get('content-length'))
    if (length > maxBodyBytes)
      throw new ApiError('payload_too_large', `Request body is ${length} bytes; at most ${maxBodyBytes} are accepted`)
    const contentType = request.headers.get('content-type')
    if (contentType && !JSON_TYPE.test(contentType))
      throw new ApiError('validation', `Content-Type must be application/json, not ${contentType}`, [
        { path: '/', message: 'unsupported content type' },
      ])
  })

/** Route option of every route with a body (see jsonBody). */
export const parseJson = { parse: 'json' } as const
