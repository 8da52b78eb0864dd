import { ALL_SCOPES } from './scopes'

/** Who makes a request, and what it may touch. */
export interface Caller {
  /** The token's `sub`; `local` or `open` without tokens. */
  readonly sub: string
  /** Bit set of scopes (scopes.ts). */
  readonly scopes: number
  /** The only tasks it may touch, or null for every task. */
  readonly tasks: ReadonlySet<string> | null
  /** When its token expires, in ms since the epoch; Infinity without tokens. */
  readonly expires: number
}

/** A loopback client in local mode, or anyone in open mode: every scope, every task, forever. */
export const unrestricted = (sub: string): Caller => Object.freeze({ sub, scopes: ALL_SCOPES, tasks: null, expires: Infinity })

export const mayTouch = (caller: Caller, taskId: string): boolean => caller.tasks === null || caller.tasks.has(taskId)
