import { t, type Static } from 'elysia'
import { LevelSchema, LogId, Timestamp, Uuid } from './common'

export const LogRequest = t.Object(
  {
    level: LevelSchema,
    message: t.String({ description: 'The log line' }),
    metadata: t.Optional(t.Nullable(t.Record(t.String(), t.Unknown(), { description: 'Free-form structured data' }))),
    timestamp: t.Optional(Timestamp),
  },
  { examples: [{ level: 'info', message: 'Processing step 1', metadata: { step: 1 } }] },
)
export type LogRequest = Static<typeof LogRequest>

export const LogMessage = t.Object({
  id: LogId,
  task_id: Uuid,
  subtask_id: Uuid,
  level: LevelSchema,
  message: t.String(),
  metadata: t.Nullable(t.Record(t.String(), t.Unknown())),
  worker_id: t.Nullable(t.String()),
  worker_name: t.Nullable(t.String()),
  timestamp: Timestamp,
})
export type LogMessage = Static<typeof LogMessage>

/** A log before the history store has given it an id. */
export type NewLog = Omit<LogMessage, 'id'>
