/** Retry timing shared by WorkerLogger and LogStreamClient. */

export interface BackoffOptions {
  /** Delay before the first retry, in ms. */
  baseDelayMs: number
  /** Upper bound of a computed delay, in ms. */
  maxDelayMs: number
}

/**
 * Exponential backoff with jitter: `base * 2^attempt`, capped, then scaled by a random factor
 * in [0.5, 1) so that many clients retrying after one outage do not arrive in lock-step.
 * `attempt` counts from 0.
 */
export function backoffDelay(attempt: number, { baseDelayMs, maxDelayMs }: BackoffOptions): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(attempt, 30))
  return Math.round(ceiling * (0.5 + Math.random() / 2))
}

/** A `Retry-After` header (seconds or an HTTP date) in ms, or undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined
  const seconds = Number(header)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(header)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/** Resolves after `ms`, or early (without rejecting) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}
