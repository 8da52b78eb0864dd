import { h } from './dom'

/** Offers `lines` to the reader as a text file named `name`. */
export function downloadText(name: string, lines: string[]): void {
  const blob = new Blob([lines.join('\n') + '\n'], { type: 'text/plain;charset=utf-8' })
  const link = h('a', { href: URL.createObjectURL(blob), download: name })
  document.body.appendChild(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000)
}
