import { Elysia } from 'elysia'
import { notFound } from '../errors'
import type { Hub } from '../logs/hub'
import { SubtaskParams } from '../schemas/common'
import { canonicalId } from '../../clients/ts/src/ids'
import { ErrorBody, commonErrors } from '../schemas/error'
import { Subtask, UpdateSubtask } from '../schemas/task'
import type { SubtaskDirectory } from '../tasks/subtask-directory'
import type { TaskStore } from '../tasks/task-store'
import { parseJson } from '../http/json-body'
import type { Access } from '../auth/access'
import { requires } from '../auth/scopes'

export const subtaskRoutes = (tasks: TaskStore, directory: SubtaskDirectory, hub: Hub, access: Access) =>
  new Elysia({ name: 'subtasks', prefix: '/api/v1/subtasks', detail: { tags: ['subtasks'] } })
    .get(
      '/:subtask_id',
      async ({ request, server, set, params }) => {
        const caller = access.permit(await access.authenticate(request, server, set), 'tasks:read')
        const subtask = await tasks.getSubtask(canonicalId(params.subtask_id))
        if (!subtask) throw notFound('Subtask', params.subtask_id)
        access.permit(caller, 'tasks:read', subtask.task_id)
        return subtask
      },
      {
        params: SubtaskParams,
        response: { 200: Subtask, 404: ErrorBody, ...commonErrors },
        detail: {
          ...requires('tasks:read'),
          summary: 'Get a subtask',
          description: 'Its status and the worker it is assigned to.',
          responses: { 200: { description: 'The subtask' } },
        },
      },
    )
    .patch(
      '/:subtask_id',
      async ({ request, server, set, params, body }) => {
        const subtaskId = canonicalId(params.subtask_id)
        const caller = access.permit(await access.authenticate(request, server, set), 'tasks:write')
        if (caller.tasks !== null) {
          const ref = await directory.lookup(subtaskId)
          if (!ref) throw notFound('Subtask', params.subtask_id)
          access.permit(caller, 'tasks:write', ref.task_id)
        }
        const update = await tasks.updateSubtask(subtaskId, body)
        if (!update) throw notFound('Subtask', params.subtask_id)
        directory.remember(update.subtask)
        if (body.status !== undefined) hub.publishStatus(update.subtask, update.task_status)
        return update.subtask
      },
      {
        params: SubtaskParams,
        body: UpdateSubtask,
        ...parseJson,
        response: { 200: Subtask, 404: ErrorBody, ...commonErrors },
        detail: {
          ...requires('tasks:write'),
          summary: 'Update a subtask',
          description:
            "Sets status and/or worker assignment. A status change is broadcast to the task's subscribers as a `status` frame; the task's status is derived from its subtasks.",
          responses: { 200: { description: 'The subtask as updated' } },
        },
      },
    )
