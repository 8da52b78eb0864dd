import { InvalidInputError } from '../store-errors'
import { parseLogId, type LogIdParts } from '../../clients/ts/src/log-id'

/** Validates a `since` argument; a malformed one is the caller's error, not the store's. */
export function requireLogId(id: string, field = 'since'): LogIdParts {
  const parts = parseLogId(id)
  if (!parts) {
    throw new InvalidInputError(`${field} must be a log id of the form <ms>-<seq>`, [
      { path: field, message: 'expected a log id such as 1764152130123-0' },
    ])
  }
  return parts
}

/**
 * When a task was created, from its id: a UUID v7 (what the task store issues) begins with its
 * creation time in ms. Undefined for another kind of id. No log of a task is older.
 */
export function taskCreatedMs(taskId: string): number | undefined {
  if (taskId[14] !== '7') return undefined
  const ms = parseInt(taskId.slice(0, 8) + taskId.slice(9, 13), 16)
  return Number.isNaN(ms) ? undefined : ms
}
