import { compareLogIds } from '../../clients/ts/src/log-id'
import { LEVELS, type Level, type LogMessage } from '../../clients/ts/src/types'
import { plainText } from './ansi'

/** A line of the log view: a log, or a marker that says lines are missing there. */
export type Row = { kind: 'log'; log: LogMessage } | { kind: 'marker'; text: string }

export interface Filter {
  /** Logs of this level and above. */
  level: Level
  /** Only this subtask's logs, when set. */
  subtaskId?: string
  /** Lines containing this text, ignoring case ('' for all). */
  text: string
}

/** A level's place in `debug < info < warning < error`. */
export const levelRank = (level: Level) => LEVELS.indexOf(level)

/** What the text filter searches, and what a download writes: the message as read, and the metadata. */
export const metadataText = (log: LogMessage): string => (log.metadata === null ? '' : JSON.stringify(log.metadata))
const searchable = (log: LogMessage): string =>
  `${plainText(log.message)}\n${metadataText(log)}\n${log.worker_name ?? log.worker_id ?? ''}`.toLowerCase()

/**
 * The lines a page holds, in id order, with no duplicate: a log not newer than the newest held is
 * dropped. At most `cap` rows: past that the oldest are dropped and a marker says how many.
 * `visible` lists the indexes of the rows the filter passes (markers always pass).
 */
export class LogBuffer {
  rows: Row[] = []
  visible: number[] = []
  private filter: Filter = { level: 'debug', text: '' }
  /** Lines dropped to respect the cap; shown by the first row's marker. */
  private dropped = 0
  private newest: string | undefined

  constructor(readonly cap = 200_000) {}

  get newestId(): string | undefined {
    return this.newest
  }

  get oldestId(): string | undefined {
    for (const row of this.rows) if (row.kind === 'log') return row.log.id
  }

  /** Adds a newer log; false (and nothing added) when it is not newer than the newest held. */
  append(log: LogMessage): boolean {
    if (this.newest !== undefined && compareLogIds(log.id, this.newest) <= 0) return false
    this.newest = log.id
    this.push({ kind: 'log', log })
    return true
  }

  /** Adds a marker after the newest line. */
  mark(text: string): void {
    this.push({ kind: 'marker', text })
  }

  /** Adds logs older than the oldest held (in id order), as many as the cap leaves room for. */
  prepend(older: LogMessage[]): number {
    const oldest = this.oldestId
    let logs = oldest === undefined ? older : older.filter((l) => compareLogIds(l.id, oldest) < 0)
    const room = this.cap - this.rows.length
    if (logs.length > room) logs = logs.slice(logs.length - Math.max(0, room))
    if (logs.length === 0) return 0
    if (this.newest === undefined) this.newest = logs[logs.length - 1]!.id
    const head = this.dropped > 0 ? 1 : 0 // the cap's marker stays first
    this.rows.splice(head, 0, ...logs.map((log): Row => ({ kind: 'log', log })))
    this.refilter()
    return logs.length
  }

  clear(): void {
    this.rows = []
    this.visible = []
    this.dropped = 0
    this.newest = undefined
  }

  setFilter(filter: Filter): void {
    this.filter = { ...filter, text: filter.text.toLowerCase() }
    this.refilter()
  }

  /** The filter's text, lower case, for highlighting. */
  get needle(): string {
    return this.filter.text
  }

  passes(row: Row): boolean {
    if (row.kind === 'marker') return true
    const { log } = row
    const { level, subtaskId, text } = this.filter
    return (
      levelRank(log.level) >= levelRank(level) &&
      (subtaskId === undefined || log.subtask_id === subtaskId) &&
      (text === '' || searchable(log).includes(text))
    )
  }

  private push(row: Row): void {
    this.rows.push(row)
    if (this.passes(row)) this.visible.push(this.rows.length - 1)
    if (this.rows.length > this.cap) this.trim()
  }

  /** Drops the oldest tenth, keeping one marker in front that counts every line dropped. */
  private trim(): void {
    const head = this.dropped > 0 ? 1 : 0
    const n = Math.ceil(this.cap / 10)
    this.rows.splice(0, head + n)
    this.dropped += n
    const text = `${this.dropped.toLocaleString('en')} older lines were dropped to keep this page's memory bounded`
    this.rows.unshift({ kind: 'marker', text })
    this.refilter()
  }

  private refilter(): void {
    const visible: number[] = []
    this.rows.forEach((row, i) => {
      if (this.passes(row)) visible.push(i)
    })
    this.visible = visible
  }
}
