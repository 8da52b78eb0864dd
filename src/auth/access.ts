import type { Server } from 'elysia/universal'
import { ApiError } from '../errors'
import { requestInfo } from '../http/request-info'
import { mayTouch, unrestricted, type Caller } from './caller'
import { hasScope, type Scope } from './scopes'
import { InvalidTokenError, Tokens } from './tokens'

/** `token`: bearer tokens signed with AUTH_SECRET; `local`: loopback clients only; `open`: no checks. */
export type AuthMode = 'token' | 'local' | 'open'

const LOCAL = unrestricted('local')
const OPEN = unrestricted('open')

/** 127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6. */
const isLoopback = (address: string): boolean =>
  address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.')

export const LOCAL_ONLY =
  'tasklog answers only clients on its own machine (local mode): set AUTH_SECRET (at least 32 bytes) to use bearer tokens, or AUTH_MODE=open on a trusted network'

export const NO_TOKEN = 'This API needs a bearer token: send "Authorization: Bearer <token>" (streams also take ?token=)'
export const lacksScope = (scope: Scope) => `This token lacks the ${scope} scope`

/** Names the caller in the request's access log line. */
function identified(set: object, caller: Caller): Caller {
  const info = requestInfo(set)
  if (info) info.sub = caller.sub
  return caller
}

function unauthorized(message: string, tokenGiven: boolean): ApiError {
  const challenge = tokenGiven ? `Bearer error="invalid_token", error_description="${message.replace(/"/g, "'")}"` : 'Bearer'
  return new ApiError('unauthorized', message, undefined, { 'www-authenticate': challenge })
}

/**
 * Who may call what, in the configured mode. Routes ask `authenticate` for the caller (a 401 or,
 * in local mode, a 403 when there is none) and `permit` for a scope and a task (a 403).
 */
export class Access {
  /** Present when AUTH_SECRET is set: minting needs it in every mode. */
  readonly tokens: Tokens | undefined
  /** Listening on a loopback address only: every client is local, so local mode checks none. */
  private loopbackOnly = false

  constructor(
    readonly mode: AuthMode,
    secret: string | undefined,
  ) {
    this.tokens = secret === undefined ? undefined : new Tokens(secret)
  }

  /** Tells where the server listens (Bun's `server.hostname`), once it does. */
  listening(hostname: string | undefined): void {
    this.loopbackOnly = hostname !== undefined && isLoopback(hostname)
  }

  /** The client's address as Bun reports it, or '' when it cannot tell (a request not from a socket). */
  static address(request: Request, server: Server | null): string {
    return server?.requestIP(request)?.address ?? ''
  }

  /**
   * The caller of a request: without waiting in open and local mode and for a token seen before,
   * else after verifying its signature. `set` is the request's Elysia `set`: the access log takes
   * the token's subject from it. `queryToken` is the `?token=` of a stream URL.
   */
  authenticate(request: Request, server: Server | null, set: object, queryToken?: string): Caller | Promise<Caller> {
    if (this.mode === 'open') return OPEN
    if (this.mode === 'local') {
      if (this.loopbackOnly || isLoopback(Access.address(request, server))) return LOCAL
      throw new ApiError('forbidden', LOCAL_ONLY)
    }
    // The header as sent is the cache key: a token seen before costs this lookup and nothing else.
    const header = request.headers.get('authorization')
    const credential = header ?? queryToken
    if (credential === undefined || credential === '') throw unauthorized(NO_TOKEN, false)
    const cached = this.tokens!.cached(credential)
    if (cached) return identified(set, cached)
    if (header === null) return this.verify(credential, credential, set)
    if (!/^bearer /i.test(header)) throw unauthorized('The Authorization header must be "Bearer <token>"', true)
    const token = header.slice(7).trim()
    if (token === '') throw unauthorized(NO_TOKEN, false)
    return this.verify(token, header, set)
  }

  private async verify(token: string, credential: string, set: object): Promise<Caller> {
    try {
      return identified(set, await this.tokens!.verify(token, credential))
    } catch (error) {
      if (error instanceof InvalidTokenError) throw unauthorized(error.message, true)
      throw error
    }
  }

  /** Throws a 403 unless the caller holds `scope` and, when given, may touch `taskId`. */
  permit(caller: Caller, scope: Scope, taskId?: string): Caller {
    if (!hasScope(caller.scopes, scope)) throw new ApiError('forbidden', lacksScope(scope))
    if (taskId !== undefined && !mayTouch(caller, taskId))
      throw new ApiError('forbidden', `This token is limited to other tasks than ${taskId}`)
    return caller
  }

  /** Whether the caller may read a task's logs (a WebSocket's subscribe action asks). */
  mayRead(caller: Caller, taskId: string): boolean {
    return hasScope(caller.scopes, 'logs:read') && mayTouch(caller, taskId)
  }

  /** What a connection counts against in MAX_CONNECTIONS_PER_CLIENT: the token's subject, else the address. */
  client(caller: Caller, request: Request, server: Server | null): string {
    return this.mode === 'token' ? `sub:${caller.sub}` : `ip:${Access.address(request, server)}`
  }
}
