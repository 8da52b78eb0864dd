import { t, type Static } from 'elysia'
import { Enum, Input, Int, Timestamp, Uuid, UuidInput } from './common'

export const SCOPES = ['tasks:read', 'tasks:write', 'logs:read', 'logs:write', 'admin'] as const
export type Scope = (typeof SCOPES)[number]

const ScopeSchema = Enum(SCOPES, {
  description:
    '`tasks:read` list and read tasks and subtasks; `tasks:write` create tasks, update subtasks; `logs:read` read history and follow streams; `logs:write` send logs; `admin` all of them, and /metrics',
})

/** Longest lifetime of a minted token: one year. */
export const MAX_TTL_SECONDS = 365 * 24 * 3600

export const MintToken = Input(
  {
    scopes: t.Array(ScopeSchema, { minItems: 1, maxItems: SCOPES.length, uniqueItems: true }),
    task_ids: t.Optional(
      t.Array(UuidInput, { minItems: 1, maxItems: 1000, description: 'Limit the token to these tasks; omit for every task' }),
    ),
    ttl_seconds: Int({
      minimum: 1,
      maximum: MAX_TTL_SECONDS,
      description: "Lifetime; the token never outlives the caller's own",
    }),
    sub: t.Optional(t.String({ minLength: 1, maxLength: 200, description: "Who the token is for (default: the caller's own)" })),
  },
  {
    examples: [
      { scopes: ['logs:write'], task_ids: ['01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f'], ttl_seconds: 3600, sub: 'worker-1' },
    ],
  },
)
export type MintToken = Static<typeof MintToken>

export const MintedToken = t.Object({
  token: t.String({ description: 'Send as `Authorization: Bearer <token>`, or `?token=` on a stream URL' }),
  sub: t.String(),
  scopes: t.Array(ScopeSchema),
  task_ids: t.Nullable(t.Array(Uuid), { description: 'The tasks it is limited to, or null for every task' }),
  expires_at: Timestamp,
})
