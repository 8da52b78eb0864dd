/**
 * The memory engine's side of the archive: one process is one instance, so the cursors (the
 * last archived id of each task) live here and no lease is needed. A task is pending while its
 * history holds a log after its cursor; cursors of tasks whose history is gone are forgotten, so
 * a task that lost its whole history before it was archived counts no gap.
 */
import { compareLogIds, parseLogId } from '../../../clients/ts/src/log-id'
import type { ArchiveBatch, ArchiveSource } from '../backend'
import type { MemoryHistory } from './history'

export class MemoryArchiveSource implements ArchiveSource {
  readonly #cursors = new Map<string, string>()

  constructor(private readonly history: MemoryHistory) {}

  /** Tasks whose oldest log after the cursor is oldest come first, with that log's ms. */
  #scan(): Array<[taskId: string, ms: number]> {
    const out: Array<[string, number]> = []
    const live = new Set<string>()
    for (const taskId of this.history.taskIds()) {
      live.add(taskId)
      const [next] = this.history.entriesAfter(taskId, this.#after(taskId), 1)
      if (next) out.push([taskId, next.ms])
    }
    for (const taskId of this.#cursors.keys()) if (!live.has(taskId)) this.#cursors.delete(taskId)
    return out.sort((a, b) => a[1] - b[1])
  }

  #after(taskId: string) {
    const cursor = this.#cursors.get(taskId)
    return cursor === undefined ? undefined : parseLogId(cursor)
  }

  async pending(limit: number, writtenBy = Infinity): Promise<string[]> {
    return this.#scan()
      .filter(([, ms]) => ms <= writtenBy)
      .slice(0, limit)
      .map(([taskId]) => taskId)
  }

  async backlog(): Promise<{ tasks: number; oldestMs?: number }> {
    const pending = this.#scan()
    return { tasks: pending.length, ...(pending.length > 0 && { oldestMs: pending[0]![1] }) }
  }

  async take(taskId: string, count: number, afterId?: string): Promise<ArchiveBatch> {
    const after = afterId === undefined ? this.#after(taskId) : parseLogId(afterId)
    const entries = this.history.entriesAfter(taskId, after, count)
    // Logs removed after the last archived one left history unarchived.
    const gap = entries.length > 0 && after !== undefined && this.history.lostAfter(taskId, after)
    const last = entries.at(-1)
    return {
      rows: Buffer.from(entries.map((e) => `${e.log.id}\t${e.log.body}`).join('\n')),
      count: entries.length,
      ...(last && { lastId: last.log.id }),
      gap,
    }
  }

  async commit(taskId: string, lastId: string | undefined): Promise<void> {
    const cursor = this.#cursors.get(taskId)
    if (lastId !== undefined && (cursor === undefined || compareLogIds(cursor, lastId) < 0)) this.#cursors.set(taskId, lastId)
  }
}
