import { isUuid } from '../../clients/ts/src/ids'
import type { TaskStore } from './task-store'

/**
 * Answers "does this task exist?" for streams and history reads without a database query
 * each time: tasks are never deleted, so a task once found stays found. Bounded to
 * `maxEntries` ids, oldest forgotten first; unknown ids are always asked again.
 */
export class KnownTasks {
  private readonly ids = new Set<string>()

  constructor(
    private readonly tasks: TaskStore,
    private readonly maxEntries = 100_000,
  ) {}

  async exists(taskId: string): Promise<boolean> {
    if (this.ids.has(taskId)) return true
    if (!isUuid(taskId) || !(await this.tasks.getTask(taskId))) return false
    this.remember(taskId)
    return true
  }

  remember(taskId: string): void {
    if (this.ids.size >= this.maxEntries) this.ids.delete(this.ids.values().next().value!)
    this.ids.add(taskId)
  }
}
