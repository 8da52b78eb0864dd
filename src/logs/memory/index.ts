/**
 * The memory engine, the embedded default when REDIS_URL is unset: history in this process, a
 * feed that delivers at once, and no presence to share (one process is one instance).
 */
import type { BackendLimits, LogBackend, Presence } from '../backend'
import { MemoryArchiveSource } from './archive-source'
import { MemoryFeed } from './feed'
import { MemoryHistory } from './history'

export interface MemoryBackendOptions extends BackendLimits {
  /** Bytes all tasks may hold together (default 256 MiB): past it, the stalest tasks are trimmed. */
  maxBytes?: number
  /** The clock (ms since the epoch) that stamps ids and expires logs; tests may set it. */
  now?: () => number
  /** Keeps track of the logs to archive (archive-source.ts). */
  archive?: object
}

/** Nobody elsewhere to tell: appends count no subscribers elsewhere. */
const ALONE: Presence = { announce() {} }

export function memoryBackend(opts: MemoryBackendOptions): LogBackend & { history: MemoryHistory } {
  const feed = new MemoryFeed()
  const history = new MemoryHistory({ ...opts, feed })
  const archiveSource = opts.archive && new MemoryArchiveSource(history)
  return { history, feed, presence: ALONE, ...(archiveSource && { archiveSource }), close: () => history.close() }
}
