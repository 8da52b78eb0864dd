import { Elysia } from 'elysia'
import type { Access } from '../auth/access'
import { narrowGrant } from '../auth/mint'
import { requires, scopeNames } from '../auth/scopes'
import { ApiError } from '../errors'
import { parseJson } from '../http/json-body'
import { commonErrors } from '../schemas/error'
import { MintToken, MintedToken } from '../schemas/token'

export const tokenRoutes = (access: Access) =>
  new Elysia({ name: 'tokens', prefix: '/api/v1/tokens', detail: { tags: ['tokens'] } }).post(
    '',
    async ({ request, server, body, set }) => {
      const caller = await access.authenticate(request, server, set)
      if (!access.tokens)
        throw new ApiError(
          'forbidden',
          'This server has no AUTH_SECRET to sign tokens with: set AUTH_SECRET (at least 32 bytes), which also turns token mode on',
        )
      const grant = narrowGrant(caller, body, Date.now())
      const token = await access.tokens.sign(grant)
      set.status = 201
      return {
        token,
        sub: grant.sub,
        scopes: scopeNames(grant.scopes),
        task_ids: grant.tasks === null ? null : [...grant.tasks],
        expires_at: new Date(grant.exp * 1000).toISOString(),
      }
    },
    {
      body: MintToken,
      ...parseJson,
      response: { 201: MintedToken, ...commonErrors },
      detail: {
        ...requires('any'),
        summary: 'Mint a narrower token',
        description:
          "Any valid token may mint another that is never wider than itself: scopes it holds, tasks it may touch, an expiry no later than its own. An orchestrator creates a task, then hands each worker a token that can only write that task's logs, and a dashboard one that can only read them.",
      },
    },
  )
