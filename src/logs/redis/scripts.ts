/**
 * The Redis engine's Lua scripts, each run in one round trip with EVALSHA (loaded once with
 * SCRIPT LOAD; after a Redis restart emptied the script cache, the NOSCRIPT reply falls back to
 * EVAL, which runs the script and caches it again). Each script names its KEYS and ARGV at its
 * top; the helpers it uses come first.
 */
import { LEVELS, type Level } from '../../schemas/common'
import type { StoredLog } from '../backend'
import type { PublishCommand } from './connection'
import APPEND from './append.lua' with { type: 'text' }
import ARCHIVE_COMMIT from './archive-commit.lua' with { type: 'text' }
import ARCHIVE_TAKE from './archive-take.lua' with { type: 'text' }
import ENTRY from './entry.lua' with { type: 'text' }
import LOST_BEFORE from './lost-before.lua' with { type: 'text' }
import PRELUDE from './prelude.lua' with { type: 'text' }
import READ from './read.lua' with { type: 'text' }
import REPLAY from './replay.lua' with { type: 'text' }
import SUBSCRIBERS_ELSEWHERE from './subscribers-elsewhere.lua' with { type: 'text' }

export interface Script {
  name: string
  source: string
  sha: string
}

/** Each level's rank (`levelRank`), for the scripts that filter or compare levels. */
const LEVEL_RANK = `local LEVEL_RANK = { ${LEVELS.map((level, rank) => `${level} = ${rank}`).join(', ')} }\n`

const script = (name: string, ...parts: string[]): Script => {
  const source = parts.join('\n')
  return { name, source, sha: new Bun.CryptoHasher('sha1').update(source).digest('hex') }
}

const scriptSet = (publish: PublishCommand) => ({
  // The append publishes on the task's channel with the connection's command (connection.ts).
  append: script('append', `local PUBLISH = '${publish}'`, LEVEL_RANK, LOST_BEFORE, SUBSCRIBERS_ELSEWHERE, APPEND),
  read: script('read', LEVEL_RANK, PRELUDE, ENTRY, READ),
  replay: script('replay', LEVEL_RANK, PRELUDE, ENTRY, LOST_BEFORE, REPLAY),
  archiveTake: script('archiveTake', PRELUDE, ENTRY, ARCHIVE_TAKE),
  archiveCommit: script('archiveCommit', PRELUDE, ARCHIVE_COMMIT),
})

export type ScriptSet = ReturnType<typeof scriptSet>

const SETS: Record<PublishCommand, ScriptSet> = { PUBLISH: scriptSet('PUBLISH'), SPUBLISH: scriptSet('SPUBLISH') }

/** The scripts for a connection that publishes with `publish` (RedisConnection.publishCommand). */
export const scriptsFor = (publish: PublishCommand): ScriptSet => SETS[publish]

/** The logs a script returns flat, as `id, level, body, id, level, body, ...`. */
export function toStoredLogs(flat: unknown): StoredLog[] {
  if (!Array.isArray(flat)) throw new TypeError('unexpected reply from Redis')
  const out: StoredLog[] = []
  for (let i = 0; i + 2 < flat.length; i += 3) {
    out.push({ id: String(flat[i]), level: String(flat[i + 1]) as Level, body: String(flat[i + 2]) })
  }
  return out
}
