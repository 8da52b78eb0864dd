import { Elysia } from 'elysia'
import { ApiError } from '../errors'

const JSON_TYPE = /^application\/([\w.+-]+\+)?json\b/i

/**
 * Request bodies are JSON, at most `maxBodyBytes`: a larger one is a 413 before it is read,
 * another content type a 422, and a body without Content-Type is read as JSON so that
 * minimal clients work. Not async: plain application/json returns at once, to Elysia's own
 * parser (its PARSE error for malformed JSON is translated by the error handler).
 */
export const jsonBody = (maxBodyBytes: number) =>
  new Elysia({ name: 'json-body' }).onParse({ as: 'global' }, ({ request, contentType }) => {
    // WebSocket upgrades are GETs that Elysia would otherwise try to parse.
    if (request.method === 'GET') return
    // Bun's maxRequestBodySize stops a body that lies about its length.
    const length = Number(request.headers.get('content-length'))
    if (length > maxBodyBytes)
      throw new ApiError('payload_too_large', `Request body is ${length} bytes; at most ${maxBodyBytes} are accepted`)
    if (contentType?.startsWith('application/json')) return
    if (contentType && !JSON_TYPE.test(contentType))
      throw new ApiError('validation', `Content-Type must be application/json, not ${contentType}`, [
        { path: '/', message: 'unsupported content type' },
      ])
    return request.text().then((text) => {
      try {
        return JSON.parse(text)
      } catch {
        throw new ApiError('validation', 'Request body is not valid JSON', [{ path: '/', message: 'malformed JSON' }])
      }
    })
  })
