/**
 * Bounds the wait for Redis per connection rather than per call. Replies come back in order on
 * the one connection, so when calls are pending and none has been answered for `timeoutMs`,
 * Redis is hung or the connection half-open: `onStall` then fails every pending call at once.
 * A call costs two counter updates, where a promise and a timer entry per call would be a
 * noticeable share of an ingest request. Precision: the sweep interval.
 */
export class Watchdog {
  static readonly SWEEP_MS = 100
  #pending = 0
  #answered = 0
  #answeredAtSweep = 0
  /** When the last sweep saw an answer, or saw calls start on an idle connection. */
  #progressAt = 0
  #timer: ReturnType<typeof setInterval> | undefined

  constructor(
    private readonly timeoutMs: number,
    private readonly onStall: () => void,
  ) {}

  started(): void {
    this.#pending++
    if (this.#timer) return
    this.#progressAt = performance.now()
    this.#timer = setInterval(() => this.#sweep(), Watchdog.SWEEP_MS)
    this.#timer.unref?.()
  }

  answered(): void {
    this.#pending--
    this.#answered++
  }

  #sweep(): void {
    const now = performance.now()
    if (this.#pending === 0) {
      clearInterval(this.#timer)
      this.#timer = undefined
    } else if (this.#answered !== this.#answeredAtSweep) {
      this.#answeredAtSweep = this.#answered
      this.#progressAt = now
    } else if (now - this.#progressAt >= this.timeoutMs) {
      this.#progressAt = now
      this.onStall()
    }
  }
}
