import type { Level, LogMessage } from '../../clients/ts/src/types'
import { compareLogIds } from '../../clients/ts/src/log-id'
import { api } from './connection'

/** A history page, the most the API gives. */
const PAGE = 1000

/**
 * The newest `max` logs of a task older than `oldest` (all its logs when undefined), oldest
 * first; `more` says whether history holds older ones still. History pages run oldest first
 * (`order=asc`, then `since`), so they are read from the start of history up to `oldest`.
 */
export async function olderLines(
  taskId: string,
  oldest: string | undefined,
  level: Level | undefined,
  max: number,
): Promise<{ logs: LogMessage[]; more: boolean }> {
  const kept: LogMessage[] = []
  let more = false
  let since: string | undefined
  for (;;) {
    const page = await api.getLogs(taskId, { order: 'asc', limit: PAGE, since, level })
    let reached = false
    for (const log of page.logs) {
      if (oldest !== undefined && compareLogIds(log.id, oldest) >= 0) {
        reached = true
        break
      }
      kept.push(log)
    }
    if (kept.length > max) {
      kept.splice(0, kept.length - max)
      more = true
    }
    if (reached || page.logs.length < PAGE || !page.next_since) return { logs: kept, more }
    since = page.next_since
  }
}
