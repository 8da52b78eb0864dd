/**
 * A latency histogram in milliseconds: 10 µs buckets below 10 ms, 100 µs below 1 s, 1 ms
 * up to 120 s (larger values land in the last bucket; the exact maximum is kept apart).
 * Cheap enough to record every delivery of a run.
 */
const FINE = 1000 // 0..10 ms in 10 µs
const MID = 9900 // 10..1000 ms in 100 µs
const COARSE = 119_000 // 1..120 s in 1 ms

export class Histogram {
  readonly counts = new Uint32Array(FINE + MID + COARSE + 1)
  count = 0
  sum = 0
  max = 0

  record(ms: number): void {
    if (!(ms >= 0)) ms = 0
    let i: number
    if (ms < 10) i = Math.floor(ms * 100)
    else if (ms < 1000) i = FINE + Math.floor((ms - 10) * 10)
    else i = Math.min(FINE + MID + Math.floor(ms - 1000), this.counts.length - 1)
    this.counts[i]!++
    this.count++
    this.sum += ms
    if (ms > this.max) this.max = ms
  }

  /** The q-quantile (0..1), as the middle of its bucket; NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN
    const rank = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!
      if (seen >= rank) return Math.min(this.max, bucketMiddle(i))
    }
    return this.max
  }

  summary(): { count: number; p50: number; p99: number; max: number; mean: number } {
    return {
      count: this.count,
      p50: this.quantile(0.5),
      p99: this.quantile(0.99),
      max: this.count ? this.max : Number.NaN,
      mean: this.count ? this.sum / this.count : Number.NaN,
    }
  }
}

function bucketMiddle(i: number): number {
  if (i < FINE) return (i + 0.5) / 100
  if (i < FINE + MID) return 10 + (i - FINE + 0.5) / 10
  return 1000 + (i - FINE - MID) + 0.5
}

/** A growable bit set (one byte per index) of sequence numbers. */
export class Flags {
  bytes = new Uint8Array(1024)

  has(i: number): boolean {
    return i < this.bytes.length && this.bytes[i] === 1
  }

  set(i: number): void {
    if (i >= this.bytes.length) {
      let n = this.bytes.length
      while (n <= i) n *= 2
      const grown = new Uint8Array(n)
      grown.set(this.bytes)
      this.bytes = grown
    }
    this.bytes[i] = 1
  }
}

export function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return Number.NaN
  const mid = v.length >> 1
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2
}
