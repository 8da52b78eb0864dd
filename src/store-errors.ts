/**
 * What the stores (the task store, the log backend) and the code over them throw when a call
 * cannot be served. They name no HTTP status: http/error-handler.ts maps each to one.
 */

/** One problem with an input, at its path. */
export interface InputProblem {
  path: string
  message: string
}

/** A store did not answer; nothing was stored. */
export class StoreUnavailableError extends Error {
  constructor(store: string, cause?: unknown) {
    super(`${store} is unavailable; nothing was stored, retry later`)
    this.name = 'StoreUnavailableError'
    this.cause = cause
  }
}

/**
 * A store received the request but did not answer within its deadline: it may still carry it
 * out, so unlike other unavailable stores this one cannot promise that nothing was stored.
 */
export class StoreTimeoutError extends StoreUnavailableError {
  constructor(store: string, timeoutMs: number, cause?: unknown) {
    super(store, cause)
    this.name = 'StoreTimeoutError'
    this.message = `${store} did not answer within ${timeoutMs} ms; the request may still take effect, retry later`
  }
}

/** A store refused to write for lack of memory (Redis past `maxmemory`); nothing was stored. */
export class StoreFullError extends Error {
  constructor(store: string, cause?: unknown) {
    super(`${store} is out of memory; nothing was stored, retry later`)
    this.name = 'StoreFullError'
    this.cause = cause
  }
}

/** An input a store or service cannot take (a malformed id, an oversized log): the caller's to fix. */
export class InvalidInputError extends Error {
  constructor(
    message: string,
    readonly problems: InputProblem[],
  ) {
    super(message)
    this.name = 'InvalidInputError'
  }
}

/** An idempotency key already recorded for another request body; nothing was stored. */
export class IdempotencyConflictError extends InvalidInputError {
  constructor(key: string) {
    super(
      `Idempotency-Key ${key} was already used with a different request body; nothing was stored. Use a new key for new logs`,
      [{ path: '/headers/idempotency-key', message: 'already used with a different request body' }],
    )
    this.name = 'IdempotencyConflictError'
  }
}

/** A task's log rate limit, in log lines. */
export interface RateLimit {
  /** Lines per second a task may sustain; 0: no limit. */
  perSecond: number
  /** Lines a task may send at once after a quiet spell. */
  burst: number
}

/** A task is over its log rate limit; nothing was stored. */
export class RateLimitedError extends Error {
  constructor(
    readonly taskId: string,
    readonly limit: RateLimit,
    /** How long until this request would fit, in ms. */
    readonly retryAfterMs: number,
    /** Lines the task could send right now. */
    readonly remaining: number,
    /** How long until the task could send a whole burst again, in ms. */
    readonly resetMs: number,
  ) {
    super(
      `Task ${taskId} is over its log rate limit (${limit.perSecond} lines/s, bursts of ${limit.burst}); nothing was stored, retry after ${Math.max(1, Math.ceil(retryAfterMs / 1000))} s`,
    )
    this.name = 'RateLimitedError'
  }
}
