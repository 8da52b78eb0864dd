import type { Status } from '../schemas/common'
import type { Subtask, Task, UpdateSubtask } from '../schemas/task'

export interface TaskPage {
  tasks: Task[]
  next_cursor: string | null
}

/** The result of a subtask update: the subtask and the task status derived after it. */
export interface SubtaskUpdate {
  subtask: Subtask
  task_status: Status
}

/**
 * Permanent registry of tasks and their subtasks. A task's status and updated_at are
 * derived from its subtasks on every read, so concurrent updates of sibling subtasks
 * can never leave a stale task status behind.
 */
export interface TaskStore {
  /** Where tasks live, for the start-up line and /ready (no credentials). */
  readonly description: string
  /** Creates a task with the given subtask descriptions (at least one), in order. */
  createTask(description: string, subtasks: string[]): Promise<Task>
  /** Newest first; `cursor` is the `next_cursor` of the previous page; `taskIds` keeps only those tasks. */
  listTasks(query: { status?: Status; limit: number; cursor?: string; taskIds?: readonly string[] }): Promise<TaskPage>
  getTask(taskId: string): Promise<Task | null>
  getSubtask(subtaskId: string): Promise<Subtask | null>
  /** Applies the given fields; null when the subtask is unknown. */
  updateSubtask(subtaskId: string, patch: UpdateSubtask): Promise<SubtaskUpdate | null>
  /** Resolves when the database answers. */
  ping(): Promise<void>
  close(): Promise<void>
}
