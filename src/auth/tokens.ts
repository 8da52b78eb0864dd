import { SignJWT, jwtVerify } from 'jose'
import { canonicalId } from '../../clients/ts/src/ids'
import type { Caller } from './caller'
import { scopeBits, scopeNames } from './scopes'

export const TOKEN_EXPIRED = 'The token has expired: ask for a new one'

/** Why a token was refused: a 401 with `error="invalid_token"`. */
export class InvalidTokenError extends Error {}

/** What a new token grants; `tasks` null for every task. */
export interface Grant {
  sub: string
  scopes: number
  tasks: readonly string[] | null
  /** Seconds since the epoch. */
  exp: number
}

/**
 * Signs and verifies HS256 tokens with one secret. A verified token is remembered until it
 * expires, keyed by the credential as it arrived (the whole Authorization header, or the token
 * itself), so a token already seen costs one Map lookup: no parsing and no signature check. At
 * most `maxCached` are kept, the oldest forgotten first.
 */
export class Tokens {
  private readonly key: Uint8Array
  private readonly verified = new Map<string, Caller>()

  constructor(
    secret: string,
    private readonly maxCached = 10_000,
  ) {
    this.key = new TextEncoder().encode(secret)
  }

  /** The caller of a credential verified before and not yet expired; undefined otherwise. */
  cached(credential: string): Caller | undefined {
    const caller = this.verified.get(credential)
    if (caller === undefined) return undefined
    if (caller.expires > Date.now()) return caller
    this.verified.delete(credential)
    return undefined
  }

  /**
   * Checks the signature and claims, and remembers the caller under `credential` (what arrived:
   * an Authorization header, or the token itself); throws InvalidTokenError saying what is wrong.
   */
  async verify(token: string, credential = token): Promise<Caller> {
    const hit = this.cached(credential)
    if (hit) return hit
    let payload
    try {
      ;({ payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'], requiredClaims: ['sub', 'exp'] }))
    } catch (error) {
      const code = (error as { code?: string }).code
      if (code === 'ERR_JWT_EXPIRED') throw new InvalidTokenError(TOKEN_EXPIRED)
      if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED')
        throw new InvalidTokenError('The token is not signed by this server: its AUTH_SECRET differs')
      throw new InvalidTokenError('The token is malformed: expected a JWT signed with HS256 by this server')
    }
    const { sub, scope, tasks, exp } = payload
    if (typeof sub !== 'string' || typeof scope !== 'string' || typeof exp !== 'number')
      throw new InvalidTokenError('The token lacks its claims: sub, scope and exp')
    if (tasks !== undefined && (!Array.isArray(tasks) || !tasks.every((id) => typeof id === 'string')))
      throw new InvalidTokenError('The token\'s "tasks" claim must be a list of task ids')
    const caller: Caller = Object.freeze({
      sub,
      scopes: scopeBits(scope.split(' ')),
      tasks: tasks === undefined ? null : new Set((tasks as string[]).map(canonicalId)),
      expires: exp * 1000,
    })
    if (this.verified.size >= this.maxCached) this.verified.delete(this.verified.keys().next().value!)
    this.verified.set(credential, caller)
    return caller
  }

  sign({ sub, scopes, tasks, exp }: Grant): Promise<string> {
    const claims: Record<string, unknown> = { scope: scopeNames(scopes).join(' ') }
    if (tasks !== null) claims.tasks = tasks
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime(exp)
      .sign(this.key)
  }
}
