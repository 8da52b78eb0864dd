import { RESP_TYPES } from 'redis'

/** Command options for a reply whose strings come as Buffers rather than JS strings. */
export const BYTES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } }

/**
 * How every connection of the Redis engine behaves, to a single server or to a cluster node: it
 * fails fast rather than queueing while disconnected (`disableOfflineQueue`) and reconnects
 * forever in the background.
 */
export function clientOptions(timeoutMs: number) {
  return {
    disableOfflineQueue: true,
    // No per-command timer from node-redis (its default makes an AbortSignal per command);
    // callers bound the wait for replies themselves.
    commandOptions: { timeout: 0 },
    // A PING every second on an idle connection: one the peer has reset fails on its own and
    // reconnects in the background, rather than on the next call.
    pingInterval: 1000,
    socket: {
      // No socketTimeout: it cannot find a hung Redis (the pings are activity), and it fires when
      // this process itself stands still that long (a broadcast to 100,000 sockets on a busy
      // machine) before the replies waiting in the socket are read: a lost subscriber connection
      // stops every watcher. Callers' deadlines find a hung Redis (the history's Watchdog, the
      // feed's timeouts).
      connectTimeout: timeoutMs,
      // Always reconnect (the default gives up after a socket timeout), quickly and forever.
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000) + Math.floor(Math.random() * 100),
    },
  }
}
