import type { Level } from '../../src/schemas/common'
import { encodeLog } from '../../src/logs/encode'

/** A log as an engine stores it, for tests that append to a backend directly. */
export const testLog = (taskId: string, subtaskId: string, level: Level, message: string) =>
  encodeLog({
    task_id: taskId,
    subtask_id: subtaskId,
    level,
    message,
    metadata: null,
    worker_id: null,
    worker_name: null,
    timestamp: '2026-01-01T00:00:00.000Z',
  })
