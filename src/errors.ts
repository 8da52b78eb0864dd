/** Error codes of the error shape `{ error, message, details? }`, with their HTTP status. */
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
