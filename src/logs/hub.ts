import type { Server, ServerWebSocket } from 'bun'
import { LEVELS, levelRank, now, type Level, type Status } from '../schemas/common'
import type { StatusChange } from '../schemas/frames'
import type { Subtask } from '../schemas/task'
import { logData, rawFrame, toLiveLog, type LiveLog } from './frames'
import type { HistoryStore, StoredLog } from './history-store'
import type { LogFeed } from './log-feed'
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
  /**
   * The watcher has missed live logs (too many arrived while history was replayed to a slow
   * reader, or live delivery was interrupted) and must resume with `since`: stop it.
   */
  lost(reason: string): void
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
  /** Settles when the feed delivers this task's events here (LogFeed.follow). */
  following: Promise<void>
  /** `following` has resolved: a watcher that needs no history can go live at once. */
  followed: boolean
  /** The hub's `interruptions` when `following` began: an older follow was lost with its connection. */
  epoch: number
}

const RESOLVED = Promise.resolve()

const INTERRUPTED = 'Live delivery was interrupted: reconnect with since=<last id> to resume'

/** The topic of one task at one minimum level: a log of level L is published to every topic of level <= L. */
const topicOf = (taskId: string, level: Level) => `${taskId}:${level}`

/**
 * Fan-out of a task's logs and status changes to its subscribers on this instance.
 * WebSocket delivery is Bun's native pub/sub: one publish per log and level topic, no
 * per-socket JavaScript. Events come from the LogFeed, which the hub asks to follow each task
 * that has subscribers here: logs appended on any instance sharing the feed arrive in id order.
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
  /** How many times the feed lost its connection, for metrics; follows begun before the last one are void. */
  interruptions = 0
  private readonly interruptedHandlers: ((reason: string) => void)[] = []

  constructor(
    private readonly history: HistoryStore,
    private readonly feed: LogFeed,
    private readonly limits: { replayMax: number },
  ) {
    // The feed calls these from a request (memory) or a Redis connection's reader: a failure is
    // reported here, never thrown into either.
    const guarded =
      <T>(deliver: (taskId: string, event: T) => void) =>
      (taskId: string, event: T) => {
        try {
          deliver.call(this, taskId, event)
        } catch (error) {
          console.error(`[hub] delivery to the subscribers of task ${taskId} failed:`, error)
        }
      }
    feed.listen({ logs: guarded(this.deliverLogs), status: guarded(this.deliverStatus), interrupted: () => this.interrupt() })
  }

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
   * Live logs arriving while the feed starts following the task and history is read are held,
   * then flushed, minus the ids replay already sent, in the same tick the watcher goes live:
   * no gap, no duplicate. When following or reading history fails the watcher is not
   * subscribed and the error is rethrown.
   */
  async watch(taskId: string, watcher: Watcher, replay: ReplayRequest = {}): Promise<void> {
    const task = this.count(taskId, watcher.minLevel, +1)
    if (task.epoch !== this.interruptions) this.follow(taskId, task)
    if (task.followed && replay.since === undefined && !replay.history) {
      // The common case, synchronous: idle connections are most of a server's memory.
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
      await task.following
      if (!watching()) return
      let last = replay.since
      if (replay.since === undefined && !replay.history) watcher.subscribed(taskId, undefined)
      else {
        const paged = replay.since !== undefined
        let page = await this.history.replay(
          taskId,
          replay.since,
          paged ? REPLAY_PAGE : Math.min(replay.history!, this.limits.replayMax),
        )
        if (!watching()) return
        watcher.subscribed(taskId, paged ? page.recovered : undefined)
        const min = levelRank(watcher.minLevel)
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
        // The feed may still be bringing logs that history already held: hold them too, and
        // drop them below, rather than send them after later ones.
        await this.feed.sync()
        if (!watching()) return
      }
      // Flush what arrived meanwhile; it may grow while we wait for the reader, so
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
   * An ingest's `broadcasted`: the subscribers here, and those on other instances the append
   * counted (Appended.subscribersElsewhere), that accept at least one of the logs.
   */
  recipients(taskId: string, logs: readonly { level: Level }[], subscribersElsewhere: number): number {
    let top = 0
    for (const log of logs) top = Math.max(top, levelRank(log.level))
    return this.subscriberCount(taskId, LEVELS[top]) + subscribersElsewhere
  }

  /** Sends a subtask's status change to every subscriber of its task, whatever their level, on every instance. */
  publishStatus(subtask: Subtask, taskStatus: Status): void {
    const change: StatusChange = {
      task_id: subtask.task_id,
      subtask_id: subtask.subtask_id,
      status: subtask.status,
      task_status: taskStatus,
      worker_name: subtask.worker_name,
    }
    const data = JSON.stringify(change)
    // The change is stored already; only its live broadcast is lost when the feed is down.
    this.feed.publishStatus(subtask.task_id, data).catch((error: Error) => console.warn(`[hub] ${error.message}`))
  }

  /**
   * Calls `handler` with a close reason when live delivery was interrupted, after the hub has
   * stopped the watchers it holds (live WebSocket subscribers are Bun topic subscribers).
   */
  onInterrupted(handler: (reason: string) => void): void {
    this.interruptedHandlers.push(handler)
  }

  /** Delivers a followed task's logs to its subscribers here. */
  private deliverLogs(taskId: string, logs: StoredLog[]): void {
    const task = this.tasks.get(taskId)
    if (!task || logs.length === 0) return
    const { counts, topics } = task
    const timestamp = now()
    const listeners = this.listeners.get(taskId)
    const held = this.replaying.get(taskId)
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
      if (listeners || held) {
        const log = { id: stored.id, level: stored.level, data }
        if (listeners) for (const w of listeners) if (levelRank(w.minLevel) <= rank) w.sendLog(log, text)
        if (held) this.hold(held, (w) => levelRank(w.minLevel) <= rank, { log, frame: text })
      }
    }
    this.framesSent += accepting
  }

  /** Delivers a followed task's status change to all its subscribers here. */
  private deliverStatus(taskId: string, data: string): void {
    const task = this.tasks.get(taskId)
    if (!task) return
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
        w.lost('Too slow: live logs overflowed while history was replayed')
      } else pending.push(item)
    }
  }

  /**
   * The feed may have lost events: every watcher here resumes from history, and follows begun
   * before now no longer count (the next watcher of a task follows it again).
   */
  private interrupt(): void {
    this.interruptions++
    for (const [, held] of this.replaying) for (const [w] of held) w.lost(INTERRUPTED)
    for (const [, set] of this.listeners) for (const w of set) w.lost(INTERRUPTED)
    for (const handler of this.interruptedHandlers) handler(INTERRUPTED)
  }

  private follow(taskId: string, task: TaskSubscribers): void {
    const following = this.feed.follow(taskId)
    task.epoch = this.interruptions
    task.following = following
    task.followed = false
    // Watchers await it; the rejection handler keeps one nobody awaits any more from being unhandled.
    following.then(
      () => void (task.following === following && (task.followed = true)),
      () => {},
    )
  }

  private goLive(taskId: string, watcher: Watcher): void {
    if (watcher.socket) watcher.socket.subscribe(topicOf(taskId, watcher.minLevel))
    else {
      let set = this.listeners.get(taskId)
      if (!set) this.listeners.set(taskId, (set = new Set()))
      set.add(watcher)
    }
  }

  /** Counts a subscriber in or out; the first one in makes the feed follow the task, the last one out stops it. */
  private count(taskId: string, level: Level, delta: number): TaskSubscribers {
    let task = this.tasks.get(taskId)
    if (!task) {
      task = {
        counts: LEVELS.map(() => 0),
        topics: LEVELS.map((l) => topicOf(taskId, l)),
        following: RESOLVED,
        followed: false,
        epoch: 0,
      }
      this.tasks.set(taskId, task)
      this.follow(taskId, task)
    }
    const { counts } = task
    this.subscriptions += delta
    counts[levelRank(level)]! += delta
    // The array itself, not a copy: a socket's subscribe then allocates nothing (10,000 idle
    // sockets of one task held 0.27 KiB more each when every change made an array).
    this.feed.announce(taskId, counts)
    if (counts.every((n) => n === 0)) {
      this.tasks.delete(taskId)
      // Only once following has settled, and only if no new subscriber has started following again.
      task.following
        .finally(() => {
          if (!this.tasks.has(taskId)) this.feed.unfollow(taskId)
        })
        .catch(() => {})
    }
    return task
  }
}
