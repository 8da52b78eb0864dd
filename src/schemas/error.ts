import { t } from 'elysia'

export const ErrorBody = t.Object(
  {
    error: t.String({ description: 'Machine-readable code: validation, not_found, payload_too_large, unavailable, ...' }),
    message: t.String({ description: 'A sentence a person can act on' }),
    details: t.Optional(
      t.Array(t.Object({ path: t.String({ description: 'JSON pointer of the offending field' }), message: t.String() })),
    ),
  },
  { examples: [{ error: 'not_found', message: 'Task 01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f not found' }] },
)

/** The error responses every API route may give: 401 and 403 from access control (none in open mode). */
export const commonErrors = { 401: ErrorBody, 403: ErrorBody, 422: ErrorBody, 503: ErrorBody } as const

/** The error responses of the routes that store logs: also 507 when Redis is out of memory. */
export const ingestErrors = { ...commonErrors, 507: ErrorBody } as const
