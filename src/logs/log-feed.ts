import type { StoredLog } from './history-store'

/** What a feed delivers to this instance's hub. */
export interface FeedListener {
  /** New logs of a followed task, in id order. */
  logs(taskId: string, logs: StoredLog[]): void
  /** A status change of a followed task: the `status` frame's data, as JSON. */
  status(taskId: string, data: string): void
  /** The feed may have lost events of every task it followed (its connection dropped). */
  interrupted(): void
}

/**
 * How a task's new logs and status changes reach the hub of every instance that has subscribers
 * for it, in the order its history store wrote them (DESIGN "Several instances"). The hub
 * follows a task while it has subscribers here and knows nothing else of where events come from.
 */
export interface LogFeed {
  /** Where events go: the hub registers itself. */
  listen(listener: FeedListener): void
  /**
   * Starts delivering a task's events here. Resolves once every log appended and every status
   * published from then on will be delivered; rejects with StoreUnavailableError otherwise.
   */
  follow(taskId: string): Promise<void>
  /**
   * Resolves once every event of a followed task stored before the call has been delivered here.
   * History read from the store can be ahead of the feed: a watcher goes live only after this.
   */
  sync(): Promise<void>
  /** Stops delivering a task's events here. */
  unfollow(taskId: string): void
  /**
   * Tells the other instances how many subscribers this instance has for a task: `atLevel[r]`
   * have minimum level rank r (all zero: none any more). Their appends count them in
   * `broadcasted` (Appended.subscribersElsewhere). The array is the hub's own, which it keeps
   * updating and announces again on each change: a feed may read it later, when it writes.
   */
  announce(taskId: string, atLevel: readonly number[]): void
  /** Sends a status change to every instance following the task. */
  publishStatus(taskId: string, data: string): Promise<void>
  close(): Promise<void>
}
