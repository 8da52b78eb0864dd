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
import ARCHIVE_PENDING from './archive-pending.lua' with { type: 'text' }
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

/** The settings an instance's append script holds as constants (append.lua names them). */
export interface AppendSettings {
  /** The connection's command to publish on the task's channel (RedisConnection.publishCommand). */
  publish: PublishCommand
  ttlMs: number
  maxLen: number
  slackMs: number
  /** The rate limit: ms per log, 0 for none, and the burst in ms. */
  intervalMs: number
  toleranceMs: number
}

/**
 * The append script of one configuration. Its settings are part of its text rather than
 * arguments, which Redis would otherwise read and hand to Lua on every append; instances
 * configured alike share one script.
 */
export function appendScript(s: AppendSettings): Script {
  const constants =
    `local PUBLISH, TTL_MS, MAX_LEN, SLACK_MS, INTERVAL_MS, TOLERANCE_MS = ` +
    `'${s.publish}', ${s.ttlMs}, ${s.maxLen}, ${s.slackMs}, ${s.intervalMs}, ${s.toleranceMs}\n`
  return script('append', LOST_BEFORE, SUBSCRIBERS_ELSEWHERE, constants, APPEND)
}

export const SCRIPTS = {
  read: script('read', LEVEL_RANK, PRELUDE, ENTRY, READ),
  replay: script('replay', LEVEL_RANK, PRELUDE, ENTRY, LOST_BEFORE, REPLAY),
  archiveTake: script('archiveTake', ARCHIVE_TAKE),
  archiveCommit: script('archiveCommit', PRELUDE, ARCHIVE_COMMIT),
  // Its first line is its flags: nothing may come before it.
  archivePending: script('archivePending', ARCHIVE_PENDING),
}

/** The logs a script returns flat, as `id, level, body, id, level, body, ...`. */
export function toStoredLogs(flat: unknown): StoredLog[] {
  if (!Array.isArray(flat)) throw new TypeError('unexpected reply from Redis')
  const out: StoredLog[] = []
  for (let i = 0; i + 2 < flat.length; i += 3) {
    out.push({ id: String(flat[i]), level: String(flat[i + 1]) as Level, body: String(flat[i + 2]) })
  }
  return out
}
