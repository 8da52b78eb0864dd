import { ApiError, type ErrorDetail } from '../errors'
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

/**
 * Turns validated log requests into logs of one subtask, enforcing the byte limits.
 * All or nothing: every offending entry is reported, with its index for batches.
 */
export function toNewLogs(requests: LogRequest[], subtask: SubtaskRef, limits: LogLimits, pathPrefix: string): NewLog[] {
  const problems: ErrorDetail[] = []
  const received = new Date().toISOString()
  const logs = requests.map((req, i) => {
    const at = pathPrefix.replace('{i}', String(i))
    // UTF-8 needs at most 3 bytes per UTF-16 unit: only long messages need measuring.
    if (req.message.length * 3 > limits.maxMessageBytes) {
      const bytes = Buffer.byteLength(req.message)
      if (bytes > limits.maxMessageBytes)
        problems.push({
          path: `${at}/message`,
          message: `message is ${bytes} bytes; at most ${limits.maxMessageBytes} are allowed`,
        })
    }
    const metadata = req.metadata ?? null
    if (metadata !== null) {
      const bytes = Buffer.byteLength(JSON.stringify(metadata))
      if (bytes > limits.maxMetadataBytes)
        problems.push({
          path: `${at}/metadata`,
          message: `metadata is ${bytes} bytes as JSON; at most ${limits.maxMetadataBytes} are allowed`,
        })
    }
    return {
      task_id: subtask.task_id,
      subtask_id: subtask.subtask_id,
      level: req.level,
      message: req.message,
      metadata,
      worker_id: subtask.worker_id,
      worker_name: subtask.worker_name,
      timestamp: req.timestamp ? new Date(req.timestamp).toISOString() : received,
    }
  })
  if (problems.length) throw new ApiError('validation', `Log rejected: ${problems[0]!.message}`, problems)
  return logs
}
