import type { Server } from 'bun'
import { LEVELS, levelRank, now, topRank, type Level, type Status } from '../schemas/common'
import type { StatusChange } from '../schemas/frames'
import type { Subtask } from '../schemas/task'
import type { LogBackend, StoredLog } from './backend'
import { catchUp, type Held } from './catch-up'
import { logData, rawFrame } from './frames'
import type { LiveDelivery, ReplayRequest, Watcher } from './watcher'
import { fallbackLogger, type Logger } from '../logger'

interface TaskSubscribers {
  /** The task's id, one string for all its subscribers (see `sharedTaskId`). */
  id: string
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
 * per-socket JavaScript; a transport with no native topic is handed each event (Watcher.join).
 * Events come from the backend's feed, which the hub asks to follow each task that has
 * subscribers here: logs appended on any instance sharing the backend arrive in id order. The
 * hub announces its subscriber counts through the backend's presence.
 */
export class Hub {
  private server: Server<unknown> | undefined
  /** Per task with subscribers here: how many at each minimum level, and its topic names. */
  private readonly tasks = new Map<string, TaskSubscribers>()
  /** Per task: watchers with no native topic, handed each event. */
  private readonly listeners = new Map<string, Set<Watcher>>()
  /** Per task: watchers catching up, with the live events held for them. */
  private readonly replaying = new Map<string, Map<Watcher, Held[]>>()
  /** All subscriptions here, for metrics. */
  subscriptions = 0
  /** Live log and status frames delivered, one per accepting subscriber, for metrics. */
  framesSent = 0
  /** How many times the feed lost its connection, for metrics; follows begun before the last one are void. */
  interruptions = 0
  private readonly logger: Logger
  private readonly interruptedHandlers: ((reason: string) => void)[] = []

  /** How watchers go live: a native topic per task and level, or the hub's listeners. */
  private readonly live: LiveDelivery = {
    topic: topicOf,
    listen: (taskId, watcher) => {
      let set = this.listeners.get(taskId)
      if (!set) this.listeners.set(taskId, (set = new Set()))
      set.add(watcher)
    },
    unlisten: (taskId, watcher) => {
      const set = this.listeners.get(taskId)
      if (set?.delete(watcher) && set.size === 0) this.listeners.delete(taskId)
    },
  }

  constructor(
    private readonly backend: Pick<LogBackend, 'history' | 'feed' | 'presence'>,
    private readonly limits: { replayMax: number; logger?: Logger },
  ) {
    this.logger = limits.logger ?? fallbackLogger()
    // The feed calls these from a request (memory) or a Redis connection's reader: a failure is
    // reported here, never thrown into either.
    const guarded =
      <T>(deliver: (taskId: string, event: T) => void) =>
      (taskId: string, event: T) => {
        try {
          deliver.call(this, taskId, event)
        } catch (error) {
          this.logger.error({ err: error, task_id: taskId }, 'delivery to the subscribers of a task failed')
        }
      }
    backend.feed.listen({
      logs: guarded(this.deliverLogs),
      status: guarded(this.deliverStatus),
      interrupted: () => this.interrupt(),
    })
  }

  attach(server: Server<unknown>): void {
    this.server = server
  }

  /**
   * The task's id as the hub holds it while the task has subscribers here, else `taskId`: a
   * subscriber that keeps this one rather than its request's copy saves a string per connection.
   */
  sharedTaskId(taskId: string): string {
    return this.tasks.get(taskId)?.id ?? taskId
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
   * Starts delivering a task's logs to a watcher, replaying history first when asked (catch-up.ts:
   * no gap, no duplicate). When following or reading history fails the watcher is not
   * subscribed and the error is rethrown.
   */
  async watch(taskId: string, watcher: Watcher, replay: ReplayRequest = {}): Promise<void> {
    const task = this.count(taskId, watcher.minLevel, +1)
    if (task.epoch !== this.interruptions) this.follow(taskId, task)
    if (task.followed && replay.since === undefined && !replay.history) {
      // The common case, synchronous: idle connections are most of a server's memory.
      watcher.subscribed(undefined)
      watcher.join(taskId, this.live)
      return
    }
    let replaying = this.replaying.get(taskId)
    if (!replaying) this.replaying.set(taskId, (replaying = new Map()))
    const held: Held[] = []
    replaying.set(watcher, held)
    const current = () => replaying.get(watcher) === held
    try {
      await task.following
      if (!current()) return
      await catchUp(this.backend.history, this.backend.feed, {
        taskId,
        watcher,
        request: replay,
        replayMax: this.limits.replayMax,
        held,
        current,
        goLive: () => watcher.join(taskId, this.live),
      })
    } catch (error) {
      if (current()) this.count(taskId, watcher.minLevel, -1)
      throw error
    } finally {
      if (current()) replaying.delete(watcher)
      if (replaying.size === 0 && this.replaying.get(taskId) === replaying) this.replaying.delete(taskId)
    }
  }

  /** Stops delivery to a watcher; safe to call while its replay is still running. */
  unwatch(taskId: string, watcher: Watcher): void {
    const held = this.replaying.get(taskId)
    if (held?.delete(watcher) && held.size === 0) this.replaying.delete(taskId)
    watcher.leave(taskId, this.live)
    this.count(taskId, watcher.minLevel, -1)
  }

  /**
   * An ingest's `broadcasted`: the subscribers here, and those on other instances the append
   * counted (Appended.subscribersElsewhere), that accept at least one of the logs.
   */
  recipients(taskId: string, logs: readonly { level: Level }[], subscribersElsewhere: number): number {
    return this.subscriberCount(taskId, LEVELS[topRank(logs)]!) + subscribersElsewhere
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
    this.backend.feed
      .publishStatus(subtask.task_id, data)
      .catch((error: Error) => this.logger.warn(`status change not published: ${error.message}`))
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
        if (listeners) for (const w of listeners) if (levelRank(w.minLevel) <= rank) w.sendLog(log)
        if (held) this.hold(held, (w) => levelRank(w.minLevel) <= rank, log)
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
    for (const w of this.listeners.get(taskId) ?? []) w.sendStatus(data)
    const held = this.replaying.get(taskId)
    if (held) this.hold(held, () => true, { status: data })
  }

  private hold(held: Map<Watcher, Held[]>, accepts: (w: Watcher) => boolean, item: Held): void {
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
    const following = this.backend.feed.follow(taskId)
    task.epoch = this.interruptions
    task.following = following
    task.followed = false
    // Watchers await it; the rejection handler keeps one nobody awaits any more from being unhandled.
    following.then(
      () => void (task.following === following && (task.followed = true)),
      () => {},
    )
  }

  /** Counts a subscriber in or out; the first one in makes the feed follow the task, the last one out stops it. */
  private count(taskId: string, level: Level, delta: number): TaskSubscribers {
    let task = this.tasks.get(taskId)
    if (!task) {
      task = {
        id: taskId,
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
    // The array itself, not a copy: a socket's subscribe then allocates nothing.
    this.backend.presence.announce(taskId, counts)
    if (counts.every((n) => n === 0)) {
      this.tasks.delete(taskId)
      // Only once following has settled, and only if no new subscriber has started following again.
      task.following
        .finally(() => {
          if (!this.tasks.has(taskId)) this.backend.feed.unfollow(taskId)
        })
        .catch(() => {})
    }
    return task
  }
}
