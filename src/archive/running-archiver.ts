/**
 * What the rest of the app knows of an archiver, wherever it runs (archiver.ts in this thread,
 * archiver-thread.ts on a thread of its own): its state and counters for /metrics and /ready,
 * the backlog, and stop().
 */
import type { ArchiveSource } from '../logs/backend'

export type ArchiverState = 'starting' | 'ok' | 'failing' | 'stopped'

/** What /ready shows of the archive. */
export interface ArchiveReadiness {
  state: ArchiverState
  error?: string
  lag_seconds?: number
  pending_tasks?: number
}

/** Tasks with logs not archived yet, and the seconds since the oldest of those logs was written (0 when none waits). */
export interface ArchiveBacklog {
  tasks: number
  lagSeconds: number
}

export interface RunningArchiver {
  readonly state: ArchiverState
  /** The last failure's message while `failing`. */
  readonly lastError: string | undefined
  /** Logs written to the archive. */
  readonly rowsWritten: number
  /** Rounds that failed. */
  readonly errors: number
  /** Batches whose first log did not follow the cursor: logs left history before they were archived. */
  readonly gaps: number
  backlog(): Promise<ArchiveBacklog>
  readiness(): Promise<ArchiveReadiness>
  /** Finishes the round under way; starts no other. */
  stop(): Promise<void>
}

/** The backlog as `source` reports it, its age at `nowMs`. */
export async function backlogOf(source: ArchiveSource, nowMs: number): Promise<ArchiveBacklog> {
  const { tasks, oldestMs } = await source.backlog()
  return { tasks, lagSeconds: oldestMs === undefined ? 0 : Math.max(0, nowMs - oldestMs) / 1000 }
}

/** What /ready shows: the state, the last failure while failing, and the lag when the history store answers. */
export async function readinessOf(archiver: RunningArchiver): Promise<ArchiveReadiness> {
  const backlog = await archiver.backlog().catch(() => undefined)
  return {
    state: archiver.state,
    ...(archiver.state === 'failing' && archiver.lastError !== undefined && { error: archiver.lastError }),
    ...(backlog && { lag_seconds: backlog.lagSeconds, pending_tasks: backlog.tasks }),
  }
}
