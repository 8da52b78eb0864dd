const QUOTE = 34
const BACKSLASH = 92
const OPEN_BRACE = 123
const OPEN_BRACKET = 91
const CLOSE_BRACE = 125
const CLOSE_BRACKET = 93

/**
 * Whether JSON text nests objects and arrays more than `max` levels deep (the outermost value
 * is level 1). One pass over the text, stopping at the first level past `max`, so that deep
 * input is refused before a parser, a validator or JSON.stringify recurses into it. Brackets
 * inside strings do not count; malformed text is left for the parser to reject.
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
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
