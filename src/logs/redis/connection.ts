/** How every connection of the Redis engine behaves. */
import { createClient } from 'redis'

export type RedisClient = ReturnType<typeof createClient>

/**
 * A client that fails fast rather than queueing while disconnected (`disableOfflineQueue`) and
 * reconnects forever in the background; connecting is left to the caller.
 */
export function createRedisClient(url: string, timeoutMs: number): RedisClient {
  return createClient({
    url,
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
  })
}

/** The URL without its password, for logs and /ready. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url)
    u.password = ''
    return u.toString()
  } catch {
    return 'redis (unparsable URL)'
  }
}

