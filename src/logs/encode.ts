import { InvalidInputError, type InputProblem } from '../store-errors'
import { now, utcTimestamp, type Level } from '../schemas/common'
import type { LogRequest, NewLog } from '../schemas/log'
import type { SubtaskRef } from '../schemas/task'

export interface LogLimits {
  maxMessageBytes: number
  maxMetadataBytes: number
}

/** A log serialized once, ready for a history store: `body` is the LogMessage JSON without its id. */
export interface EncodedLog {
  level: Level
  subtask_id: string
  body: string
}

/**
 * A log with its body: the log as JSON without its id, in `LogMessage` key order (the Redis
 * store's subtask filter relies on `subtask_id` being the first such key). One JSON.stringify of
 * the whole object makes one flat string: assembled from separately serialized pieces it would be
 * a string of many parts that every later reader (the Redis encoder, the frame) copies first.
 */
const encoded = (ref: SubtaskRef, level: Level, message: string, metadata: unknown, timestamp: string): EncodedLog => ({
  level,
  subtask_id: ref.subtask_id,
  body: JSON.stringify({
    task_id: ref.task_id,
    subtask_id: ref.subtask_id,
    level,
    message,
    metadata: metadata ?? null,
    worker_id: ref.worker_id,
    worker_name: ref.worker_name,
    timestamp,
  }),
})

/** Serializes one log (e.g. one built in code rather than received). */
export const encodeLog = (log: NewLog): EncodedLog => encoded(log, log.level, log.message, log.metadata, log.timestamp)

// UTF-8 needs at most 3 bytes per UTF-16 unit: only long strings need measuring.
const utf8Bytes = (text: string, limit: number): number => (text.length * 3 <= limit ? text.length : Buffer.byteLength(text))

/**
 * Turns validated log requests into encoded logs of one subtask, enforcing the byte limits.
 * All or nothing: every offending entry is reported, with its index for batches.
 */
export function encodeRequests(requests: LogRequest[], subtask: SubtaskRef, limits: LogLimits, pathPrefix: string): EncodedLog[] {
  const problems: InputProblem[] = []
  const problem = (i: number, field: string, message: string) =>
    problems.push({ path: `${pathPrefix.replace('{i}', String(i))}/${field}`, message })
  const received = now()
  const logs = requests.map((req, i) => {
    const bytes = utf8Bytes(req.message, limits.maxMessageBytes)
    if (bytes > limits.maxMessageBytes)
      problem(i, 'message', `message is ${bytes} bytes; at most ${limits.maxMessageBytes} are allowed`)
    const timestamp = req.timestamp === undefined ? received : utcTimestamp(req.timestamp)
    if (timestamp === undefined) problem(i, 'timestamp', `timestamp ${req.timestamp} is not a real date and time`)
    const log = encoded(subtask, req.level, req.message, req.metadata, timestamp ?? received)
    // The metadata is within the body, so a body within the limit needs no separate measuring.
    if (req.metadata != null && utf8Bytes(log.body, limits.maxMetadataBytes) > limits.maxMetadataBytes) {
      const metadataBytes = Buffer.byteLength(JSON.stringify(req.metadata))
      if (metadataBytes > limits.maxMetadataBytes)
        problem(i, 'metadata', `metadata is ${metadataBytes} bytes as JSON; at most ${limits.maxMetadataBytes} are allowed`)
    }
    return log
  })
  if (problems.length) throw new InvalidInputError(`Log rejected: ${problems[0]!.message}`, problems)
  return logs
}
