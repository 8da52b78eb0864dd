/**
 * Copies logs from the engine's history to the archive, off the hot path. A round takes the
 * tasks whose oldest log not archived yet is `intervalMs` old (the one waiting longest first)
 * and, a few at a time, stores each one's logs in batches and moves its cursor only once they
 * are stored (ArchiveSource); the next round starts when the next task is due. A task thus
 * gathers `intervalMs` of logs between two visits, which it costs one visit to store, rather
 * than a visit per append; a backlog is worked through without pausing. A failure leaves the
 * cursor where it was: the next round stores the batch again, which the archive's idempotent
 * writes absorb. Retention deletes logs older than ARCHIVE_DAYS in bounded batches, at most
 * every `retentionEveryMs`.
 */
import type { ArchiveBatch, ArchiveSource } from '../logs/backend'
import type { LogArchive } from './log-archive'
import { backlogOf, readinessOf, type ArchiveBacklog, type ArchiveReadiness, type ArchiverState, type RunningArchiver } from './running-archiver'

export interface ArchiverOptions {
  archiveDays: number
  /** How old a task's oldest log not archived yet is before the task is archived (ms), once the archiver keeps up. */
  intervalMs: number
  /** Logs taken from history per batch (ARCHIVE_BATCH). */
  batchSize: number
  /** Tasks archived at once. */
  concurrency?: number
  retentionEveryMs?: number
  /** Logs deleted per statement, and statements per retention round. */
  retentionBatch?: number
  logger?: Pick<Console, 'warn' | 'info'>
  now?: () => number
}

/** Tasks looked at per round. */
const TASKS_PER_ROUND = 1000
/** Batches of one task before the archiver turns to the others (and lets another instance take it). */
const BATCHES_PER_TURN = 50
/**
 * A task's batches being stored at once: the database takes a batch on each of two
 * connections (its pool), while the next batch is read from the engine.
 */
const INSERTS_IN_FLIGHT = 2
const RETENTION_ROUNDS = 10

export class Archiver implements RunningArchiver {
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
    this.#batchSize = opts.batchSize
    this.#concurrency = opts.concurrency ?? 4
    this.#retentionEveryMs = opts.retentionEveryMs ?? 60_000
    this.#retentionBatch = opts.retentionBatch ?? 10_000
    this.#now = opts.now ?? Date.now
  }

  start(): void {
    this.#schedule(0)
  }

  backlog(): Promise<ArchiveBacklog> {
    return backlogOf(this.source, this.#now())
  }

  readiness(): Promise<ArchiveReadiness> {
    return readinessOf(this)
  }

  /** Finishes the round under way; starts no other. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#round
    this.state = 'stopped'
  }

  /** One round: archives the due tasks (until none is left or a failure), then retention when due. */
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
      void this.#round.finally(async () =>
        this.#schedule(this.state === 'failing' ? this.opts.intervalMs : await this.#untilDue()),
      )
    }, delayMs)
  }

  /**
   * Until the task waiting longest is due, within a quarter of an interval and one interval: the
   * floor keeps a task another instance holds from making the rounds follow each other.
   */
  async #untilDue(): Promise<number> {
    const interval = this.opts.intervalMs
    const oldestMs = await this.source.backlog().then(
      (b) => b.oldestMs,
      () => undefined,
    )
    const due = oldestMs === undefined ? interval : oldestMs + interval - this.#now()
    return Math.min(interval, Math.max(interval / 4, due))
  }

  /** Archives a round of due tasks; true when a task may still have more. */
  async #archivePending(): Promise<boolean> {
    const tasks = await this.source.pending(TASKS_PER_ROUND, this.#now() - this.opts.intervalMs)
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
   * Archives one task's logs, batch by batch: up to INSERTS_IN_FLIGHT batches are being stored at
   * once (the next one is taken while the others are stored), and the cursor moves past each
   * batch in order, once it and every batch before it are stored; a crash re-archives at most
   * the batches in flight. The commit of a turn's last batch lets go of the lease. A commit is
   * sent without waiting for its answer: the next take follows it on the connection, and its
   * answer is awaited before the next commit. True when the task stopped with more to take.
   */
  async #archiveTask(taskId: string): Promise<boolean> {
    const inFlight: Array<{ batch: ArchiveBatch; stored: Promise<void>; last: boolean }> = []
    let committed: Promise<void> = Promise.resolve()
    let taken = 0
    let after: string | undefined
    let ended = false
    for (;;) {
      while (!ended && inFlight.length < INSERTS_IN_FLIGHT) {
        const batch = await this.source.take(taskId, this.#batchSize, after)
        if (!batch) {
          ended = true // another instance holds the lease: what is in flight is still committed
          break
        }
        taken++
        after = batch.lastId
        ended = batch.count < this.#batchSize || this.#stopped || taken === BATCHES_PER_TURN
        const stored = batch.count > 0 ? this.archive.insert(taskId, batch.rows) : Promise.resolve()
        // Awaited in turn below; one that fails while an earlier one is awaited is no unhandled rejection.
        stored.catch(() => {})
        inFlight.push({ batch, stored, last: ended })
      }
      const oldest = inFlight.shift()
      if (!oldest) {
        await committed
        return false
      }
      const { batch, stored, last } = oldest
      await stored
      await committed
      this.rowsWritten += batch.count
      if (batch.gap) this.gaps++
      committed = this.source.commit(taskId, batch.lastId, last)
      committed.catch(() => {}) // awaited before the next commit or the return
      if (last) {
        await committed
        return batch.count === this.#batchSize && !this.#stopped
      }
    }
  }

  async #retention(): Promise<void> {
    const cutoff = this.#now() - this.opts.archiveDays * 86_400_000
    for (let i = 0; i < RETENTION_ROUNDS; i++) {
      if ((await this.archive.deleteBefore(cutoff, this.#retentionBatch)) < this.#retentionBatch) return
    }
  }
}
