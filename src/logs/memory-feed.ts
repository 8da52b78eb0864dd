import type { StoredLog } from './history-store'
import type { FeedListener, LogFeed } from './log-feed'

/**
 * The in-process feed (the embedded default, beside MemoryHistory, which publishes the logs it
 * appends here): what is published is delivered at once, to every hub listening; apps in one
 * process that share it and a MemoryHistory behave as instances sharing Redis.
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

  /** One process is one instance (MemoryHistory counts no subscribers elsewhere). */
  announce(): void {}

  /** Logs a MemoryHistory has just appended, in id order. */
  publishLogs(taskId: string, logs: StoredLog[]): void {
    for (const listener of this.listeners) listener.logs(taskId, logs)
  }

  publishStatus(taskId: string, data: string): Promise<void> {
    for (const listener of this.listeners) listener.status(taskId, data)
    return Promise.resolve()
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}
