import type { Level } from '../../src/schemas/common'
import type { NewLog } from '../../src/schemas/log'
import { encodeLog } from '../../src/logs/encode'

/** A log as a worker would send it, with no worker assigned and `extra` on top. */
export const newLog = (taskId: string, subtaskId: string, level: Level, message: string, extra: Partial<NewLog> = {}): NewLog => ({
  task_id: taskId,
  subtask_id: subtaskId,
  level,
  message,
  metadata: null,
  worker_id: null,
  worker_name: null,
  timestamp: new Date().toISOString(),
  ...extra,
})

/** A log as an engine stores it, for tests that append to a backend directly. */
export const testLog = (taskId: string, subtaskId: string, level: Level, message: string) =>
  encodeLog(newLog(taskId, subtaskId, level, message, { timestamp: '2026-01-01T00:00:00.000Z' }))
