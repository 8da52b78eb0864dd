import type { Level } from '../schemas/common'
import type { LiveLog } from './frames'

/**
 * How a watcher receives a task's live events once it has caught up; the hub offers both ways
 * and each transport takes the one it has.
 */
export interface LiveDelivery {
  /**
   * The Bun topic that carries a task's frames to subscribers at `minLevel`: a WebSocket
   * subscribes to it and Bun fans out natively, with no JavaScript per socket.
   */
  topic(taskId: string, minLevel: Level): string
  /** Hands a task's live events to the watcher from JavaScript, for a transport with no native topic. */
  listen(taskId: string, watcher: Watcher): void
  unlisten(taskId: string, watcher: Watcher): void
}

/** One subscriber of one task, as the hub and catch-up see it: a WebSocket subscription or an SSE stream. */
export interface Watcher {
  readonly minLevel: Level
  /** Called once history is read, before any replayed log. `recovered` is set when `since` was given. */
  subscribed(recovered: boolean | undefined): void
  /** Sends one log; true when the reader is behind and the sender should await `drained`. */
  sendLog(log: LiveLog): boolean
  /** Sends a status change (the `status` frame's data, as JSON); true when the reader is behind. */
  sendStatus(data: string): boolean
  /** Resolves when the reader has caught up (or is gone). */
  drained(): Promise<void>
  /** Runs `send` so that the frames it sends leave together (a corked socket). */
  batch(send: () => void): void
  /**
   * The watcher has missed live events (too many arrived while history was replayed to a slow
   * reader, or live delivery was interrupted) and must resume with `since`: stop it.
   */
  lost(reason: string): void
  /** Starts receiving the task's live events, the way this transport can. */
  join(taskId: string, live: LiveDelivery): void
  /** Stops receiving them. */
  leave(taskId: string, live: LiveDelivery): void
}

export interface ReplayRequest {
  /** Replay every log after this id. */
  since?: string
  /** Replay the newest n logs the watcher accepts (its level and above). */
  history?: number
}
