import { RESP_TYPES } from 'redis'
import type { SendOptions } from './connection'

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
    // Keeps an idle connection active so that socketTimeout only fires on a dead peer.
    pingInterval: 1000,
    socket: {
      connectTimeout: timeoutMs,
      // A connection that neither reads nor writes for this long (pings included) is dead:
      // close it and reconnect, instead of waiting for TCP keep-alive.
      socketTimeout: Math.max(3 * 1000, 2 * timeoutMs),
      // Always reconnect (the default gives up after a socket timeout), quickly and forever.
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000) + Math.floor(Math.random() * 100),
    },
  }
}

const BYTES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } }

/** node-redis' options for a command sent with `options` (connection.ts SendOptions). */
export const commandOptions = (options: SendOptions | undefined) => (options?.bytes ? BYTES : undefined)
