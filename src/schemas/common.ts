import { t } from 'elysia'
import {
  FormatRegistry,
  Type,
  type IntegerOptions,
  type ObjectOptions,
  type SchemaOptions,
  type TProperties,
} from '@sinclair/typebox'
import { canonicalUuid, isUuid } from '../../clients/ts/src/ids'

/** UUID v1-v8 in canonical form: every id the server sends. */
export const Uuid = t.String({
  format: 'uuid',
  description: 'UUID',
  examples: ['01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f'],
})

// The canonical form, nearly every request's, is tested without making its lowercase copy.
FormatRegistry.Set('client-uuid', (text) => isUuid(text) || canonicalUuid(text) !== undefined)

/**
 * A UUID a client names, in any form the original backend read (the SDK's ids.ts). Anything else in
 * a path is a 422. Routes pass it through `canonicalId` themselves: a TypeBox Transform doing it
 * is slower on the ingest path (bench/README.md).
 */
export const UuidInput = t.String({
  format: 'client-uuid',
  description: 'UUID, in any case; also as `urn:uuid:…`, `{…}` or 32 hex digits without hyphens',
  examples: ['01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f'],
  error: 'must be a UUID such as 01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f',
})

/** ISO 8601 UTC with milliseconds and `Z`: every timestamp the server sends. */
export const Timestamp = t.String({
  format: 'date-time',
  description: 'ISO 8601 UTC timestamp with milliseconds',
  examples: ['2026-11-26T10:15:30.123Z'],
})

/** Date, then optionally `T` (or a space, as Python's `str(datetime)`), time, fraction and offset; `t`, `z` as RFC 3339 allows. */
const ISO_DATE_TIME = /^(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d)(?::(\d\d)(?:\.(\d+))?)?(Z|([+-])(\d\d):?(\d\d))?)?$/i

/** A number as a string, which pydantic also read as Unix time. */
const UNIX_TIME = /^-?\d+(?:\.\d+)?$/

/**
 * A client's timestamp in the wire format (UTC, milliseconds, `Z`), or undefined when it is not
 * one, read as the original backend (pydantic) read it:
 * - an ISO 8601 date-time; without an offset it is UTC (`datetime.utcnow().isoformat()`), and a
 *   date alone is its midnight;
 * - a number, or a number as a string: Unix time, in seconds, or in milliseconds when its size is
 *   past 2e10 (`time.time()` gives seconds).
 * Digits past milliseconds are cut.
 */
export function utcTimestamp(value: string | number): string | undefined {
  if (typeof value === 'number') return unixTimestamp(value)
  const text = value
  // Most clients (the SDK included) send the wire form itself: checked whole, 3x faster.
  if (WIRE_TIMESTAMP.test(text)) {
    const ms = Date.parse(text)
    return !Number.isNaN(ms) && new Date(ms).toISOString() === text ? text : undefined
  }
  if (UNIX_TIME.test(text)) return unixTimestamp(Number(text))
  const parts = ISO_DATE_TIME.exec(text)
  if (!parts) return undefined
  const [, date, time = '00:00', seconds = '00', fraction = '', , sign, offsetHours = '0', offsetMinutes = '0'] = parts
  const utc = `${date}T${time}:${seconds}.${fraction.slice(0, 3).padEnd(3, '0')}Z`
  const ms = Date.parse(utc)
  // Date.parse rolls some impossible dates over (Feb 30 becomes Mar 2): a real one reads back unchanged.
  if (Number.isNaN(ms) || new Date(ms).toISOString() !== utc || +offsetHours > 23 || +offsetMinutes > 59) return undefined
  const offset = (sign === '-' ? -1 : 1) * (+offsetHours * 60 + +offsetMinutes) * 60_000
  const stored = offset ? new Date(ms - offset).toISOString() : utc
  // An offset can carry a date out of years 0000-9999, which the wire form cannot write.
  return WIRE_TIMESTAMP.test(stored) ? stored : undefined
}

const WIRE_TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

function unixTimestamp(value: number): string | undefined {
  const ms = Math.abs(value) > 2e10 ? value : value * 1000
  // Rounded to microseconds first, so that 1.123 s, stored in binary as 1122.9999... ms, is 1123 ms
  // (up to 9e12 ms, year 2255: past that, µs exceed 2^53 and a double holds whole ms anyway).
  const date = new Date(Math.abs(ms) < 9e12 ? Math.floor(Math.round(ms * 1000) / 1000) : Math.floor(ms))
  if (Number.isNaN(date.getTime())) return undefined
  const text = date.toISOString()
  return WIRE_TIMESTAMP.test(text) ? text : undefined
}

