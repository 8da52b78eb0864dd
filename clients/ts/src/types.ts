/**
 * Wire types of the tasklog API as a client sees them. The SDK imports nothing of the server
 * (the server's test suite checks that its schemas match these types); it runs wherever
 * `fetch` and `WebSocket` exist.
 */

/** Log levels in ascending order of severity: a level filter means "this level and above". */
export const LEVELS = ['debug', 'info', 'warning', 'error'] as const
export type Level = (typeof LEVELS)[number]
export type Status = 'pending' | 'in_progress' | 'completed' | 'failed'

export type Metadata = Record<string, unknown>

/** A log line as stored and streamed. `id` is `<ms>-<seq>`, strictly increasing within a task. */
export interface LogMessage {
  id: string
  task_id: string
  subtask_id: string
  level: Level
  message: string
  metadata: Metadata | null
  worker_id: string | null
  worker_name: string | null
  /** ISO 8601, UTC. */
  timestamp: string
}

/** One line of `POST /subtasks/{id}/logs`. */
export interface LogEntry {
  level: Level
  message: string
  metadata?: Metadata | null
  /** ISO 8601, or Unix time (seconds, or milliseconds past 2e10); the server's time when absent. */
  timestamp?: string | number
}

/** `201` answer of `POST /subtasks/{id}/logs`. */
export interface BatchAccepted {
  success: true
  accepted: number
  broadcasted: number
  first_id: string
  last_id: string
}

/** `data` of a `status` frame: a subtask's new status, and its task's status as derived from all its subtasks. */
export interface StatusChange {
  task_id: string
  subtask_id: string
  status: Status
  task_status: Status
  worker_name: string | null
}

/** Every error answer of the HTTP API. */
export interface ErrorBody {
  error: string
  message: string
  details?: { path: string; message: string }[]
}

export interface Subtask {
  subtask_id: string
  task_id: string
  description: string
  status: Status
  position: number
  worker_id: string | null
  worker_name: string | null
  created_at: string
  updated_at: string
}

export interface Task {
  task_id: string
  description: string
  status: Status
  created_at: string
  updated_at: string
  subtasks: Subtask[]
}

/** A page of `GET /tasks`, newest first. */
export interface TaskPage {
  tasks: Task[]
  next_cursor: string | null
}

export interface LogHistory {
  task_id: string
  logs: LogMessage[]
  count: number
  next_since: string | null
}

/**
 * `canonicalUuid(id)`: the id as the server stores and sends it (lowercase, hyphenated) when it is a
 * UUID in any form the server accepts (any case, `urn:uuid:…`, `{…}`, 32 hex digits), else
 * undefined. `isUuid(id)`: whether it is already in canonical form, in any case.
 */
export { canonicalUuid, isUuid } from './ids.js'

export const isLevel = (value: string): value is Level => (LEVELS as readonly string[]).includes(value)
