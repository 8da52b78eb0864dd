import { t, type Static } from 'elysia'
import { Input, Int, Limit, StatusSchema, Timestamp, Uuid } from './common'

const subtaskExample = {
  subtask_id: '01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e70',
  task_id: '01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f',
  description: 'Fetch the data',
  status: 'in_progress',
  position: 0,
  worker_id: 'worker-7',
  worker_name: 'builder-7',
  created_at: '2026-11-26T10:15:30.123Z',
  updated_at: '2026-11-26T10:16:02.456Z',
}

export const Subtask = t.Object(
  {
    subtask_id: Uuid,
    task_id: Uuid,
    description: t.String(),
    status: StatusSchema,
    position: Int({ minimum: 0, description: 'Order of the subtask within its task, from 0' }),
    worker_id: t.Nullable(t.String()),
    worker_name: t.Nullable(t.String()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { examples: [subtaskExample] },
)
export type Subtask = Static<typeof Subtask>

/** What a log names of its subtask. */
export type SubtaskRef = Pick<Subtask, 'task_id' | 'subtask_id' | 'worker_id' | 'worker_name'>

export const Task = t.Object(
  {
    task_id: Uuid,
    description: t.String(),
    status: StatusSchema,
    created_at: Timestamp,
    updated_at: Timestamp,
    subtasks: t.Array(Subtask),
  },
  {
    examples: [
      {
        task_id: subtaskExample.task_id,
        description: '1. Fetch the data\n2. Train the model',
        status: 'in_progress',
        created_at: subtaskExample.created_at,
        updated_at: subtaskExample.updated_at,
        subtasks: [
          subtaskExample,
          {
            ...subtaskExample,
            subtask_id: '01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e71',
            description: 'Train the model',
            status: 'pending',
            position: 1,
            worker_id: null,
            worker_name: null,
            updated_at: subtaskExample.created_at,
          },
        ],
      },
    ],
  },
)
export type Task = Static<typeof Task>

export const CreateTask = Input(
  {
    description: t.String({
      minLength: 1,
      maxLength: 10000,
      pattern: '\\S',
      description: 'What the task does; decomposed into subtasks when `subtasks` is absent',
    }),
    subtasks: t.Optional(
      t.Array(Input({ description: t.String({ minLength: 1, maxLength: 10000, pattern: '\\S' }) }), {
        minItems: 1,
        maxItems: 100,
      }),
    ),
  },
  { examples: [{ description: 'Test task for WebSocket logging' }] },
)
export type CreateTask = Static<typeof CreateTask>

export const TaskList = t.Object({
  tasks: t.Array(Task),
  next_cursor: t.Nullable(t.String({ description: 'Pass as `cursor` to get the next page; null on the last page' })),
})
export type TaskList = Static<typeof TaskList>

export const ListTasksQuery = Input({
  status: t.Optional(StatusSchema),
  limit: t.Optional(Limit(100, 20)),
  cursor: t.Optional(t.String({ description: '`next_cursor` of the previous page' })),
})

export const UpdateSubtask = Input(
  {
    status: t.Optional(StatusSchema),
    worker_id: t.Optional(t.Nullable(t.String({ maxLength: 200 }))),
    worker_name: t.Optional(t.Nullable(t.String({ maxLength: 200 }))),
  },
  { examples: [{ status: 'in_progress', worker_id: 'worker-7', worker_name: 'builder-7' }] },
)
export type UpdateSubtask = Static<typeof UpdateSubtask>
