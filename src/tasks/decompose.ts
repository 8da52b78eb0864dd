/**
 * Task decomposition: turns a task description into
 * subtask descriptions with plain text rules, no LLM. A smarter decomposer can implement
 * the same interface later.
 */

export interface Decomposer {
  /** Subtask descriptions, in order: at least one, each trimmed and non-empty, at most 100. */
  decompose(description: string): string[]
}

export const MAX_SUBTASKS = 100
export const MAX_SUBTASK_LENGTH = 10_000

// "1. x", "2) x", "(3) x", "Step 4: x". The marker must be followed by whitespace, so a
// line starting with "3.5 GB" is not a list item.
const NUMBERED = /^(?:step\s*)?\(?\d{1,3}[.):]\s+/i
const BULLET = /^[-*+•]\s+/

// Words that join steps in prose: "x, then y", "x, finally y", "x and then y", "x then y".
const JOINERS = new Set(['then', 'finally', 'next', 'lastly'])
// A bare "then" after one of these answers a condition ("if a then b"), not a step.
const CONDITIONALS = new Set(['if', 'when', 'whenever', 'once', 'unless'])
// ... or, right after one of these, names a time ("until then", "by then"); "and then" is
// joined at its "and" already.
const TIME_BEFORE_THEN = new Set(['and', 'since', 'until', 'till', 'by', 'back', 'even', 'only', 'just', 'from'])
// Stripped from the start of a prose step; the lookahead keeps a step that is only "Then".
const LEADING_JOINER = /^(?:(?:and\s+)?(?:then|finally|next|lastly)|first(?:ly)?|after\s+that)[,:]?\s+(?=\S)/i
// A full stop after these does not end a sentence.
const ABBREVIATIONS = new Set(['etc.', 'vs.', 'cf.', 'approx.', 'incl.', 'esp.', 'mr.', 'mrs.', 'ms.', 'dr.', 'st.'])
// Dotted initialisms: "e.g.", "i.e.", "a.m.", "U.S.".
const INITIALISM = /^(?:\p{L}\.){2,}$/u

/**
 * Numbered or bulleted lines become the subtasks (any preamble line is dropped: the task's
 * own description keeps it as context). Otherwise prose is split into steps on sentence
 * ends, ";", line breaks and "then"-style joiners. A single step gives one subtask whose
 * description is the whole description. Throws a RangeError for a blank description,
 * which has no subtask to give: callers should reject a blank description first.
 */
export function decompose(description: string): string[] {
  const whole = collapse(description)
  if (whole === '') throw new RangeError('description must contain non-whitespace text')
  const lines = description.split(/\r\n?|\n/)
  if (lines.some((line) => listMarker(line) !== null)) {
    const items = listItems(lines)
    if (items.length > 0) return limit(items) // even one item: the list is explicit
  }
  const steps = proseSteps(lines)
  // Steps split out of a sentence ("first fetch the data, then clean it") read as titles.
  return limit(steps.length > 1 ? steps.map(capitalize) : [whole])
}

function capitalize(step: string): string {
  return step.charAt(0).toUpperCase() + step.slice(1)
}

export const simpleDecomposer: Decomposer = { decompose }

function collapse(text: string): string {
  return text.replace(/\s+/g, ' ').trim()
}

function listMarker(line: string): RegExpExecArray | null {
  const trimmed = line.trim()
  return NUMBERED.exec(trimmed) ?? BULLET.exec(trimmed)
}

/** Marker lines are items; indented lines right after an item continue its (wrapped) text. */
function listItems(lines: string[]): string[] {
  const items: string[] = []
  let current: string | null = null
  const flush = () => {
    const item = current === null ? '' : trimTrailingPunctuation(collapse(current))
    if (item !== '') items.push(item)
    current = null
  }
  for (const line of lines) {
    const trimmed = line.trim()
    if (trimmed === '') continue
    const marker = listMarker(line)
    if (marker !== null) {
      flush()
      current = trimmed.slice(marker[0].length)
    } else if (current !== null && /^\s/.test(line)) {
      current += ' ' + trimmed
    } else {
      flush() // unindented text outside an item: a preamble or closing remark, not a step
    }
  }
  flush()
  return items
}

