import { now, type Level } from '../schemas/common'
import type { FrameErrorCode, ServerFrame } from '../schemas/frames'
import type { LogMessage, NewLog } from '../schemas/log'
import type { StoredLog } from './backend'

/** A log ready to send: `data` is the LogMessage JSON, built from the stored body without re-serializing. */
export interface LiveLog {
  id: string
  level: Level
  data: string
}

/** The LogMessage JSON: the stored body is the message without its id, spliced in front. */
export const logData = (log: StoredLog): string => `{"id":"${log.id}",${log.body.slice(1)}`

/** Parses a stored log back into its wire shape. */
export const toLogMessage = (log: StoredLog): LogMessage => ({ id: log.id, ...(JSON.parse(log.body) as NewLog) })

export const toLiveLog = (log: StoredLog): LiveLog => ({ id: log.id, level: log.level, data: logData(log) })

type FrameType = ServerFrame['type']
/** The `data` of a frame type as schemas/frames.ts declares it, so frames built here are checked when compiling. */
type FrameData<T extends FrameType> = Extract<ServerFrame, { type: T }> extends { data: infer D } ? D : never

/** A server frame `{ type, data?, timestamp }` whose data is already JSON. */
export const rawFrame = (type: FrameType, data: string, timestamp = now()): string =>
  `{"type":"${type}","data":${data},"timestamp":"${timestamp}"}`

export const frame = <T extends FrameType>(type: T, data?: FrameData<T>): string =>
  data === undefined ? `{"type":"${type}","timestamp":"${now()}"}` : rawFrame(type, JSON.stringify(data))

export const errorFrame = (code: FrameErrorCode, message: string): string => frame('error', { message, code })
