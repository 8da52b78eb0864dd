import { SCOPES, type Scope } from '../schemas/token'

export type { Scope }

/**
 * What a caller may do, as a bit set so that a check on the hot path is one AND. A token's
 * `scope` claim lists the names space-separated; `admin` implies every other.
 */
const BIT: Record<Scope, number> = { 'tasks:read': 1, 'tasks:write': 2, 'logs:read': 4, 'logs:write': 8, admin: 16 }
/** Every scope: what `admin` grants, and what a loopback client gets in local mode. */
export const ALL_SCOPES = 31

/** The bit set of scope names; `admin` expands to every scope, unknown names grant nothing. */
export function scopeBits(names: Iterable<string>): number {
  let bits = 0
  for (const name of names) {
    const bit = BIT[name as Scope]
    if (bit !== undefined) bits |= bit === BIT.admin ? ALL_SCOPES : bit
  }
  return bits
}

export const hasScope = (bits: number, scope: Scope): boolean => (bits & BIT[scope]) === BIT[scope]

/** The names in a bit set, `admin` alone when it holds every scope. */
export const scopeNames = (bits: number): Scope[] =>
  hasScope(bits, 'admin') ? ['admin'] : SCOPES.filter((s) => hasScope(bits, s))

/**
 * The OpenAPI of an operation that needs `scope` (`any`: any valid token): the bearer scheme
 * (routes/docs.ts), and the scope in `x-required-scope`.
 */
export const requires = (scope: Scope | 'any') => ({
  security: [{ bearer: [] }],
  'x-required-scope': scope,
})
