import { Elysia } from 'elysia'
import { notFound } from '../errors'
import { TaskParams } from '../schemas/common'
import { canonicalId } from '../../clients/ts/src/ids'
import { ErrorBody, commonErrors } from '../schemas/error'
import { CreateTask, ListTasksQuery, Task, TaskList } from '../schemas/task'
import type { Decomposer } from '../tasks/decompose'
import type { TaskStore } from '../tasks/task-store'
import { parseJson } from '../http/json-body'

export const taskRoutes = (tasks: TaskStore, decomposer: Decomposer) =>
  new Elysia({ name: 'tasks', prefix: '/api/v1/tasks', detail: { tags: ['tasks'] } })
    .post(
      '',
      async ({ body, set }) => {
        const subtasks = body.subtasks?.map((s) => s.description.trim()) ?? decomposer.decompose(body.description)
        set.status = 201
        return tasks.createTask(body.description, subtasks)
      },
      {
        body: CreateTask,
        ...parseJson,
        response: { 201: Task, ...commonErrors },
        detail: {
          summary: 'Create a task',
          description:
            'Creates a task and its subtasks. Without `subtasks` the description is decomposed: numbered or bulleted lines, or steps joined by "then", ";" or sentences, each become a subtask; a single step gives one subtask.',
          responses: { 201: { description: 'The task, with its subtasks: a worker can log to them right away' } },
        },
      },
    )
    .get('', ({ query }) => tasks.listTasks({ status: query.status, limit: query.limit ?? 20, cursor: query.cursor }), {
      query: ListTasksQuery,
      response: { 200: TaskList, ...commonErrors },
      detail: {
        summary: 'List tasks, newest first',
        description: 'Cursor pagination: pass `next_cursor` as `cursor`. `status` keeps the tasks in that status.',
        responses: { 200: { description: 'A page of tasks with their subtasks, and the cursor of the next page' } },
      },
    })
    .get(
      '/:task_id',
      async ({ params }) => {
        const task = await tasks.getTask(canonicalId(params.task_id))
        if (!task) throw notFound('Task', params.task_id)
        return task
      },
      {
        params: TaskParams,
        response: { 200: Task, 404: ErrorBody, ...commonErrors },
        detail: {
          summary: 'Get a task with its subtasks',
          description: "The task's status is derived from its subtasks'.",
          responses: { 200: { description: 'The task, with its subtasks in order' } },
        },
      },
    )