// The shape only: encodeRequests converts each timestamp once and refuses impossible dates (February 30).
FormatRegistry.Set('client-timestamp', (text) => ISO_DATE_TIME.test(text) || UNIX_TIME.test(text))

/** A timestamp a client sends (see utcTimestamp). */
export const TimestampInput = t.Union([t.String({ format: 'client-timestamp' }), t.Number()], {
  description:
    "Stored in UTC with milliseconds. An ISO 8601 date-time: without an offset it is read as UTC (as Python's `datetime.utcnow().isoformat()`), and a date alone is its midnight UTC. Or Unix time, as a number or a string of one: seconds (`time.time()`), or milliseconds when past 2e10.",
  examples: ['2026-11-26T10:15:30.123Z', '2026-11-26T10:15:30.123456', 1764152130.123],
  error:
    'must be an ISO 8601 date-time such as 2026-01-02T03:04:05.123Z (without an offset it is read as UTC), or Unix time: seconds, or milliseconds past 2e10',
})

/**
 * One of fixed values, required where it appears. Not a bare `t.UnionEnum`: Elysia fills in its
 * default (the first value) when the field is absent, which would make a missing level 'debug',
 * list only pending tasks and reset a subtask to pending on a PATCH without status.
 */
export const Enum = <const T extends readonly [string, ...string[]]>(values: T, options: SchemaOptions) => {
  const { default: _, ...schema } = t.UnionEnum(values, options)
  return schema as Omit<typeof schema, 'default'> & ReturnType<typeof t.UnionEnum<T>>
}

export const STATUSES = ['pending', 'in_progress', 'completed', 'failed'] as const
export type Status = (typeof STATUSES)[number]
export const StatusSchema = Enum(STATUSES, { description: 'Work status' })

/** Log levels in ascending order of severity. */
export const LEVELS = ['debug', 'info', 'warning', 'error'] as const
export type Level = (typeof LEVELS)[number]
export const LevelSchema = Enum(LEVELS, { description: 'Log level: debug < info < warning < error' })

/** Rank of a level, for "this level and above" filters. */
export const levelRank = (level: Level): number => LEVELS.indexOf(level)

/** The highest level rank of some logs (0 for none). */
export function topRank(logs: readonly { level: Level }[]): number {
  let top = 0
  for (const log of logs) top = Math.max(top, levelRank(log.level))
  return top
}

/**
 * A log's free-form structured data: any JSON object. Not `t.Record(t.String(), t.Unknown())`,
 * whose compiled check walks every key with a pattern on the ingest path.
 */
export const Metadata = Type.Unsafe<Record<string, unknown>>(
  t.Object({}, { additionalProperties: true, description: 'Free-form structured data' }),
)

/** Log ids are Redis stream entry ids: `<ms>-<seq>`. */
export const LogId = t.String({
  pattern: '^\\d{1,15}-\\d{1,15}$',
  description: 'Log id: a Redis stream entry id `<ms>-<seq>`, strictly increasing within a task',
  examples: ['1764152130123-0'],
  error: 'must be a log id <ms>-<seq> such as 1764152130123-0',
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

/** A page size in a query string, with a message that names it (Elysia's own loses the field). */
export const Limit = (maximum: number, fallback: number) =>
  QueryInteger('limit', 1, maximum, { default: fallback, description: `How many to return: 1 to ${maximum}` })

/**
 * A whole-number query parameter. Elysia reports one out of range without saying which parameter
 * it was, so the schema names it (`x-parameter`, read by http/error-handler.ts) and says the range.
 */
export const QueryInteger = (name: string, minimum: number, maximum: number, options: IntegerOptions = {}) =>
  t.Integer({
    ...options,
    minimum,
    maximum,
    error: `${name} must be a whole number from ${minimum} to ${maximum}`,
    'x-parameter': name,
  })

/**
 * An object a client sends (body, query, path, headers): unknown fields are accepted and
 * ignored, as clients of the original backend expect. Handlers pick the fields they use.
 */
export const Input = <T extends TProperties>(properties: T, options?: ObjectOptions) =>
  t.Object(properties, { ...options, additionalProperties: true })

/** The path parameters naming a task and a subtask, in any form UuidInput reads. */
export const TaskParams = Input({ task_id: UuidInput })
export const SubtaskParams = Input({ subtask_id: UuidInput })
