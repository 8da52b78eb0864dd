/** The viewer's line buffer, without a browser: order, duplicates, filters and the memory cap. */
import { describe, expect, test } from 'bun:test'
import { LogBuffer, type Row } from '../src/web/log-buffer'
import type { LogMessage } from '../clients/ts/src/types'

const log = (n: number, extra: Partial<LogMessage> = {}): LogMessage => ({
  id: `1700000000000-${n}`,
  task_id: 't',
  subtask_id: 's1',
  level: 'info',
  message: `line ${n}`,
  metadata: null,
  worker_id: null,
  worker_name: null,
  timestamp: '2026-12-05T12:00:00.000Z',
  ...extra,
})
const ids = (rows: Row[]) => rows.map((r) => (r.kind === 'log' ? r.log.message : `marker`))
const shown = (buffer: LogBuffer) => ids(buffer.visible.map((i) => buffer.rows[i]!))

describe('LogBuffer', () => {
  test('keeps logs in id order and drops one not newer than the newest held', () => {
    const buffer = new LogBuffer()
    expect(buffer.append(log(10))).toBe(true)
    expect(buffer.append(log(11))).toBe(true)
    expect(buffer.append(log(11))).toBe(false)
    expect(buffer.append(log(10))).toBe(false)
    expect(buffer.prepend([log(8), log(9), log(10)])).toBe(2) // older ones only
    expect(ids(buffer.rows)).toEqual(['line 8', 'line 9', 'line 10', 'line 11'])
    expect(buffer.oldestId).toBe(log(8).id)
    expect(buffer.newestId).toBe(log(11).id)
  })

  test('filters by level, subtask and text (ANSI codes aside, metadata included); markers always show', () => {
    const buffer = new LogBuffer()
    buffer.append(log(1, { level: 'debug' }))
    buffer.append(log(2, { level: 'error', subtask_id: 's2', message: 'disk \u001b[31mFULL\u001b[0m' }))
    buffer.mark('gap')
    buffer.append(log(3, { level: 'warning', metadata: { path: '/var/full' } }))
    buffer.setFilter({ level: 'warning', text: '' })
    expect(shown(buffer)).toEqual(['disk \u001b[31mFULL\u001b[0m', 'marker', 'line 3'])
    buffer.setFilter({ level: 'debug', subtaskId: 's2', text: '' })
    expect(shown(buffer)).toEqual(['disk \u001b[31mFULL\u001b[0m', 'marker'])
    buffer.setFilter({ level: 'debug', text: 'k full' }) // across the colour change: matched as read
    expect(shown(buffer)).toEqual(['disk \u001b[31mFULL\u001b[0m', 'marker'])
    buffer.setFilter({ level: 'debug', text: 'VAR/FULL' })
    expect(shown(buffer)).toEqual(['marker', 'line 3'])
    expect(buffer.needle).toBe('var/full')
    buffer.append(log(4, { metadata: { path: '/var/full' } })) // a new line is filtered as it arrives
    expect(shown(buffer)).toEqual(['marker', 'line 3', 'line 4'])
  })

  test('holds at most `cap` rows: the oldest tenth goes, and one marker in front counts every line dropped', () => {
    const buffer = new LogBuffer(20)
    for (let n = 1; n <= 21; n++) buffer.append(log(n))
    expect(buffer.rows.length).toBeLessThanOrEqual(20)
    expect(buffer.rows[0]).toEqual({ kind: 'marker', text: expect.stringContaining('2 older lines were dropped') })
    expect(ids(buffer.rows.slice(1))).toEqual(Array.from({ length: 19 }, (_, i) => `line ${i + 3}`))
    for (let n = 22; n <= 60; n++) buffer.append(log(n))
    expect(buffer.rows.length).toBeLessThanOrEqual(20)
    expect(buffer.rows.filter((r) => r.kind === 'marker')).toHaveLength(1)
    expect(ids(buffer.rows).at(-1)).toBe('line 60')
    const dropped = Number((buffer.rows[0] as { text: string }).text.match(/^\d+/)![0])
    expect(dropped + buffer.rows.length - 1).toBe(60)
  })
})
