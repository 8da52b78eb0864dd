import { ApiError, type ErrorDetail } from '../errors'
import { now, type Level } from '../schemas/common'
import type { LogRequest, NewLog } from '../schemas/log'

export interface SubtaskRef {
  task_id: string
  subtask_id: string
  worker_id: string | null
  worker_name: string | null
}

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
 * The body is assembled from pieces serialized once each: ids, levels and timestamps need no
 * escaping, and the parts shared by every log of a subtask are built once per request. Key
 * order matches `JSON.stringify(NewLog)`.
 */
class BodyWriter {
  private readonly head: string
  private readonly tail: string
  constructor(readonly ref: SubtaskRef) {
    this.head = `{"task_id":"${ref.task_id}","subtask_id":"${ref.subtask_id}","level":"`
    this.tail = `,"worker_id":${JSON.stringify(ref.worker_id)},"worker_name":${JSON.stringify(ref.worker_name)},"timestamp":"`
  }

  write(level: Level, message: string, metadataJson: string, timestamp: string): EncodedLog {
    const body = `${this.head}${level}","message":${JSON.stringify(message)},"metadata":${metadataJson}${this.tail}${timestamp}"}`
    return { level, subtask_id: this.ref.subtask_id, body }
  }
}

/** Serializes one log (e.g. one built in code rather than received). */
export const encodeLog = (log: NewLog): EncodedLog =>
  new BodyWriter(log).write(log.level, log.message, JSON.stringify(log.metadata), log.timestamp)

// UTF-8 needs at most 3 bytes per UTF-16 unit: only long strings need measuring.
const utf8Bytes = (text: string, limit: number): number => (text.length * 3 <= limit ? text.length : Buffer.byteLength(text))

/**
 * Turns validated log requests into encoded logs of one subtask, enforcing the byte limits.
 * All or nothing: every offending entry is reported, with its index for batches.
 */
export function encodeRequests(requests: LogRequest[], subtask: SubtaskRef, limits: LogLimits, pathPrefix: string): EncodedLog[] {
  const problems: ErrorDetail[] = []
  const problem = (i: number, field: string, message: string) =>
    problems.push({ path: `${pathPrefix.replace('{i}', String(i))}/${field}`, message })
  const received = now()
  const writer = new BodyWriter(subtask)
  const logs = requests.map((req, i) => {
    const bytes = utf8Bytes(req.message, limits.maxMessageBytes)
    if (bytes > limits.maxMessageBytes)
      problem(i, 'message', `message is ${bytes} bytes; at most ${limits.maxMessageBytes} are allowed`)
    const metadataJson = req.metadata == null ? 'null' : JSON.stringify(req.metadata)
    const metadataBytes = utf8Bytes(metadataJson, limits.maxMetadataBytes)
    if (metadataBytes > limits.maxMetadataBytes)
      problem(i, 'metadata', `metadata is ${metadataBytes} bytes as JSON; at most ${limits.maxMetadataBytes} are allowed`)
    return writer.write(req.level, req.message, metadataJson, req.timestamp ? new Date(req.timestamp).toISOString() : received)
  })
  if (problems.length) throw new ApiError('validation', `Log rejected: ${problems[0]!.message}`, problems)
  return logs
}
