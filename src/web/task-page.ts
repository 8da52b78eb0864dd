import { TasklogApiError } from '../../clients/ts/src/api'
import type { LogStreamClient } from '../../clients/ts/src/log-stream-client'
import { LEVELS, type Level, type StatusChange, type Subtask, type Task } from '../../clients/ts/src/types'
import { api, openStream } from './connection'
import { append, h, typingIn } from './dom'
import { dateTime, finished, STATUS_LABEL } from './format'
import { downloadText } from './download'
import { LogBuffer, levelRank, metadataText, type Row } from './log-buffer'
import { logLine, rowDrawer, subtaskLabel } from './log-row'
import { LogView } from './log-view'
import { olderLines } from './older-lines'
import { plainText } from './ansi'

/** Lines read from history when the page opens (and when a lower level is chosen). */
const INITIAL_LINES = 1000
/** A log id before every other. */
const BEGINNING = '0-0'
/** Lines one "load older" adds at most. */
const OLDER_LINES = 5000

type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'offline'
const CONNECTION_LABEL: Record<ConnectionState, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
}

/** `/tasks/{task_id}`: the task's subtasks and its live log. */
export async function taskPage(root: HTMLElement, taskId: string): Promise<void> {
  let task: Task
  try {
    task = await api.getTask(taskId)
  } catch (error) {
    const message = error instanceof TasklogApiError && error.status === 404 ? `No task ${taskId}.` : (error as Error).message
    root.replaceChildren(h('p', { class: 'notice error' }, message, ' ', h('a', { href: '/' }, 'All tasks')))
    return
  }
  document.title = `${task.description.slice(0, 60)} · tasklog`
  const subtasks = new Map<string, Subtask>(task.subtasks.map((s) => [s.subtask_id, s]))

  // Header: description, status, connection.
  const status = h('span', { class: 'status' })
  const banner = h('p', { class: 'finished', role: 'status', hidden: true })
  const connection = h('span', { class: 'connection', role: 'status', 'aria-live': 'polite' })
  const subtaskList = h('ol', { class: 'subtasks' })

  // Toolbar.
  const level = h('select', { 'aria-label': 'Minimum level', title: 'Minimum level (sent to the server)' })
  for (const l of LEVELS) append(level, h('option', { value: l }, l === 'debug' ? 'All levels' : `${l} and above`))
  const subtaskFilter = h('select', { 'aria-label': 'Subtask' }, h('option', { value: '' }, 'All subtasks'))
  const text = h('input', { type: 'search', placeholder: 'Filter (press /)', 'aria-label': 'Filter text', class: 'filter' })
  const older = h('button', { type: 'button', title: 'Load lines older than the oldest shown' }, 'Load older')
  const download = h('button', { type: 'button', title: 'Download the lines shown as text' }, 'Download')
  const count = h('span', { class: 'count', 'aria-live': 'off' })
  const jump = h('button', { type: 'button', class: 'jump', hidden: true, title: 'Jump to latest (End)' })
  const details = h('pre', { class: 'details', hidden: true, tabindex: 0, 'aria-label': 'Selected line' })

  const buffer = new LogBuffer()
  let selected: string | undefined
  const view = new LogView(
    buffer,
    rowDrawer(
      () => subtasks,
      () => selected,
    ),
    (following, unseen) => {
      jump.hidden = following
      jump.textContent = unseen > 0 ? `Jump to latest (${unseen.toLocaleString('en')} new)` : 'Jump to latest'
    },
  )

  root.replaceChildren(
    h(
      'section',
      { class: 'task-head' },
      h('div', { class: 'title-row' }, h('h1', {}, task.description), status, connection),
      h('p', { class: 'muted' }, `Task ${task.task_id} · created ${dateTime(task.created_at)}`),
      banner,
      h('details', { class: 'subtask-panel', open: task.subtasks.length <= 8 }, h('summary', {}, 'Subtasks'), subtaskList),
    ),
    h(
      'div',
      { class: 'toolbar', role: 'toolbar', 'aria-label': 'Log controls' },
      level,
      subtaskFilter,
      text,
      older,
      download,
      count,
    ),
    h('div', { class: 'log-frame' }, view.element, jump),
    details,
  )

  function showStatus(): void {
    status.className = `status status-${task.status}`
    status.textContent = STATUS_LABEL[task.status]
    banner.hidden = !finished(task.status)
    banner.textContent = task.status === 'failed' ? 'Task finished: a subtask failed.' : 'Task finished: every subtask completed.'
    banner.className = `finished finished-${task.status}`
  }

  function showSubtasks(): void {
    subtaskList.replaceChildren(
      ...task.subtasks.map((s) =>
        h(
          'li',
          {},
          h('span', { class: `dot status-${s.status}`, title: STATUS_LABEL[s.status] }),
          h('span', { class: 'badge subtask' }, subtaskLabel(s)),
          h('span', { class: 'desc' }, s.description),
          h('span', { class: 'muted' }, STATUS_LABEL[s.status]),
          s.worker_name || s.worker_id ? h('span', { class: 'badge worker' }, s.worker_name ?? s.worker_id) : null,
        ),
      ),
    )
    const chosen = subtaskFilter.value
    subtaskFilter.replaceChildren(
      h('option', { value: '' }, 'All subtasks'),
      ...task.subtasks.map((s) => h('option', { value: s.subtask_id }, `${subtaskLabel(s)} ${s.description.slice(0, 60)}`)),
    )
    subtaskFilter.value = chosen
  }

  function showCount(): void {
    const shown = buffer.visible.length
    const held = buffer.rows.length
    count.textContent =
      shown === held
        ? `${held.toLocaleString('en')} lines`
        : `${shown.toLocaleString('en')} of ${held.toLocaleString('en')} lines`
  }

  function setConnection(state: ConnectionState, detail = ''): void {
    connection.className = `connection ${state}`
    connection.textContent = CONNECTION_LABEL[state]
    connection.title = detail
  }

  // The stream: a level change reconnects with the new level, resuming after the newest line held.
  let stream: LogStreamClient | undefined
  let streamLevel: Level = 'debug'
  let pending = 0
  /** Counts calls of follow(), so that an earlier call still reading history gives way. */
  let generation = 0
  async function follow(): Promise<void> {
    stream?.close()
    stream = undefined
    const current = ++generation
    const level = streamLevel === 'debug' ? undefined : streamLevel
    setConnection('connecting')
    if (buffer.newestId === undefined) {
      // An empty page starts with the newest lines of history, in one request.
      try {
        const { logs } = await api.getLogs(task.task_id, { limit: INITIAL_LINES, level })
        if (current !== generation) return
        for (const log of logs.reverse()) if (buffer.append(log) && buffer.passes({ kind: 'log', log })) pending++
        schedule()
      } catch (error) {
        if (current !== generation) return
        setConnection('offline', (error as Error).message)
        setTimeout(() => current === generation && void follow(), 2_000)
        return
      }
    }
    const client = openStream(level)
    stream = client
    client.on('subscribed', () => setConnection('live'))
    client.on('log', (log) => {
      if (buffer.append(log) && buffer.passes({ kind: 'log', log })) pending++
      schedule()
    })
    client.on('gap', ({ since }) => {
      if (since === BEGINNING) return // nothing was shown yet: there is no gap to show
      buffer.mark(`Some lines expired: history no longer held every line after ${since}`)
      pending++
      schedule()
    })
    client.on('status', applyStatus)
    client.on('close', ({ reconnecting, reason }) => setConnection(reconnecting ? 'reconnecting' : 'offline', reason))
    client.on('error', ({ message }) => setConnection('offline', message))
    // After the newest line held; with none, after the start of time, so that a line written
    // since history was read is replayed rather than missed.
    client.subscribe(task.task_id, { since: buffer.newestId ?? BEGINNING })
  }

  // Lines arrive in bursts: the view and the count are updated once per frame.
  let scheduled = false
  function schedule(): void {
    if (scheduled) return
    scheduled = true
    requestAnimationFrame(() => {
      scheduled = false
      view.added(pending)
      pending = 0
      showCount()
    })
  }

  function applyStatus(change: StatusChange): void {
    const subtask = subtasks.get(change.subtask_id)
    if (subtask) {
      subtask.status = change.status
      if (change.worker_name !== null) subtask.worker_name = change.worker_name
    }
    task.status = change.task_status
    showStatus()
    showSubtasks()
  }

  function applyFilter(): void {
    buffer.setFilter({ level: level.value as Level, subtaskId: subtaskFilter.value || undefined, text: text.value })
    view.refresh()
    showCount()
  }

  level.addEventListener('change', () => {
    const chosen = level.value as Level
    // Lines below the level held so far were never received: start over from history.
    if (levelRank(chosen) < levelRank(streamLevel)) buffer.clear()
    streamLevel = chosen
    applyFilter()
    void follow()
  })
  subtaskFilter.addEventListener('change', applyFilter)
  let typing: ReturnType<typeof setTimeout> | undefined
  text.addEventListener('input', () => {
    clearTimeout(typing)
    typing = setTimeout(applyFilter, 120)
  })
  jump.addEventListener('click', () => view.jumpToLatest())

  older.addEventListener('click', async () => {
    older.disabled = true
    older.textContent = 'Loading…'
    try {
      const level = streamLevel === 'debug' ? undefined : streamLevel
      const { logs, more } = await olderLines(task.task_id, buffer.oldestId, level, OLDER_LINES)
      const added = buffer.prepend(logs)
      view.refresh()
      showCount()
      older.textContent = more ? 'Load older' : 'Start of history'
      older.disabled = !more
      if (added === 0 && !more) older.title = 'History holds no older line'
    } catch (error) {
      older.textContent = 'Load older'
      older.disabled = false
      older.title = `Failed: ${(error as Error).message}`
    }
  })

  download.addEventListener('click', () =>
    downloadText(
      `task-${task.task_id}.log`,
      buffer.visible.map((i) => rowText(buffer.rows[i]!)),
    ),
  )
  const rowText = (row: Row) => (row.kind === 'marker' ? `--- ${row.text} ---` : logLine(row.log, subtasks))

  // A click on a line shows it whole below the log: every line break, the metadata in full.
  view.element.addEventListener('click', (event) => {
    const row = (event.target as HTMLElement).closest<HTMLElement>('.log-row[data-id]')
    if (!row) return
    const id = row.dataset.id
    const found = buffer.rows.find((r) => r.kind === 'log' && r.log.id === id)
    if (!found || found.kind !== 'log') return
    const { log } = found
    selected = log.id
    view.refresh()
    const meta = metadataText(log)
    details.textContent = `${logLine({ ...log, message: '', metadata: null }, subtasks)}\n${plainText(log.message)}${
      meta ? `\n${JSON.stringify(log.metadata, null, 2)}` : ''
    }`
    details.hidden = false
  })

  document.addEventListener('keydown', (event) => {
    if (event.key === '/' && !typingIn(event.target)) {
      event.preventDefault()
      text.focus()
    } else if (event.key === 'End' && !typingIn(event.target)) {
      event.preventDefault()
      view.jumpToLatest()
    } else if (event.key === 'Escape' && event.target === text) {
      text.value = ''
      applyFilter()
      view.element.focus()
    }
  })

  showStatus()
  showSubtasks()
  showCount()
  void follow()
}
