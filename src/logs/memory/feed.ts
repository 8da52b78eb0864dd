import type { FeedListener, LogFeed, StoredLog } from '../backend'

/**
 * The in-process feed: what is published is delivered at once, to every hub listening. Apps in
 * one process that share one memory backend behave as instances sharing Redis.
 */
export class MemoryFeed implements LogFeed {
  private readonly listeners: FeedListener[] = []

  listen(listener: FeedListener): void {
    this.listeners.push(listener)
  }

  follow(): Promise<void> {
    return Promise.resolve()
  }

  sync(): Promise<void> {
    return Promise.resolve()
  }

  unfollow(): void {}

  /** Logs the MemoryHistory has just appended, in id order. */
  publishLogs(taskId: string, logs: StoredLog[]): void {
    for (const listener of this.listeners) listener.logs(taskId, logs)
  }

  publishStatus(taskId: string, data: string): Promise<void> {
    for (const listener of this.listeners) listener.status(taskId, data)
    return Promise.resolve()
  }
}