/** Scans words once (linear time), cutting a step where a sentence, clause or line ends. */
function proseSteps(lines: string[]): string[] {
  const steps: string[] = []
  let words: string[] = []
  let conditional = false
  const flush = () => {
    const step = cleanStep(words.join(' '))
    if (step !== '') steps.push(step)
    words = []
    conditional = false
  }
  for (const line of lines) {
    const lineWords = line.split(/\s+/).filter((w) => w !== '')
    const first = lineWords[0]
    if (first === undefined) continue
    // A line break ends a step, unless the line starts lowercase: then it continues wrapped text.
    if (!/^\p{Ll}/u.test(first)) flush()
    for (let i = 0; i < lineWords.length; i++) {
      const word = lineWords[i] as string
      const previous = words[words.length - 1]
      if (previous !== undefined && startsJoiner(previous, word, lineWords[i + 1], conditional)) flush()
      words.push(word)
      conditional ||= CONDITIONALS.has(bare(word))
      if (endsStep(word, lineWords[i + 1])) flush()
    }
  }
  flush()
  return steps
}

function bare(word: string | undefined): string {
  return (word ?? '').toLowerCase().replace(/[,:]$/, '')
}

/**
 * "x, then y" / "x, finally y" / "x, and next y" / "x and then y" / "x then y"; in a step that
 * states a condition, a bare "then" is no joiner ("if a then b"), nor is "then" as a time ("until then").
 */
function startsJoiner(previous: string, word: string, next: string | undefined, conditional: boolean): boolean {
  const afterComma = previous.endsWith(',')
  if (bare(word) === 'and') return JOINERS.has(bare(next)) && (afterComma || bare(next) !== 'next')
  if (afterComma) return JOINERS.has(bare(word)) && !(conditional && bare(word) === 'then')
  return bare(word) === 'then' && next !== undefined && !conditional && !TIME_BEFORE_THEN.has(bare(previous))
}

function isAbbreviation(word: string): boolean {
  const w = word.toLowerCase().replace(/^["'([]+/, '')
  return ABBREVIATIONS.has(w) || INITIALISM.test(w)
}

/** ";" or ".", "!", "?" (maybe before a closing quote or bracket) at a word's end. Decimals
 * ("3.5") and hosts ("example.com") have no space after the dot, so they never reach here. */
function endsStep(word: string, next: string | undefined): boolean {
  if (word.endsWith(';')) return true
  const last = word.replace(/["')\]]+$/, '').slice(-1)
  if (last !== '.' && last !== '!' && last !== '?') return false
  // "etc." often ends a sentence but also sits mid-sentence: trust the next word's case.
  if (word.toLowerCase() === 'etc.') return next === undefined || /^\p{Lu}/u.test(next)
  return !isAbbreviation(word)
}

/** Drops a leading joiner word ("First", "then", "and finally") and trailing punctuation. */
function cleanStep(step: string): string {
  return trimTrailingPunctuation(collapse(step).replace(LEADING_JOINER, ''))
}

/** Drops trailing ",", ";", ":" and full stops, but keeps "!" / "?" and an abbreviation's
 * dot. A loop rather than a `$`-anchored regex, which is quadratic on long punctuation runs. */
function trimTrailingPunctuation(text: string): string {
  let end = text.length
  while (end > 0 && ',;:. '.includes(text.charAt(end - 1))) end--
  if (end < text.length && text.charAt(end) === '.') {
    const kept = text.slice(0, end + 1)
    if (isAbbreviation(kept.slice(kept.lastIndexOf(' ') + 1))) return kept
  }
  return text.slice(0, end)
}

/**
 * Past 100 steps the tail is merged into the 100th (joined by "; ") rather than dropped,
 * so no requested work silently disappears. Each description is cut at 10,000 chars.
 */
function limit(items: string[]): string[] {
  const capped =
    items.length > MAX_SUBTASKS ? [...items.slice(0, MAX_SUBTASKS - 1), items.slice(MAX_SUBTASKS - 1).join('; ')] : items
  return capped.map((item) => (item.length > MAX_SUBTASK_LENGTH ? item.slice(0, MAX_SUBTASK_LENGTH).trimEnd() : item))
}
