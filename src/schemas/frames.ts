/**
 * The WebSocket protocol's messages: the frames the server sends and the actions a client
 * sends. The server builds frames as strings (logs/frames.ts) and parses actions by hand
 * (routes/stream-websocket.ts), so that fan-out never serializes or validates; these schemas
 * describe that wire for the OpenAPI document and the SDK's types, and the tests check every
 * received frame against `ServerFrame`.
 */
import type { TProperties, TSchema } from '@sinclair/typebox'
import { t, type Static } from 'elysia'
import { Enum, Input, Int, LevelSchema, LogId, StatusSchema, Timestamp, Uuid, UuidInput } from './common'
import { LogMessage } from './log'

/** A frame's `type` or an action's `action`: a one-value enum, which code generators turn into a literal type. */
const Tag = <const T extends string>(value: T) => Enum([value], { description: `Always "${value}"` })

/** A server frame `{ type, data, timestamp }`; `timestamp` is when the server sent it. */
const Frame = <const T extends string, D extends TSchema>(type: T, data: D, description: string) =>
  t.Object({ type: Tag(type), data, timestamp: Timestamp }, { description })

/** `data` of a `status` frame. */
export const StatusChange = t.Object(
  {
    task_id: Uuid,
    subtask_id: Uuid,
    status: StatusSchema,
    task_status: StatusSchema,
    worker_name: t.Nullable(t.String()),
  },
  { description: "A subtask's new status, and its task's status as derived from all its subtasks" },
)
export type StatusChange = Static<typeof StatusChange>

export const SubscribedFrame = Frame(
  'subscribed',
  t.Object({
    task_id: Uuid,
    recovered: t.Optional(
      t.Boolean({
        description:
          'Only when `since` was given: true when history still held every log after it, false when some are lost (a gap)',
      }),
    ),
  }),
  'A subscription is set up: replayed logs, if asked for, then live frames of the task follow',
)

export const UnsubscribedFrame = Frame('unsubscribed', t.Object({ task_id: Uuid }), 'Answer to an `unsubscribe` action')

export const LogFrame = Frame('log', LogMessage, 'A log line of a subscribed task, replayed or live; ids strictly increase')

export const StatusFrame = Frame('status', StatusChange, 'A subtask of a subscribed task changed status')

export const PongFrame = t.Object({ type: Tag('pong'), timestamp: Timestamp }, { description: 'Answer to a `ping` action' })

/** Why an action or subscription was refused; the connection stays open. */
export const FrameErrorCode = Enum(
  [
    'invalid_message',
    'internal',
    'validation',
    'unknown_action',
    'not_found',
    'already_subscribed',
    'not_subscribed',
    'too_many_subscriptions',
    'unavailable',
    'forbidden',
  ],
  { description: '`unavailable`: a store is down, try again later; `forbidden`: the token may not read that task' },
)
export type FrameErrorCode = Static<typeof FrameErrorCode>

export const ErrorFrame = Frame(
  'error',
  t.Object({ message: t.String({ description: 'A sentence a person can act on' }), code: FrameErrorCode }),
  'A refused action or subscription, or an invalid stream option in the URL (then the server closes with 1008)',
)

export const ServerFrame = t.Union([SubscribedFrame, UnsubscribedFrame, LogFrame, StatusFrame, PongFrame, ErrorFrame], {
  description: 'A WebSocket message from the server: JSON text `{ type, data?, timestamp }`',
})
export type ServerFrame = Static<typeof ServerFrame>

/** A client action `{ action, ... }`; unknown fields are ignored. */
const Action = <const A extends string, P extends TProperties>(action: A, properties: P, description: string) =>
  Input({ action: Tag(action), ...properties }, { description })

export const PingAction = Action('ping', {}, 'Answered with `pong`')

export const SubscribeAction = Action(
  'subscribe',
  {
    task_id: UuidInput,
    since: t.Optional(LogId),
    history: t.Optional(Int({ minimum: 0, description: 'Replay the newest n logs (at most LOG_HISTORY_MAX)' })),
    level: t.Optional(LevelSchema),
  },
  'Follow one more task on this connection: answered with `subscribed` (then replay and live frames), or an `error` frame',
)

export const UnsubscribeAction = Action('unsubscribe', { task_id: UuidInput }, 'Answered with `unsubscribed`')

export const ClientAction = t.Union([PingAction, SubscribeAction, UnsubscribeAction], {
  description: 'A WebSocket message from the client: JSON text',
})
export type ClientAction = Static<typeof ClientAction>
