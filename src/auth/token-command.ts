import { parseArgs } from 'node:util'
import { MAX_TTL_SECONDS, SCOPES } from '../schemas/token'
import { canonicalUuid } from '../../clients/ts/src/ids'
import { scopeBits } from './scopes'
import { Tokens } from './tokens'

const USAGE = `usage: bun run src/index.ts token --scope <scopes> --ttl <duration> [--tasks <id,id>] [--sub <name>]
  --scope  space- or comma-separated: ${SCOPES.join(', ')} (admin implies all)
  --ttl    lifetime: 3600, 3600s, 90m, 12h or 30d (at most 365d)
  --tasks  limit the token to these task ids
  --sub    who the token is for (default: admin)`

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 }

/** `30d`, `12h`, `90m`, `3600s` or `3600`, in seconds; undefined when it is none of these. */
function parseTtl(text: string): number | undefined {
  const match = /^(\d+)([smhd]?)$/.exec(text.trim())
  if (!match) return undefined
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2] || 's']!
  return seconds >= 1 && seconds <= MAX_TTL_SECONDS ? seconds : undefined
}

/**
 * `token`: prints a token signed with AUTH_SECRET, typically a first admin token from which
 * narrower ones are minted over the API. Returns the exit code.
 */
export async function tokenCommand(args: string[], secret: string | undefined): Promise<number> {
  let values
  try {
    ;({ values } = parseArgs({
      args,
      options: {
        scope: { type: 'string', multiple: true },
        ttl: { type: 'string' },
        tasks: { type: 'string' },
        sub: { type: 'string' },
      },
    }))
  } catch (error) {
    console.error(`tasklog token: ${(error as Error).message}\n${USAGE}`)
    return 2
  }
  if (secret === undefined) {
    console.error(
      'tasklog token: set AUTH_SECRET (at least 32 bytes): tokens are signed with it, and the server checks them with it',
    )
    return 1
  }
  const names = (values.scope ?? []).flatMap((s) => s.split(/[\s,]+/)).filter((s) => s !== '')
  const unknown = names.find((n) => !(SCOPES as readonly string[]).includes(n))
  if (names.length === 0 || unknown !== undefined) {
    console.error(`tasklog token: ${unknown ? `unknown scope ${unknown}` : '--scope is required'}\n${USAGE}`)
    return 2
  }
  const ttl = values.ttl === undefined ? undefined : parseTtl(values.ttl)
  if (ttl === undefined) {
    console.error(`tasklog token: --ttl is required: a lifetime such as 30d, 12h or 3600\n${USAGE}`)
    return 2
  }
  let tasks: string[] | null = null
  if (values.tasks !== undefined) {
    const ids = values.tasks
      .split(',')
      .map((id) => id.trim())
      .filter((id) => id !== '')
    const canonical = ids.map(canonicalUuid)
    const bad = ids.find((_, i) => canonical[i] === undefined)
    if (ids.length === 0 || bad !== undefined) {
      console.error(`tasklog token: --tasks takes task ids (UUIDs) separated by commas${bad ? `; got ${bad}` : ''}`)
      return 2
    }
    tasks = canonical as string[]
  }
  const exp = Math.floor(Date.now() / 1000) + ttl
  console.log(await new Tokens(secret).sign({ sub: values.sub ?? 'admin', scopes: scopeBits(names), tasks, exp }))
  return 0
}
