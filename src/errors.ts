/** Error codes of the DESIGN error shape, with their HTTP status. */
export const ERROR_STATUS = {
  validation: 422,
  bad_request: 400,
  not_found: 404,
  method_not_allowed: 405,
  unsupported_media_type: 415,
  payload_too_large: 413,
  unauthorized: 401,
  forbidden: 403,
  rate_limited: 429,
  unavailable: 503,
  insufficient_storage: 507,
  internal: 500,
} as const
export type ErrorCode = keyof typeof ERROR_STATUS

export interface ErrorDetail {
  path: string
  message: string
}

/** An error a client can act on; rendered as `{ error, message, details? }`. */
export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: ErrorDetail[],
    readonly headers?: Record<string, string>,
  ) {
    super(message)
  }

  get status(): number {
    return ERROR_STATUS[this.code]
  }

  toJSON() {
    return this.details
      ? { error: this.code, message: this.message, details: this.details }
      : { error: this.code, message: this.message }
  }
}

export const notFound = (what: string, id: string) => new ApiError('not_found', `${what} ${id} not found`)

/** A store (Redis, the task database) did not answer; nothing was stored. */
export class StoreUnavailableError extends ApiError {
  constructor(store: string, cause?: unknown) {
    super('unavailable', `${store} is unavailable; nothing was stored, retry later`)
    this.cause = cause
  }
}

/**
 * A store received the request but did not answer within its deadline: it may still carry it
 * out, so unlike other 503s this one cannot promise that nothing was stored.
 */
export class StoreTimeoutError extends StoreUnavailableError {
  constructor(store: string, timeoutMs: number, cause?: unknown) {
    super(store, cause)
    this.message = `${store} did not answer within ${timeoutMs} ms; the request may still take effect, retry later`
  }
}

/** A store refused to write for lack of memory (Redis past `maxmemory`); nothing was stored. */
export class StoreFullError extends ApiError {
  constructor(store: string, cause?: unknown) {
    super('insufficient_storage', `${store} is out of memory; nothing was stored, retry later`)
    this.cause = cause
  }
}
