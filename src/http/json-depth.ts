const QUOTE = 34
const BACKSLASH = 92
const OPEN_BRACE = 123
const OPEN_BRACKET = 91
const CLOSE_BRACE = 125
const CLOSE_BRACKET = 93

/**
 * Whether JSON text nests objects and arrays more than `max` levels deep (the outermost value
 * is level 1), decided in one pass over the text before anything parses it, stopping at the
 * first level past `max`. Brackets inside strings do not count; malformed text is left for
 * the parser to reject.
 */
export function textDepthExceeds(text: string, max: number): boolean {
  let depth = 0
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i)
        if (d === QUOTE) break
        if (d === BACKSLASH) i++
      }
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return true
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--
  }
  return false
}

/** A non-enumerable Symbol.toPrimitive: what String(object) calls before toString and valueOf. */
const PRINTABLE = { value: () => '[object Object]' }

/**
 * Whether a parsed JSON value nests objects and arrays more than `max` levels deep. It never
 * recurses more than `max + 1` levels, so a value of any depth is refused without stalling.
 *
 * On the way it keeps every object printable: JSON may shadow `toString` or `valueOf` with a
 * value (`{"toString": ""}`), and then `String(object)` throws. Elysia words a validation error
 * with `${value}`, so such a body in a field that wants a string would be a 500, not a 422. The
 * symbol it adds is invisible to JSON.stringify and to every schema check.
 */
export function checkParsedJson(value: unknown, max: number): boolean {
  if (typeof value !== 'object' || value === null) return false
  if (max === 0) return true
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (checkParsedJson(value[i], max - 1)) return true
  } else {
    for (const key in value) {
      if (key === 'toString' || key === 'valueOf') Object.defineProperty(value, Symbol.toPrimitive, PRINTABLE)
      if (checkParsedJson((value as Record<string, unknown>)[key], max - 1)) return true
    }
  }
  return false
}
