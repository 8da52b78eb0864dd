/**
 * The access log's view of one request (http/request-log.ts). Other hooks add to it: the
 * authentication hook sets `sub`, the WebSocket route `upgraded`.
 */
/** What the access log knows of a request, kept on its `set` (a plain per-request object): no lookup table. */
export interface RequestInfo {
  readonly start: number
  /** From `X-Request-Id` when valid, else made here; echoed in the response. */
  readonly id: string
  /** The subject (`sub`) of the request's token, set by whoever verifies it; logged when present. */
  sub?: string
  /** The request became a WebSocket (logged as 101). */
  upgraded?: boolean
}

const INFO = Symbol('request')
type WithInfo = { [INFO]?: RequestInfo }

/** The request's info, from any hook or handler's `set`. */
export const requestInfo = (set: object): RequestInfo | undefined => (set as WithInfo)[INFO]

/** A client's request id is used when it is printable ASCII of at most 128 characters. */
const VALID_ID = /^[\x20-\x7e]{1,128}$/

/** Starts a request's info: its id is the client's `X-Request-Id` when valid, else a new UUID. */
export function beginRequest(set: object, given: string | null): RequestInfo {
  const info = { start: performance.now(), id: given !== null && VALID_ID.test(given) ? given : crypto.randomUUID() }
  ;(set as WithInfo)[INFO] = info
  return info
}

/** The path and query, with any `token` parameter's value replaced. */
export function loggedUrl(url: string): string {
  const path = url.slice(url.indexOf('/', url.indexOf('//') + 2))
  return path.includes('token=') ? path.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]') : path
}
