import { h } from './dom'
import type { LogBuffer, Row } from './log-buffer'

/** Rows drawn beyond each edge of the viewport, so a short scroll shows no blank. */
const OVERSCAN = 20

/**
 * The buffer's visible rows as a virtualised list: every row is one line of the same height,
 * so the rows in view follow from the scroll offset by division, and the DOM holds only those
 * (a few dozen) however many lines the buffer has.
 *
 * Follow mode keeps the newest line in view; scrolling up pauses it (`unseen` counts the lines
 * that arrive meanwhile), scrolling back to the bottom or `jumpToLatest()` resumes it.
 */
export class LogView {
  readonly element: HTMLElement
  private readonly spacer: HTMLElement
  private readonly layer: HTMLElement
  private rowHeight = 0
  private following = true
  private unseenCount = 0
  private lastTop = 0
  private frame = 0
  /** Rows drawn, by row, reused while they stay in view and the highlight is unchanged. */
  private drawn = new Map<Row, HTMLElement>()
  private drawnNeedle = ''

  constructor(
    private readonly buffer: LogBuffer,
    private readonly drawRow: (row: Row, needle: string) => HTMLElement,
    private readonly onFollowChange: (following: boolean, unseen: number) => void,
  ) {
    this.spacer = h('div', { class: 'log-spacer' })
    this.layer = h('div', { class: 'log-rows' })
    this.element = h(
      'div',
      { class: 'log-view', tabindex: 0, role: 'log', 'aria-label': 'Log lines', 'aria-live': 'off' },
      this.spacer,
      this.layer,
    )
    this.element.addEventListener('scroll', () => this.scrolled(), { passive: true })
    new ResizeObserver(() => this.update()).observe(this.element)
  }

  get isFollowing(): boolean {
    return this.following
  }

  get unseen(): number {
    return this.unseenCount
  }

  /** `n` new lines passed the filter: counted as unseen unless following. */
  added(n: number): void {
    if (!this.following && n > 0) {
      this.unseenCount += n
      this.onFollowChange(false, this.unseenCount)
    }
    this.update()
  }

  jumpToLatest(): void {
    this.setFollowing(true)
    this.update()
  }

  /** Redraws every row (the filter or the rows changed), keeping follow mode. */
  refresh(): void {
    this.drawn.clear()
    this.update()
  }

  /** Draws on the next animation frame, at most once per frame. */
  update(): void {
    if (this.frame) return
    this.frame = requestAnimationFrame(() => {
      this.frame = 0
      this.draw()
    })
  }

  private setFollowing(following: boolean): void {
    if (following) this.unseenCount = 0
    else if (!this.following) return // paused already
    this.following = following
    this.onFollowChange(following, this.unseenCount)
  }

  private scrolled(): void {
    const el = this.element
    const top = el.scrollTop
    const atBottom = el.scrollHeight - top - el.clientHeight <= Math.max(2, this.rowHeight / 2)
    if (atBottom) {
      if (!this.following) this.setFollowing(true)
    } else if (top < this.lastTop - 1 && this.following) this.setFollowing(false)
    this.lastTop = top
    this.update()
  }

  private measure(): number {
    const probe = h('div', { class: 'log-row' }, 'M')
    this.layer.appendChild(probe)
    const height = probe.getBoundingClientRect().height
    probe.remove()
    return height || 20
  }

  private draw(): void {
    if (!this.element.isConnected) return
    this.rowHeight ||= this.measure()
    const { visible, rows } = this.buffer
    const rowHeight = this.rowHeight
    const el = this.element
    // Heights go through the CSSOM, which the page's style-src 'self' allows.
    this.spacer.style.height = `${visible.length * rowHeight}px`
    if (this.following) {
      el.scrollTop = el.scrollHeight
      this.lastTop = el.scrollTop
    }
    const first = Math.max(0, Math.floor(el.scrollTop / rowHeight) - OVERSCAN)
    const last = Math.min(visible.length, Math.ceil((el.scrollTop + el.clientHeight) / rowHeight) + OVERSCAN)
    const needle = this.buffer.needle
    if (needle !== this.drawnNeedle) {
      this.drawn.clear()
      this.drawnNeedle = needle
    }
    const next = new Map<Row, HTMLElement>()
    const elements: HTMLElement[] = []
    for (let i = first; i < last; i++) {
      const row = rows[visible[i]!]!
      const element = this.drawn.get(row) ?? this.drawRow(row, needle)
      element.dataset.index = String(i)
      next.set(row, element)
      elements.push(element)
    }
    this.drawn = next
    this.layer.style.transform = `translateY(${first * rowHeight}px)`
    this.layer.replaceChildren(...elements)
  }
}
