import { t, type Static } from 'elysia'
import { Enum, Input, Int, LevelSchema, Limit, LogId, Metadata, Timestamp, TimestampInput, Uuid, UuidInput } from './common'

export const LogRequest = Input(
  {
    level: LevelSchema,
    message: t.String({ description: 'The log line' }),
    metadata: t.Optional(t.Nullable(Metadata)),
    timestamp: t.Optional(TimestampInput),
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
  metadata: t.Nullable(Metadata),
  worker_id: t.Nullable(t.String()),
  worker_name: t.Nullable(t.String()),
  timestamp: Timestamp,
})
export type LogMessage = Static<typeof LogMessage>

/** A log before the history store has given it an id. */
export type NewLog = Omit<LogMessage, 'id'>

export const LogAccepted = t.Object(
  {
    success: t.Literal(true),
    message: t.String(),
    broadcasted: Int({
      description:
        'Subscribed connections (WebSocket and SSE), on every instance, whose filter accepts the log. Another instance announces its subscribers about 20 ms after they change; one that died without stopping is counted for up to 30 s',
    }),
    id: LogId,
  },
  { examples: [{ success: true, message: 'Log stored and broadcast', broadcasted: 2, id: '1764152130123-0' }] },
)

export const BatchAccepted = t.Object(
  {
    success: t.Literal(true),
    accepted: Int({ minimum: 1 }),
    broadcasted: Int({
      description: 'Subscribed connections (WebSocket and SSE), on every instance, that accept at least one of its logs',
    }),
    first_id: LogId,
    last_id: LogId,
  },
  {
    examples: [{ success: true, accepted: 2, broadcasted: 1, first_id: '1764152130123-0', last_id: '1764152130123-1' }],
  },
)

export const LogHistory = t.Object({
  task_id: Uuid,
  logs: t.Array(LogMessage),
  count: Int({ minimum: 0 }),
  next_since: t.Nullable(LogId, { description: 'The newest id returned: pass as `since` to poll for newer logs' }),
})

export const LogBatch = Input(
  { logs: t.Array(LogRequest, { minItems: 1, maxItems: 100_000, description: 'At most MAX_BATCH (default 1000) logs' }) },
  {
    examples: [
      {
        logs: [
          { level: 'info', message: 'step 1 done' },
          { level: 'warning', message: 'High memory usage', metadata: { rss_mb: 900 } },
        ],
      },
    ],
  },
)

export const LogHistoryQuery = Input({
  limit: t.Optional(Limit(1000, 100)),
  order: t.Optional(Enum(['desc', 'asc'], { description: 'Newest first (default without `since`) or oldest first' })),
  since: t.Optional(LogId),
  level: t.Optional(LevelSchema),
  subtask_id: t.Optional(UuidInput),
})

/** The headers of the ingest routes: an optional `Idempotency-Key` (idempotency.ts). */
export const IngestHeaders = Input({
  'idempotency-key': t.Optional(
    t.String({
      minLength: 1,
      maxLength: 128,
      pattern: '^[\\x20-\\x7e]+$',
      error: 'must be 1 to 128 printable ASCII characters',
      description:
        'Names this request for retries: repeat it on every retry of the same logs. A repeat of a request already stored stores nothing and answers 201 with the first ids and `Idempotency-Replayed: true`; the same key with other logs is a 422. Kept for LOG_TTL_SECONDS.',
      examples: ['batch-7f3c2a91-0001'],
    }),
  ),
})
