/**
 * History across the archive and the live history as ONE sequence: the archive holds the oldest
 * logs (up to each task's archive cursor, for ARCHIVE_DAYS), the engine's history the newest
 * (for LOG_TTL_SECONDS); they overlap while a log is in both. Every read takes one side up to
 * where it ends and continues on the other side strictly after (or before) the last id it
 * returned, so ids stay strictly increasing with no duplicate and nothing skipped at the seam.
 * The routes and the hub use it as any HistoryStore when ARCHIVE_DAYS > 0.
 */
import type { AppendOptions, Appended, HistoryQuery, HistoryStore, Replay, StoredLog } from '../logs/backend'
import type { EncodedLog } from '../logs/encode'
import { requireLogId, taskCreatedMs } from '../logs/log-id'
import type { LogArchive } from './log-archive'

export interface ArchivedHistoryOptions {
  archiveDays: number
  /** The clock (ms since the epoch); Date.now by default. */
  now?: () => number
}

export class ArchivedHistory implements HistoryStore {
  readonly description: string
  readonly #retentionMs: number
  readonly #now: () => number

  constructor(
    private readonly live: HistoryStore,
    private readonly archive: LogArchive,
    opts: ArchivedHistoryOptions,
  ) {
    this.description = `${live.description}, archived for ${opts.archiveDays} day${opts.archiveDays === 1 ? '' : 's'} in ${archive.description}`
    this.#retentionMs = opts.archiveDays * 86_400_000
    this.#now = opts.now ?? Date.now
  }

  append(taskId: string, logs: EncodedLog[], options?: AppendOptions): Promise<Appended> {
    return this.live.append(taskId, logs, options)
  }

  async read(taskId: string, query: HistoryQuery): Promise<StoredLog[]> {
    if (query.since !== undefined) requireLogId(query.since)
    if (query.limit <= 0) return []
    if (query.order === 'asc') {
      // Oldest first: the archive, then the live history after the last archived match.
      const archived = await this.archive.read(taskId, query)
      if (archived.length >= query.limit) return archived
      const since = archived.at(-1)?.id ?? query.since
      return archived.concat(await this.live.read(taskId, { ...query, since, limit: query.limit - archived.length }))
    }
    // Newest first: the live history, then the archive before its oldest match. Fewer matches
    // than asked means the live history has no other match, so the archive's are all older.
    const recent = await this.live.read(taskId, query)
    if (recent.length >= query.limit) return recent
    const before = recent.at(-1)?.id
    return recent.concat(await this.archive.read(taskId, { ...query, before, limit: query.limit - recent.length }))
  }

  /**
   * `recovered` (backend.ts Replay), across both: false when `since` is older than the archive
   * keeps logs (for a task that old), or when the live history lost logs after the last archived
   * one while still holding later ones. A live history with nothing left after it loses nothing
   * the archive does not hold, as long as the archiver keeps up (its lag below the TTL, which
   * /metrics shows).
   */
  async replay(taskId: string, since: string | undefined, limit: number): Promise<Replay> {
    if (since === undefined) {
      const logs = await this.read(taskId, { limit, order: 'desc' })
      return { logs: logs.reverse(), recovered: true }
    }
    const after = requireLogId(since)
    const cutoff = this.#now() - this.#retentionMs
    const created = taskCreatedMs(taskId)
    const retained = after.ms >= cutoff || (created !== undefined && created >= cutoff)
    const archived = await this.archive.read(taskId, { limit, order: 'asc', since })
    if (archived.length >= limit) return { logs: archived, recovered: retained }
    const last = archived.at(-1)?.id ?? since
    const live = await this.live.replay(taskId, last, limit - archived.length)
    const seamKept = live.recovered || (live.logs.length === 0 && (archived.length > 0 || (await this.archive.holds(taskId))))
    return { logs: archived.concat(live.logs), recovered: retained && seamKept }
  }

  ping(): Promise<void> {
    return this.live.ping()
  }

  usedMemory(): Promise<number> {
    return this.live.usedMemory()
  }
}
