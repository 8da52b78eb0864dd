import { now, type Level } from '../schemas/common'
import type { StoredLog } from './history-store'

/** A log ready to send: `data` is the LogMessage JSON, built from the stored body without re-serializing. */
export interface LiveLog {
  id: string
  level: Level
  data: string
}

/** The LogMessage JSON: the stored body is the message without its id, spliced in front. */
export const logData = (log: StoredLog): string => `{"id":"${log.id}",${log.body.slice(1)}`

export const toLiveLog = (log: StoredLog): LiveLog => ({ id: log.id, level: log.level, data: logData(log) })

/** A server frame `{ type, data?, timestamp }` whose data is already JSON. */
export const rawFrame = (type: string, data: string, timestamp = now()): string =>
  `{"type":"${type}","data":${data},"timestamp":"${timestamp}"}`

export const frame = (type: string, data?: unknown): string =>
  data === undefined ? `{"type":"${type}","timestamp":"${now()}"}` : rawFrame(type, JSON.stringify(data))

export const errorFrame = (code: string, message: string): string => frame('error', { message, code })
