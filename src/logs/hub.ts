import type { Server, ServerWebSocket } from 'bun'
import { LEVELS, levelRank, now, type Level, type Status } from '../schemas/common'
import type { Subtask } from '../schemas/task'
import { logData, rawFrame, toLiveLog, type LiveLog } from './frames'
import type { HistoryStore, StoredLog } from './history-store'
import { compareLogIds } from './log-id'

/**
 * One subscriber of one task: a WebSocket subscription (live logs arrive through Bun's native
 * topic) or an SSE stream (live logs are handed to it by the hub).
 */
export interface Watcher {
  readonly minLevel: Level
  /** WebSocket subscribers get live frames natively through this socket's topic subscription. */
  readonly socket?: ServerWebSocket<unknown>
  /** Called once history is read, before any replayed log. `recovered` is set when `since` was given. */
  subscribed(taskId: string, recovered: boolean | undefined): void
  /** Sends one frame directly; true when the reader is behind and the sender should await `drained`. */
  sendLog(log: LiveLog, frame: string): boolean
  sendStatus(data: string, frame: string): boolean
  /** Resolves when the reader has caught up (or is gone). */
  drained(): Promise<void>
  /** Runs `send` so that the frames it sends leave together (a corked socket). */
  batch(send: () => void): void
  /** Too many live logs arrived while history was being replayed to a slow reader. */
  overflow(): void
}

export interface ReplayRequest {
  /** Replay every log after this id. */
  since?: string
  /** Replay the newest n logs. */
  history?: number
}

/** Live frames held for a watcher while its history is read (see `watch`). */
type Pending = ({ log: LiveLog; frame: string } | { status: string; frame: string })[]

/** History is replayed in pages of this many logs, so a long replay never sits in memory at once. */
const REPLAY_PAGE = 500

interface TaskSubscribers {
  /** Subscribers at each minimum level (index = level rank), WebSocket and SSE. */
  counts: number[]
  /** Topic names by level rank, built once rather than per publish. */
  topics: string[]
}

/** The topic of one task at one minimum level: a log of level L is published to every topic of level <= L. */
const topicOf = (taskId: string, level: Level) => `${taskId}:${level}`

/**
 * Fan-out of a task's logs and status changes to its subscribers on this instance.
 * WebSocket delivery is Bun's native pub/sub: one publish per log and level topic, no
 * per-socket JavaScript. Only logs ingested here are delivered: cross-instance delivery is
 * not built (README, "Several instances").
 */
export class Hub {
  private server: Server<unknown> | undefined
  /** Per task with subscribers here: how many at each minimum level, and its topic names. */
  private readonly tasks = new Map<string, TaskSubscribers>()
  /** Per task: SSE watchers, which have no native topic. */
  private readonly listeners = new Map<string, Set<Watcher>>()
  /** Per task: watchers whose history is being read, with the live frames held for them. */
  private readonly replaying = new Map<string, Map<Watcher, Pending>>()
  /** All subscriptions here, for metrics. */
  subscriptions = 0
  /** Live log and status frames delivered, one per accepting subscriber, for metrics. */
  framesSent = 0

  constructor(
    private readonly history: HistoryStore,
    private readonly limits: { replayMax: number },
  ) {}

  attach(server: Server<unknown>): void {
    this.server = server
  }

  /** Subscribers of the task whose filter accepts a log of `level`; all of them by default. */
  subscriberCount(taskId: string, level: Level = 'error'): number {
    const counts = this.tasks.get(taskId)?.counts
    if (!counts) return 0
    let n = 0
    for (let r = levelRank(level); r >= 0; r--) n += counts[r]!
    return n
  }

  /**
   * Starts delivering a task's logs to a watcher, replaying history first when asked.
   * Live logs published while history is read are held and flushed, minus the ids replay
   * already sent, in the same tick the watcher goes live: no gap, no duplicate.
   * When reading history fails the watcher is not subscribed and the error is rethrown.
   */
  async watch(taskId: string, watcher: Watcher, replay: ReplayRequest = {}): Promise<void> {
    this.count(taskId, watcher.minLevel, +1)
    if (replay.since === undefined && !replay.history) {
      watcher.subscribed(taskId, undefined)
      this.goLive(taskId, watcher)
      return
    }
    let held = this.replaying.get(taskId)
    if (!held) this.replaying.set(taskId, (held = new Map()))
    const pending: Pending = []
    held.set(watcher, pending)
    const watching = () => held.get(watcher) === pending
    try {
      const paged = replay.since !== undefined
      let page = await this.history.replay(
        taskId,
        replay.since,
        paged ? REPLAY_PAGE : Math.min(replay.history!, this.limits.replayMax),
      )
      if (!watching()) return
      watcher.subscribed(taskId, paged ? page.recovered : undefined)
      const min = levelRank(watcher.minLevel)
      let last = replay.since
      for (;;) {
        const logs = page.logs
        const timestamp = now()
        // Frames go out in corked batches (one write for many frames) until the reader falls behind.
        for (let i = 0; i < logs.length;) {
          let behind = false
          watcher.batch(() => {
            for (; i < logs.length && !behind; i++) {
              if (levelRank(logs[i]!.level) < min) continue
              const log = toLiveLog(logs[i]!)
              behind = watcher.sendLog(log, rawFrame('log', log.data, timestamp))
            }
          })
          if (behind) await watcher.drained()
          if (!watching()) return
        }
        if (logs.length) last = logs[logs.length - 1]!.id
        if (!paged || logs.length < REPLAY_PAGE) break
        page = await this.history.replay(taskId, last, REPLAY_PAGE)
        if (!watching()) return
      }
      // Flush what was published meanwhile; it may grow while we wait for the reader, so
      // only an empty queue, checked in the same tick as going live, ends the replay.
      for (let i = 0; ;) {
        let behind = false
        watcher.batch(() => {
          for (; i < pending.length && !behind; i++) {
            const item = pending[i]!
            if ('status' in item) behind = watcher.sendStatus(item.status, item.frame)
            else if (last === undefined || compareLogIds(item.log.id, last) > 0) {
              behind = watcher.sendLog(item.log, item.frame)
              last = item.log.id
            }
          }
          if (i === pending.length) this.goLive(taskId, watcher)
        })
        if (i === pending.length) return
        if (behind) await watcher.drained()
        if (!watching()) return
      }
    } catch (error) {
      if (watching()) this.count(taskId, watcher.minLevel, -1)
      throw error
    } finally {
      if (watching()) held.delete(watcher)
      if (held.size === 0 && this.replaying.get(taskId) === held) this.replaying.delete(taskId)
    }
  }

