import { ApiError } from '../errors'
import type { MintToken } from '../schemas/token'
import { canonicalId } from '../../clients/ts/src/ids'
import type { Caller } from './caller'
import { scopeBits, scopeNames } from './scopes'
import type { Grant } from './tokens'

/**
 * What a caller asks a new token to grant, checked to be no wider than its own: scopes it
 * holds, tasks it may touch (a caller limited to tasks must name some of them), and an expiry
 * no later than its own. Throws a 403 naming what is too wide.
 */
export function narrowGrant(caller: Caller, request: MintToken, nowMs: number): Grant {
  const scopes = scopeBits(request.scopes)
  const extra = scopes & ~caller.scopes
  if (extra !== 0) throw new ApiError('forbidden', `A token cannot grant what its caller lacks: ${scopeNames(extra).join(', ')}`)
  const tasks = request.task_ids === undefined ? null : [...new Set(request.task_ids.map(canonicalId))]
  if (caller.tasks !== null) {
    if (tasks === null) throw new ApiError('forbidden', 'This token is limited to some tasks: name them in task_ids')
    const other = tasks.find((id) => !caller.tasks!.has(id))
    if (other !== undefined) throw new ApiError('forbidden', `This token is limited to other tasks than ${other}`)
  }
  const exp = Math.floor(nowMs / 1000) + request.ttl_seconds
  if (exp * 1000 > caller.expires) {
    const left = Math.max(0, Math.floor((caller.expires - nowMs) / 1000))
    throw new ApiError('forbidden', `A token cannot outlive its caller's: ttl_seconds may be at most ${left}`)
  }
  return { sub: request.sub ?? caller.sub, scopes, tasks, exp }
}
