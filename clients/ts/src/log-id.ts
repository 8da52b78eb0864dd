/**
 * Log ids, `<ms>-<seq>` (Redis stream ids): strictly increasing within a task. Pure functions
 * with no dependencies, shared by the server and the SDK.
 */

/** A parsed log id. */
export interface LogIdParts {
  ms: number
  seq: number
}

const LOG_ID = /^(\d{1,15})-(\d{1,15})$/

/** Parses `<ms>-<seq>`; undefined when malformed. */
export function parseLogId(id: string): LogIdParts | undefined {
  const m = LOG_ID.exec(id)
  if (!m) return undefined
  return { ms: Number(m[1]), seq: Number(m[2]) }
}

/** The id `n` places after `id` (`<ms>-<seq + n>`): an append gives its logs consecutive ids. */
export function logIdAfter(id: string, n: number): string {
  if (n === 0) return id
  const dash = id.indexOf('-') + 1
  return id.slice(0, dash) + (Number(id.slice(dash)) + n)
}

/** Compares two log ids (`<ms>-<seq>`) numerically: negative, zero or positive. */
export function compareLogIds(a: string, b: string): number {
  const da = a.indexOf('-')
  const db = b.indexOf('-')
  const ms = Number(a.slice(0, da)) - Number(b.slice(0, db))
  return ms !== 0 ? ms : Number(a.slice(da + 1)) - Number(b.slice(db + 1))
}
