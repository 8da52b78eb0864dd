/**
 * Task and subtask ids are UUIDs, stored and sent in canonical form (lowercase, hyphenated).
 * Clients may name one in any form the original backend read (pydantic's UUID): any case,
 * `urn:uuid:…`, `{…}`, or 32 hex digits without hyphens. No dependencies: the SDK uses it too.
 */
const HYPHENATED = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
const CANONICAL = new RegExp(`^${HYPHENATED}$`, 'i')
const OTHER_FORMS = new RegExp(`^(?:urn:uuid:(${HYPHENATED})|\\{(${HYPHENATED})\\}|([0-9a-f]{32}))$`, 'i')

/** Whether a string is a UUID in canonical form, in any case. */
export const isUuid = (value: string): boolean => CANONICAL.test(value)

/** The canonical form of a UUID named in any accepted form; undefined for anything else. */
export function canonicalUuid(value: string): string | undefined {
  if (CANONICAL.test(value)) return value.toLowerCase()
  const other = OTHER_FORMS.exec(value)
  if (!other) return undefined
  const id = other[1] ?? other[2] ?? other[3]!.replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-')
  return id.toLowerCase()
}

/**
 * The id a request names, as stored: canonical when it is a UUID in an accepted form, else as it
 * was (to be refused or not found). Nearly every request names the canonical form, validated
 * already: at 36 characters it needs lowercasing only, not a second pattern test.
 */
export const canonicalId = (text: string): string => (text.length === 36 ? text.toLowerCase() : (canonicalUuid(text) ?? text))
