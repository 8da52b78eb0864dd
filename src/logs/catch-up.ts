/**
 * Catch-up: brings a new watcher from history to live without a gap or a duplicate. History is
 * replayed first (paged when resuming after `since`), while the live events that arrive meanwhile
 * are held for the watcher; then the held events go out, minus the logs replay already sent, and
 * the watcher goes live in the same tick as the last of them. Frames leave in corked batches
 * until the reader falls behind, then wait for it to drain: one reader never makes the server
 * hold more than a batch for it.
 */
import { levelRank } from '../schemas/common'
import type { LogFeed, HistoryStore, Replay } from './backend'
import { toLiveLog, type LiveLog } from './frames'
import { compareLogIds } from '../../clients/ts/src/log-id'
import type { ReplayRequest, Watcher } from './watcher'

/** History is replayed in pages of this many logs, so a long replay never sits in memory at once. */
export const REPLAY_PAGE = 500

/** A live event held for a watcher while it catches up: a log, or a status change's data. */
export type Held = LiveLog | { status: string }

export interface CatchUp {
  taskId: string
  watcher: Watcher
  request: ReplayRequest
  /** The most logs `request.history` may ask for. */
  replayMax: number
  /** Live events held for the watcher, in order; the hub keeps adding to it until the watcher is live. */
  held: readonly Held[]
  /** False once the watcher was stopped (unwatched or lost): catch-up then ends at once. */
  current(): boolean
  /** Makes the watcher live; called in the same batch as the last held event goes out. */
  goLive(): void
}

/**
 * Replays what the watcher asked for, then the held events, then makes it live. Rejects when
 * history cannot be read (the watcher then got nothing but, perhaps, `subscribed`).
 */
export async function catchUp(
  history: Pick<HistoryStore, 'replay' | 'read'>,
  feed: Pick<LogFeed, 'sync'>,
  c: CatchUp,
): Promise<void> {
  const { taskId, watcher, request, current } = c
  let last = request.since
  if (request.since === undefined && !request.history) watcher.subscribed(undefined)
  else {
    const paged = request.since !== undefined
    let page = paged ? await history.replay(taskId, request.since, REPLAY_PAGE) : await newest(history, c)
    if (!current()) return
    watcher.subscribed(paged ? page.recovered : undefined)
    const min = levelRank(watcher.minLevel)
    for (;;) {
      const { logs } = page
      const sent = await paced(watcher, logs, (log) => levelRank(log.level) >= min && watcher.sendLog(toLiveLog(log)), current)
      if (!sent) return
      if (logs.length) last = logs[logs.length - 1]!.id
      if (!paged || logs.length < REPLAY_PAGE) break
      page = await history.replay(taskId, last, REPLAY_PAGE)
      if (!current()) return
    }
    // The feed may still be bringing logs that history already held: they are held too, and
    // dropped below, rather than sent after later ones.
    await feed.sync(taskId)
    if (!current()) return
  }
  const next = (item: Held): boolean => {
    if ('status' in item) return watcher.sendStatus(item.status)
    if (last !== undefined && compareLogIds(item.id, last) <= 0) return false
    last = item.id
    return watcher.sendLog(item)
  }
  await paced(watcher, c.held, next, current, c.goLive)
}

/** `history=n`: the newest n logs the watcher accepts (its level and above), oldest first. */
async function newest(history: Pick<HistoryStore, 'read'>, c: CatchUp): Promise<Replay> {
  const limit = Math.min(c.request.history!, c.replayMax)
  const logs = await history.read(c.taskId, { limit, order: 'desc', minLevel: c.watcher.minLevel })
  return { logs: logs.reverse(), recovered: true }
}

/**
 * Sends `items` in corked batches, waiting for the reader to drain whenever `send` says it is
 * behind. `items` may grow meanwhile: only reaching its end finishes, and `atEnd` runs in that
 * same batch, so nothing can arrive between the last item and it. False when the watcher stopped.
 */
async function paced<T>(
  watcher: Pick<Watcher, 'batch' | 'drained'>,
  items: readonly T[],
  send: (item: T) => boolean,
  current: () => boolean,
  atEnd?: () => void,
): Promise<boolean> {
  for (let i = 0; ; ) {
    let behind = false
    watcher.batch(() => {
      for (; i < items.length && !behind; i++) behind = send(items[i]!)
      if (atEnd && i === items.length) atEnd()
    })
    if (atEnd && i === items.length) return true
    if (behind) await watcher.drained()
    if (!current()) return false
    if (i === items.length) return true
  }
}