  /** Stops delivery to a watcher; safe to call while its replay is still running. */
  unwatch(taskId: string, watcher: Watcher): void {
    const held = this.replaying.get(taskId)
    if (held?.delete(watcher) && held.size === 0) this.replaying.delete(taskId)
    if (watcher.socket) watcher.socket.unsubscribe(topicOf(taskId, watcher.minLevel))
    else {
      const set = this.listeners.get(taskId)
      if (set?.delete(watcher) && set.size === 0) this.listeners.delete(taskId)
    }
    this.count(taskId, watcher.minLevel, -1)
  }

  /**
   * Delivers stored logs of one task to every subscriber here and returns how many
   * subscribers accept at least one of them.
   */
  publishLogs(taskId: string, logs: StoredLog[]): number {
    const task = this.tasks.get(taskId)
    if (!task || logs.length === 0) return 0
    const { counts, topics } = task
    const timestamp = now()
    const listeners = this.listeners.get(taskId)
    const held = this.replaying.get(taskId)
    let top = 0
    let accepting = 0
    for (const stored of logs) {
      const rank = levelRank(stored.level)
      const data = logData(stored)
      const text = rawFrame('log', data, timestamp)
      // Topics with no subscriber at their level are skipped: usually one publish per log.
      for (let r = 0; r <= rank; r++) {
        if (counts[r] === 0) continue
        accepting += counts[r]!
        this.server?.publish(topics[r]!, text)
      }
      if (rank > top) top = rank
      if (listeners || held) {
        const log = { id: stored.id, level: stored.level, data }
        if (listeners) for (const w of listeners) if (levelRank(w.minLevel) <= rank) w.sendLog(log, text)
        if (held) this.hold(held, (w) => levelRank(w.minLevel) <= rank, { log, frame: text })
      }
    }
    this.framesSent += accepting
    return this.subscriberCount(taskId, LEVELS[top])
  }

  /** Broadcasts a subtask's status change to every subscriber of its task, whatever their level. */
  publishStatus(subtask: Subtask, taskStatus: Status): void {
    const taskId = subtask.task_id
    const task = this.tasks.get(taskId)
    if (!task) return
    const data = JSON.stringify({
      task_id: taskId,
      subtask_id: subtask.subtask_id,
      status: subtask.status,
      task_status: taskStatus,
      worker_name: subtask.worker_name,
    })
    const text = rawFrame('status', data)
    this.framesSent += this.subscriberCount(taskId)
    for (const topic of task.topics) this.server?.publish(topic, text)
    for (const w of this.listeners.get(taskId) ?? []) w.sendStatus(data, text)
    const held = this.replaying.get(taskId)
    if (held) this.hold(held, () => true, { status: data, frame: text })
  }

  private hold(held: Map<Watcher, Pending>, accepts: (w: Watcher) => boolean, item: Pending[number]): void {
    for (const [w, pending] of held) {
      if (!accepts(w)) continue
      if (pending.length >= this.limits.replayMax) {
        held.delete(w)
        w.overflow()
      } else pending.push(item)
    }
  }

  private goLive(taskId: string, watcher: Watcher): void {
    if (watcher.socket) watcher.socket.subscribe(topicOf(taskId, watcher.minLevel))
    else {
      let set = this.listeners.get(taskId)
      if (!set) this.listeners.set(taskId, (set = new Set()))
      set.add(watcher)
    }
  }

  private count(taskId: string, level: Level, delta: number): void {
    let task = this.tasks.get(taskId)
    if (!task) this.tasks.set(taskId, (task = { counts: LEVELS.map(() => 0), topics: LEVELS.map((l) => topicOf(taskId, l)) }))
    const { counts } = task
    this.subscriptions += delta
    counts[levelRank(level)]! += delta
    if (counts.every((n) => n === 0)) this.tasks.delete(taskId)
  }
}
