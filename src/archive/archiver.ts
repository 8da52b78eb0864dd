/**
 * Copies logs from the engine's history to the archive, off the hot path: every `intervalMs`
 * it takes the tasks with logs not archived yet (the one waiting longest first) and, a few at a
 * time, stores each one's logs in batches and moves its cursor only once they are stored
 * (ArchiveSource). A failure leaves the cursor where it was: the next round stores the batch
 * again, which the archive's idempotent writes absorb. Retention deletes logs older than
 * ARCHIVE_DAYS in bounded batches, at most every `retentionEveryMs`.
 */
import type { ArchiveSource } from '../logs/backend'
import type { LogArchive } from './log-archive'

export interface ArchiverOptions {
  archiveDays: number
  /** Pause between rounds when nothing is left to archive (ms). */
  intervalMs: number
  /** Logs taken from history per batch. */
  batchSize?: number
  /** Tasks archived at once. */
  concurrency?: number
  retentionEveryMs?: number
  /** Logs deleted per statement, and statements per retention round. */
  retentionBatch?: number
  logger?: Pick<Console, 'warn' | 'info'>
  now?: () => number
}

export type ArchiverState = 'starting' | 'ok' | 'failing' | 'stopped'

/** Tasks looked at per round. */
const TASKS_PER_ROUND = 1000
const RETENTION_ROUNDS = 10

export class Archiver {
  state: ArchiverState = 'starting'
  /** The last failure's message while `failing`. */
  lastError: string | undefined
  rowsWritten = 0
  errors = 0
  /** Batches whose first log did not follow the cursor: logs left history before they were archived. */
  gaps = 0
  readonly #batchSize: number
  readonly #concurrency: number
  readonly #retentionEveryMs: number
  readonly #retentionBatch: number
  readonly #now: () => number
  #lastRetention = -Infinity
  #timer: ReturnType<typeof setTimeout> | undefined
  #round: Promise<void> | undefined
  #stopped = false

  constructor(
    private readonly source: ArchiveSource,
    private readonly archive: LogArchive,
    private readonly opts: ArchiverOptions,
  ) {
    this.#batchSize = opts.batchSize ?? 2000
    this.#concurrency = opts.concurrency ?? 4
    this.#retentionEveryMs = opts.retentionEveryMs ?? 60_000
    this.#retentionBatch = opts.retentionBatch ?? 10_000
    this.#now = opts.now ?? Date.now
  }

  start(): void {
    this.#schedule(0)
  }

  /** Tasks with logs not archived yet, and the seconds since the oldest of those logs was written (0 when none waits). */
  async backlog(): Promise<{ tasks: number; lagSeconds: number }> {
    const { tasks, oldestMs } = await this.source.backlog()
    return { tasks, lagSeconds: oldestMs === undefined ? 0 : Math.max(0, this.#now() - oldestMs) / 1000 }
  }

  /** What /ready shows: the state, the last failure while failing, and the lag when the history store answers. */
  async readiness(): Promise<{ state: ArchiverState; error?: string; lag_seconds?: number; pending_tasks?: number }> {
    const backlog = await this.backlog().catch(() => undefined)
    return {
      state: this.state,
      ...(this.state === 'failing' && this.lastError !== undefined && { error: this.lastError }),
      ...(backlog && { lag_seconds: backlog.lagSeconds, pending_tasks: backlog.tasks }),
    }
  }

  /** Finishes the round under way; starts no other. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#round
    this.state = 'stopped'
  }

  /** One round: archives what is pending (until nothing is or a failure), then retention when due. */
  async runOnce(): Promise<void> {
    let busy = true
    while (busy && !this.#stopped) busy = await this.#archivePending()
    if (this.#now() - this.#lastRetention >= this.#retentionEveryMs) {
      await this.#retention()
      this.#lastRetention = this.#now()
    }
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#round = this.runOnce().then(
        () => {
          this.state = 'ok'
          this.lastError = undefined
        },
        (error: Error) => {
          this.errors++
          if (this.state !== 'failing') this.opts.logger?.warn(`[archive] failing: ${error.message}; retrying`)
          this.state = 'failing'
          this.lastError = error.message
        },
      )
      void this.#round.finally(() => this.#schedule(this.opts.intervalMs))
    }, delayMs)
  }

  /** Archives a round of pending tasks; true when a task may still have more. */
  async #archivePending(): Promise<boolean> {
    const tasks = await this.source.pending(TASKS_PER_ROUND)
    let more = false
    let written = 0
    let next = 0
    const worker = async () => {
      while (next < tasks.length && !this.#stopped) {
        const before = this.rowsWritten
        if (await this.#archiveTask(tasks[next++]!)) more = true
        written += this.rowsWritten - before
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, tasks.length) }, worker))
    // A full round that archived something may have left tasks beyond it; leased ones wait.
    return more || (tasks.length === TASKS_PER_ROUND && written > 0)
  }

  /** Archives one task's logs, batch by batch; true when it stopped with more to take. */
  async #archiveTask(taskId: string): Promise<boolean> {
    for (let batches = 0; batches < 50; batches++) {
      const batch = await this.source.take(taskId, this.#batchSize)
      if (!batch) return false // another instance archives it
      if (batch.gap) this.gaps++
      const full = batch.count === this.#batchSize
      if (batch.count > 0) {
        await this.archive.insert(taskId, batch.rows)
        this.rowsWritten += batch.count
      }
      await this.source.commit(taskId, batch.lastId, !full || this.#stopped)
      if (!full || this.#stopped) return false
    }
    await this.source.commit(taskId, undefined, true)
    return true
  }

  async #retention(): Promise<void> {
    const cutoff = this.#now() - this.opts.archiveDays * 86_400_000
    for (let i = 0; i < RETENTION_ROUNDS; i++) {
      if ((await this.archive.deleteBefore(cutoff, this.#retentionBatch)) < this.#retentionBatch) return
    }
  }
}
