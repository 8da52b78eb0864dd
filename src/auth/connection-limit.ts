import { ApiError } from '../errors'

export const tooManyStreams = (max: number) =>
  `At most ${max} open streams per client (MAX_CONNECTIONS_PER_CLIENT): close one first`

/**
 * One client's open connections, one object shared by all of them (idle connections are most
 * of a server's memory: a connection keeps a pointer, not a closure of its own).
 */
export class ClientConnections {
  open = 0

  constructor(
    readonly client: string,
    private readonly clients: Map<string, ClientConnections>,
  ) {}

  /** Uncounts one of the client's connections; call it once per connection, when it ends. */
  release(): void {
    if (this.open > 0 && --this.open === 0 && this.clients.get(this.client) === this) this.clients.delete(this.client)
  }
}

/**
 * Open WebSocket and SSE connections per client (a token's subject, or an address): past
 * `max`, a new one is refused with 429 before the upgrade. Only clients with open
 * connections are kept.
 */
export class ConnectionLimit {
  private readonly clients = new Map<string, ClientConnections>()

  constructor(private readonly max: number) {}

  /** Counts a connection of `client`, or throws a 429; the connection releases its count once, through the entry. */
  acquire(client: string): ClientConnections {
    let entry = this.clients.get(client)
    if ((entry?.open ?? 0) >= this.max) throw new ApiError('rate_limited', tooManyStreams(this.max), undefined, { 'retry-after': '1' })
    if (!entry) this.clients.set(client, (entry = new ClientConnections(client, this.clients)))
    entry.open++
    return entry
  }
}
