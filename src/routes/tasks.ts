import { Elysia } from 'elysia'
import { notFound } from '../errors'
import { TaskParams } from '../schemas/common'
import { canonicalId } from '../../clients/ts/src/ids'
import { ErrorBody, commonErrors } from '../schemas/error'
import { CreateTask, ListTasksQuery, Task, TaskList } from '../schemas/task'
import type { Decomposer } from '../tasks/decompose'
import type { TaskStore } from '../tasks/task-store'
import { parseJson } from '../http/json-body'
import type { Access } from '../auth/access'
import { requires } from '../auth/scopes'
import { ApiError } from '../errors'

export const taskRoutes = (tasks: TaskStore, decomposer: Decomposer, access: Access) =>
  new Elysia({ name: 'tasks', prefix: '/api/v1/tasks', detail: { tags: ['tasks'] } })
    .post(
      '',
      async ({ request, server, body, set }) => {
        const caller = access.permit(await access.authenticate(request, server, set), 'tasks:write')
        // A token limited to some tasks touches only those; a new task is none of them.
        if (caller.tasks !== null) throw new ApiError('forbidden', 'A token limited to some tasks cannot create tasks')
        const subtasks = body.subtasks?.map((s) => s.description.trim()) ?? decomposer.decompose(body.description)
        set.status = 201
        return tasks.createTask(body.description, subtasks)
      },
      {
        body: CreateTask,
        ...parseJson,
        response: { 201: Task, ...commonErrors },
        detail: {
          ...requires('tasks:write'),
          summary: 'Create a task',
          description:
            'Creates a task and its subtasks. Without `subtasks` the description is decomposed: numbered or bulleted lines, or steps joined by "then", ";" or sentences, each become a subtask; a single step gives one subtask.',
          responses: { 201: { description: 'The task, with its subtasks: a worker can log to them right away' } },
        },
      },
    )
    .get(
      '',
      async ({ request, server, set, query }) => {
        const caller = access.permit(await access.authenticate(request, server, set), 'tasks:read')
        const taskIds = caller.tasks === null ? undefined : [...caller.tasks]
        return tasks.listTasks({ status: query.status, limit: query.limit ?? 20, cursor: query.cursor, taskIds })
      },
      {
        query: ListTasksQuery,
        response: { 200: TaskList, ...commonErrors },
        detail: {
          ...requires('tasks:read'),
          summary: 'List tasks, newest first',
          description:
            'Cursor pagination: pass `next_cursor` as `cursor`. `status` keeps the tasks in that status. A token limited to some tasks lists only those.',
          responses: { 200: { description: 'A page of tasks with their subtasks, and the cursor of the next page' } },
        },
      },
    )
    .get(
      '/:task_id',
      async ({ request, server, set, params }) => {
        const taskId = canonicalId(params.task_id)
        access.permit(await access.authenticate(request, server, set), 'tasks:read', taskId)
        const task = await tasks.getTask(taskId)
        if (!task) throw notFound('Task', params.task_id)
        return task
      },
      {
        params: TaskParams,
        response: { 200: Task, 404: ErrorBody, ...commonErrors },
        detail: {
          ...requires('tasks:read'),
          summary: 'Get a task with its subtasks',
          description: "The task's status is derived from its subtasks'.",
          responses: { 200: { description: 'The task, with its subtasks in order' } },
        },
      },
    )
