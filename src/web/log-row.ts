import type { LogMessage, Subtask } from '../../clients/ts/src/types'
import { appendAnsi, plainText } from './ansi'
import { h } from './dom'
import { clockTime } from './format'
import { metadataText, type Row } from './log-buffer'

/** Line breaks inside a message: a row is one line, so they show as a symbol (the details pane shows them). */
const oneLine = (text: string) => text.replace(/\r?\n/g, ' ⏎ ')

export const LEVEL_LABEL = { debug: 'DEBUG', info: 'INFO', warning: 'WARN', error: 'ERROR' } as const

/** The short name of a subtask in a badge: its position, counting from 1. */
export const subtaskLabel = (subtask: Subtask | undefined) => (subtask ? `#${subtask.position + 1}` : 'subtask ?')

/** Draws rows of one task: `subtasks` names their badges; the row of id `selected()` is marked. */
export function rowDrawer(subtasks: () => Map<string, Subtask>, selected: () => string | undefined) {
  return (row: Row, needle: string): HTMLElement => {
    if (row.kind === 'marker') return h('div', { class: 'log-row marker', role: 'note' }, '⚠ ', row.text)
    const { log } = row
    const subtask = subtasks().get(log.subtask_id)
    const worker = log.worker_name ?? log.worker_id
    const message = h('span', { class: 'msg' })
    appendAnsi(message, oneLine(log.message), needle)
    const meta = metadataText(log)
    const element = h(
      'div',
      { class: `log-row level-${log.level}${log.id === selected() ? ' selected' : ''}`, 'data-id': log.id },
      h('time', { class: 'time', datetime: log.timestamp, title: log.timestamp }, clockTime(log.timestamp)),
      h('span', { class: 'level' }, LEVEL_LABEL[log.level]),
      h('span', { class: 'badge subtask', title: subtask?.description ?? log.subtask_id }, subtaskLabel(subtask)),
      // A column of fixed width keeps the messages in line whatever the worker's name.
      h(
        'span',
        { class: 'worker-cell' },
        worker ? h('span', { class: 'badge worker', title: log.worker_id ?? worker }, worker) : null,
      ),
      message,
    )
    if (meta) {
      // JSON text escapes control characters, so the metadata carries no escape sequence to colour.
      const metadata = h('span', { class: 'meta' })
      appendAnsi(metadata, meta, needle)
      element.appendChild(metadata)
    }
    return element
  }
}

/** A log as one line of text, as a download writes it. */
export function logLine(log: LogMessage, subtasks: Map<string, Subtask>): string {
  const worker = log.worker_name ?? log.worker_id
  const meta = metadataText(log)
  return [
    log.timestamp,
    LEVEL_LABEL[log.level].padEnd(5),
    subtaskLabel(subtasks.get(log.subtask_id)),
    worker ? `[${worker}]` : '',
    plainText(log.message),
    meta,
  ]
    .filter(Boolean)
    .join(' ')
}
