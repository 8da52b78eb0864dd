import { ApiError } from '../errors'

export const tooManyStreams = (max: number) =>
  `At most ${max} open streams per client (MAX_CONNECTIONS_PER_CLIENT): close one first`

/**
 * Open WebSocket and SSE connections per client (a token's subject, or an address): past
 * `max`, a new one is refused with 429 before the upgrade. Only clients with open
 * connections are kept.
 */
export class ConnectionLimit {
  private readonly open = new Map<string, number>()

  constructor(private readonly max: number) {}

  /** Counts a connection of `client`, or throws a 429; `release` uncounts it, once. */
  acquire(client: string): () => void {
    const count = this.open.get(client) ?? 0
    if (count >= this.max) throw new ApiError('rate_limited', tooManyStreams(this.max), undefined, { 'retry-after': '1' })
    this.open.set(client, count + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.open.get(client) ?? 1) - 1
      if (left > 0) this.open.set(client, left)
      else this.open.delete(client)
    }
  }
}
