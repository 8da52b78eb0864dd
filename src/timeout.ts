/** A call that did not settle within its deadline. */
export class TimeoutError extends Error {}

/** Rejects with a TimeoutError saying `message` when `promise` has not settled within `ms`; the timer is cleared either way. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(message)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
