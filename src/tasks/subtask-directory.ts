import type { Subtask, SubtaskRef } from '../schemas/task'
import type { TaskStore } from './task-store'

/**
 * What log ingest needs to know of a subtask (its task and assigned worker), cached so
 * the hot path does not query the database for every line. Entries live `ttlMs`, so a
 * worker assignment changed on another instance shows within that time; changes made on
 * this instance show at once. Bounded to `maxEntries`, oldest evicted first.
 */
export class SubtaskDirectory {
  private readonly entries = new Map<string, { ref: SubtaskRef; expires: number }>()

  constructor(
    private readonly tasks: TaskStore,
    private readonly options = { ttlMs: 5_000, maxEntries: 10_000 },
  ) {}

  /** The cached reference, without waiting; undefined when it must be looked up. */
  cached(subtaskId: string): SubtaskRef | undefined {
    const hit = this.entries.get(subtaskId)
    return hit && hit.expires > performance.now() ? hit.ref : undefined
  }

  async lookup(subtaskId: string): Promise<SubtaskRef | null> {
    const hit = this.cached(subtaskId)
    if (hit) return hit
    const subtask = await this.tasks.getSubtask(subtaskId)
    if (!subtask) return null
    return this.remember(subtask)
  }

  /** Records a subtask just read or changed on this instance. */
  remember(subtask: Subtask): SubtaskRef {
    const { task_id, subtask_id, worker_id, worker_name } = subtask
    const ref = { task_id, subtask_id, worker_id, worker_name }
    this.entries.delete(subtask_id)
    if (this.entries.size >= this.options.maxEntries) this.entries.delete(this.entries.keys().next().value!)
    this.entries.set(subtask_id, { ref, expires: performance.now() + this.options.ttlMs })
    return ref
  }
}
