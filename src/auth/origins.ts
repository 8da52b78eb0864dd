import { cors } from '@elysiajs/cors'
import { Elysia } from 'elysia'
import { ApiError } from '../errors'

/**
 * Cross-site rules for browsers. A WebSocket or SSE request (which no CORS preflight guards)
 * that carries an `Origin` is accepted only from the server's own origin, compared with the
 * request's Host, or one listed in CORS_ORIGINS; requests without `Origin` (non-browser
 * clients) are not affected.
 */
export class Origins {
  private readonly listed: ReadonlySet<string>
  private readonly any: boolean

  constructor(readonly allowed: readonly string[]) {
    this.any = allowed.includes('*')
    this.listed = new Set(allowed.map((o) => o.toLowerCase()))
  }

  /** Throws a 403 for a browser request from another site. */
  check(request: Request): void {
    const origin = request.headers.get('origin')
    if (origin === null || this.any || this.listed.has(origin.toLowerCase())) return
    const host = request.headers.get('host')
    if (host !== null && hostOf(origin) === host.toLowerCase()) return
    throw new ApiError(
      'forbidden',
      `Origin ${origin} may not open streams here: only this server's own pages and CORS_ORIGINS may`,
    )
  }

  /** CORS headers and preflight answers for the listed origins; nothing when none is listed. */
  plugin() {
    if (this.allowed.length === 0) return new Elysia({ name: 'cors' })
    return cors({
      origin: this.any ? '*' : [...this.allowed],
      methods: ['GET', 'POST', 'PATCH'],
      allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'last-event-id', 'x-request-id'],
      exposeHeaders: [
        'retry-after',
        'ratelimit-limit',
        'ratelimit-remaining',
        'ratelimit-reset',
        'www-authenticate',
        'x-request-id',
      ],
      // Tokens travel in headers, never in cookies.
      credentials: false,
      maxAge: 600,
    })
  }
}

/** `host[:port]` of an origin, lowercase; '' for `null` or anything unparsable. */
function hostOf(origin: string): string {
  try {
    return new URL(origin).host
  } catch {
    return ''
  }
}
