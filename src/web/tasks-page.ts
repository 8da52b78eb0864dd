import type { StatusChange, Task } from '../../clients/ts/src/types'
import { api, openStream } from './connection'
import { h } from './dom'
import { dateTime, STATUS_LABEL } from './format'

/** Tasks per page of the list. */
const PAGE = 20
/** Tasks one WebSocket connection may follow, as the server allows. */
const MAX_FOLLOWED = 100

/** `/`: a form to create a task, and the tasks newest first, their status changing live. */
export async function tasksPage(root: HTMLElement): Promise<void> {
  const description = h('textarea', {
    id: 'description',
    name: 'description',
    required: true,
    maxlength: 10000,
    rows: 3,
    placeholder: 'What should be done? Numbered or bulleted lines become subtasks.',
  })
  const subtasksField = h('textarea', {
    id: 'subtasks',
    name: 'subtasks',
    rows: 3,
    placeholder: 'Optional: one subtask per line',
  })
  const problem = h('p', { class: 'notice error', role: 'alert', hidden: true })
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create task')
  const form = h(
    'form',
    { class: 'create', 'aria-label': 'Create a task' },
    h('h2', {}, 'New task'),
    h('label', { for: 'description' }, 'Description'),
    description,
    h('label', { for: 'subtasks' }, 'Subtasks'),
    subtasksField,
    h('div', { class: 'actions' }, submit),
    problem,
  )
  const body = h('tbody', {})
  const more = h('button', { type: 'button', hidden: true }, 'Older tasks')
  const empty = h('p', { class: 'muted', hidden: true }, 'No task yet: create one above, or POST /api/v1/tasks.')
  root.replaceChildren(
    form,
    h(
      'section',
      { class: 'tasks' },
      h('h2', {}, 'Tasks'),
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Task'), h('th', {}, 'Status'), h('th', {}, 'Progress'), h('th', {}, 'Created'))),
        body,
      ),
      empty,
      more,
    ),
  )

  // Rows by task id, updated in place by status frames.
  const rows = new Map<string, { task: Task; row: HTMLTableRowElement }>()
  // One connection follows every listed task (up to its limit) for status changes; logs below
  // error level are not sent, since this page shows none. It opens with the first task listed,
  // so that it carries the token the listing may have asked for.
  let stream: ReturnType<typeof openStream> | undefined
  function follow(taskId: string): void {
    if (!stream) {
      stream = openStream('error')
      stream.on('status', (change: StatusChange) => {
        const entry = rows.get(change.task_id)
        if (!entry) return
        const subtask = entry.task.subtasks.find((s) => s.subtask_id === change.subtask_id)
        if (subtask) subtask.status = change.status
        entry.task.status = change.task_status
        const row = drawRow(entry.task)
        entry.row.replaceWith(row)
        entry.row = row
      })
    }
    if (stream.taskIds.length < MAX_FOLLOWED) stream.subscribe(taskId)
  }

  function add(task: Task, first = false): void {
    if (rows.has(task.task_id)) return
    const row = drawRow(task)
    rows.set(task.task_id, { task, row })
    if (first) body.prepend(row)
    else body.append(row)
    empty.hidden = true
    follow(task.task_id)
  }

  let cursor: string | undefined
  async function loadPage(): Promise<void> {
    more.disabled = true
    try {
      const page = await api.listTasks({ limit: PAGE, cursor })
      for (const task of page.tasks) add(task)
      cursor = page.next_cursor ?? undefined
      more.hidden = page.next_cursor === null
      empty.hidden = rows.size > 0
    } catch (error) {
      problem.hidden = false
      problem.textContent = `Cannot list tasks: ${(error as Error).message}`
    } finally {
      more.disabled = false
    }
  }
  more.addEventListener('click', () => void loadPage())

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    submit.disabled = true
    problem.hidden = true
    const lines = subtasksField.value
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
    try {
      const task = await api.createTask(description.value, lines.length ? lines : undefined)
      add(task, true)
      form.reset()
      rows.get(task.task_id)?.row.querySelector('a')?.focus()
    } catch (error) {
      problem.hidden = false
      problem.textContent = (error as Error).message
    } finally {
      submit.disabled = false
    }
  })

  await loadPage()
}

function drawRow(task: Task): HTMLTableRowElement {
  const total = task.subtasks.length
  const done = task.subtasks.filter((s) => s.status === 'completed').length
  const failed = task.subtasks.filter((s) => s.status === 'failed').length
  const bar = h('span', { class: 'progress', role: 'img', 'aria-label': `${done} of ${total} subtasks completed` })
  const doneBar = h('span', { class: 'done' })
  const failedBar = h('span', { class: 'failed' })
  // Widths go through the CSSOM, which the page's style-src 'self' allows.
  doneBar.style.width = `${(100 * done) / Math.max(1, total)}%`
  failedBar.style.width = `${(100 * failed) / Math.max(1, total)}%`
  bar.append(doneBar, failedBar)
  return h(
    'tr',
    { 'data-task-id': task.task_id },
    h('td', { class: 'desc' }, h('a', { href: `/tasks/${task.task_id}` }, task.description)),
    h('td', {}, h('span', { class: `status status-${task.status}` }, STATUS_LABEL[task.status])),
    h('td', { class: 'progress-cell' }, bar, h('span', { class: 'muted' }, `${done}/${total}`)),
    h('td', { class: 'muted' }, h('time', { datetime: task.created_at, title: task.created_at }, dateTime(task.created_at))),
  )
}
