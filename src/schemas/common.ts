import { t } from 'elysia'
import { Type, type IntegerOptions, type ObjectOptions, type TProperties } from '@sinclair/typebox'

/** UUID v1-v8 in canonical form; anything else in a path is a 422. */
export const Uuid = t.String({
  format: 'uuid',
  description: 'UUID',
  examples: ['01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f'],
})

/** ISO 8601 UTC with milliseconds and `Z`. */
export const Timestamp = t.String({
  format: 'date-time',
  description: 'ISO 8601 UTC timestamp with milliseconds',
  examples: ['2026-11-26T10:15:30.123Z'],
})

export const STATUSES = ['pending', 'in_progress', 'completed', 'failed'] as const
export type Status = (typeof STATUSES)[number]
export const StatusSchema = t.UnionEnum(STATUSES, { description: 'Work status' })

/** Log levels in ascending order of severity. */
export const LEVELS = ['debug', 'info', 'warning', 'error'] as const
export type Level = (typeof LEVELS)[number]
/** Required where it appears: Elysia's UnionEnum defaults to its first value, which made a missing level 'debug'. */
export const LevelSchema = (() => {
  const { default: _, ...schema } = t.UnionEnum(LEVELS, { description: 'Log level: debug < info < warning < error' })
  return schema as Omit<typeof schema, 'default'> & ReturnType<typeof t.UnionEnum<typeof LEVELS>>
})()

/** Rank of a level, for "this level and above" filters. */
export const levelRank = (level: Level): number => LEVELS.indexOf(level)

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
/** Whether a string is a UUID in canonical form (path ids are validated by `Uuid`; this is for the rest). */
export const isUuid = (value: string): boolean => UUID_PATTERN.test(value)

/**
 * A log's free-form structured data: any JSON object. Not `t.Record(t.String(), t.Unknown())`,
 * whose compiled check walks every key with a pattern (0.2 µs per log on the ingest path).
 */
export const Metadata = Type.Unsafe<Record<string, unknown>>(
  t.Object({}, { additionalProperties: true, description: 'Free-form structured data' }),
)

/** Log ids are Redis stream entry ids: `<ms>-<seq>`. */
export const LogId = t.String({
  pattern: '^\\d{1,15}-\\d{1,15}$',
  description: 'Log id: a Redis stream entry id `<ms>-<seq>`, strictly increasing within a task',
  examples: ['1764152130123-0'],
})

let lastMs = 0
let lastIso = ''
/** The current time in the wire format; formatted once per millisecond, as the hot path asks often. */
export const now = (): string => {
  const ms = Date.now()
  if (ms !== lastMs) {
    lastMs = ms
    lastIso = new Date(ms).toISOString()
  }
  return lastIso
}

/**
 * A whole number in a body or response. Elysia's `t.Integer` also accepts numeric strings
 * (right for query strings, wrong in JSON) and documents itself as a union.
 */
export const Int = (options?: IntegerOptions) => Type.Integer(options)

/**
 * An object a client sends (body, query, path, headers): unknown fields are accepted and
 * ignored, as clients of the original backend expect. Handlers pick the fields they use.
 */
export const Input = <T extends TProperties>(properties: T, options?: ObjectOptions) =>
  t.Object(properties, { ...options, additionalProperties: true })
