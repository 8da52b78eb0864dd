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
