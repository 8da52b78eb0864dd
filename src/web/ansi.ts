import Anser from 'anser'

const ESC = '\u001b'

interface Token {
  content: string
  fg?: string | null
  bg?: string | null
  fg_truecolor?: string | null
  bg_truecolor?: string | null
  decorations?: string[]
}

/** Text in colours: anser's SGR tokens, or the text as one plain token when it has no escape. */
const tokensOf = (text: string): Token[] =>
  text.includes(ESC) ? Anser.ansiToJson(text, { use_classes: true, remove_empty: true }) : [{ content: text }]

/** The text without its escape sequences, as the reader sees it. */
export const plainText = (text: string): string => (text.includes(ESC) ? Anser.ansiToText(text) : text)

/** xterm's 256-colour palette, entries 16 to 255 (0-15 are the themed classes). */
function paletteColor(n: number): string {
  if (n >= 232) {
    const v = 8 + (n - 232) * 10
    return `rgb(${v}, ${v}, ${v})`
  }
  const i = n - 16
  const level = (c: number) => (c === 0 ? 0 : 55 + c * 40)
  return `rgb(${level(Math.floor(i / 36))}, ${level(Math.floor(i / 6) % 6)}, ${level(i % 6)})`
}

const BASIC = ['black', 'red', 'green', 'yellow', 'blue', 'magenta', 'cyan', 'white']

/** A colour as a class (themed for light and dark) or, for 256 and 24-bit colours, a CSS value. */
function colour(name: string | null | undefined, truecolor: string | null | undefined): { className?: string; css?: string } {
  if (!name) return {}
  if (name === 'ansi-truecolor') return truecolor ? { css: `rgb(${truecolor})` } : {}
  const palette = /^ansi-palette-(\d+)$/.exec(name)
  if (palette) {
    const n = Number(palette[1])
    if (n < 16) return { className: `${n < 8 ? '' : 'bright-'}${BASIC[n % 8]}` }
    return { css: paletteColor(n) }
  }
  return { className: name.replace(/^ansi-/, '') }
}

/** Splits `text` at the reader's search matches; matches go in <mark>. */
function appendMarked(parent: Node, text: string, start: number, matches: [number, number][]): void {
  let at = 0
  for (const [from, to] of matches) {
    const a = Math.max(from - start, at)
    const b = Math.min(to - start, text.length)
    if (b <= a) continue
    if (a > at) parent.appendChild(document.createTextNode(text.slice(at, a)))
    const mark = document.createElement('mark')
    mark.textContent = text.slice(a, b)
    parent.appendChild(mark)
    at = b
  }
  if (at < text.length) parent.appendChild(document.createTextNode(text.slice(at)))
}

/** Where `needle` (lower case) occurs in `plain`, case-insensitively. */
export function findMatches(plain: string, needle: string): [number, number][] {
  if (!needle) return []
  const haystack = plain.toLowerCase()
  if (haystack.length !== plain.length) return [] // a case mapping that changes length: offsets would not line up
  const out: [number, number][] = []
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + needle.length)) out.push([i, i + needle.length])
  return out
}

/**
 * Appends `text` to `parent` as DOM nodes: SGR colours and decorations become spans with classes
 * (or, for 256 and 24-bit colours, a colour set through the CSSOM, which the page's CSP allows);
 * matches of `needle` are marked. Nothing is parsed as HTML.
 */
export function appendAnsi(parent: HTMLElement, text: string, needle = ''): void {
  const tokens = tokensOf(text)
  const matches = findMatches(tokens.map((t) => t.content).join(''), needle)
  let offset = 0
  for (const token of tokens) {
    const fg = colour(token.fg, token.fg_truecolor)
    const bg = colour(token.bg, token.bg_truecolor)
    const styled = fg.className || fg.css || bg.className || bg.css || token.decorations?.length
    let target: HTMLElement = parent
    if (styled) {
      target = document.createElement('span')
      if (fg.className) target.classList.add(`fg-${fg.className}`)
      if (bg.className) target.classList.add(`bg-${bg.className}`)
      if (fg.css) target.style.color = fg.css
      if (bg.css) target.style.backgroundColor = bg.css
      for (const decoration of token.decorations ?? []) target.classList.add(`sgr-${decoration}`)
      parent.appendChild(target)
    }
    appendMarked(target, token.content, offset, matches)
    offset += token.content.length
  }
}
