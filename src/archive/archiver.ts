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
/** Batches of one task before the archiver turns to the others (and lets another instance take it). */
const BATCHES_PER_TURN = 50
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

  /**
   * Archives one task's logs, batch by batch, reading the next batch while the database stores
   * the last one; the cursor still moves past a batch only once it is stored. The last batch of
   * a turn lets go of the lease with its commit. True when the task stopped with more to take.
   */
  async #archiveTask(taskId: string): Promise<boolean> {
    let batch = await this.source.take(taskId, this.#batchSize)
    for (let n = 1; batch; n++) {
      const full = batch.count === this.#batchSize
      const last = !full || this.#stopped || n === BATCHES_PER_TURN
      const stored = batch.count > 0 ? this.archive.insert(taskId, batch.rows) : undefined
      const next = last ? undefined : this.source.take(taskId, this.#batchSize, batch.lastId)
      // Awaited below, unless storing this batch fails first.
      next?.catch(() => {})
      await stored
      this.rowsWritten += batch.count
      await this.source.commit(taskId, batch.lastId, last)
      if (batch.gap) this.gaps++
      if (last) return full && !this.#stopped
      batch = await next
    }
    return false // another instance archives it
  }

  async #retention(): Promise<void> {
    const cutoff = this.#now() - this.opts.archiveDays * 86_400_000
    for (let i = 0; i < RETENTION_ROUNDS; i++) {
      if ((await this.archive.deleteBefore(cutoff, this.#retentionBatch)) < this.#retentionBatch) return
    }
  }
}
