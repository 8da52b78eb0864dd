/**
 * The OpenAPI 3.1 document of an app: `@elysiajs/openapi` describes its routes from their schemas,
 * and this module makes the result a valid document with examples a person can send as they are.
 */
import { nullToOpenApi, toOpenAPISchema } from '@elysiajs/openapi/openapi'
import type { AnyElysia } from 'elysia'
import { LOCAL_ONLY, NO_TOKEN, lacksScope } from '../auth/access'
import { TOKEN_EXPIRED } from '../auth/tokens'
import { tooManyStreams } from '../auth/connection-limit'

// The generated document is plain JSON, walked field by field here.
type Json = Record<string, any>

export const OPENAPI_VERSION = '3.1.0'

/**
 * Keywords the server's schemas carry for its own use, not JSON Schema: the messages of
 * http/error-handler.ts (`error`, `x-parameter`), Elysia's `noValidate`, and OpenAPI 3.0's
 * `nullable` (3.1 writes `type: [x, 'null']`).
 */
const SERVER_ONLY_KEYWORDS = ['error', 'errorMessage', 'x-parameter', 'noValidate', 'nullable']

/** Formats a client or code generator knows; the server's own (`client-uuid`, ...) are described in words instead. */
const STANDARD_FORMATS = new Set([
  'date-time',
  'date',
  'time',
  'duration',
  'email',
  'uri',
  'uuid',
  'int32',
  'int64',
  'float',
  'double',
])

/** Keywords whose value is a schema, a list of schemas or a map of schemas. */
const SUBSCHEMA = ['items', 'not', 'additionalProperties', 'contains', 'propertyNames', 'if', 'then', 'else']
const SUBSCHEMA_LISTS = ['anyOf', 'oneOf', 'allOf', 'prefixItems']
const SUBSCHEMA_MAPS = ['properties', 'patternProperties', '$defs']

/**
 * Elysia documents a whole-number query parameter as "a string of digits or an integer"
 * (`{ type: 'string', format: 'integer' }` beside the integer): in a URL both are the same text.
 */
const isNumericString = (schema: Json) => schema.type === 'string' && (schema.format === 'integer' || schema.format === 'numeric')

/** One schema, with JSON Schema 2020-12 keywords only. */
function cleanSchema(input: unknown): any {
  if (Array.isArray(input) || input === null || typeof input !== 'object') return input
  let schema: Json = { ...input }
  for (const keyword of SERVER_ONLY_KEYWORDS) delete schema[keyword]
  if (typeof schema.format === 'string' && !STANDARD_FORMATS.has(schema.format)) delete schema.format
  if (Array.isArray(schema.anyOf) && schema.anyOf.some(isNumericString)) {
    const number = schema.anyOf.find((branch: Json) => branch.type === 'integer' || branch.type === 'number')
    if (number) {
      const { anyOf: _, ...outer } = schema
      schema = { ...outer, ...number }
      for (const keyword of SERVER_ONLY_KEYWORDS) delete schema[keyword]
    }
  }
  for (const key of SUBSCHEMA) if (schema[key] && typeof schema[key] === 'object') schema[key] = cleanSchema(schema[key])
  for (const key of SUBSCHEMA_LISTS) if (Array.isArray(schema[key])) schema[key] = schema[key].map(cleanSchema)
  for (const key of SUBSCHEMA_MAPS)
    if (schema[key]) schema[key] = Object.fromEntries(Object.entries(schema[key]).map(([name, s]) => [name, cleanSchema(s)]))
  return schema
}

/** As JSON Schema 2020-12: `null` as a type beside the others where it can be, server-only keywords removed. */
const toJsonSchema = (schema: unknown) => cleanSchema(nullToOpenApi(schema, OPENAPI_VERSION))

const EXAMPLE_ID = '01936b2e-8f4a-7c3d-9e2f-1a2b3c4d5e6f'

/** What each error status means, for every route that gives it. */
const ERROR_DESCRIPTIONS: Record<string, string> = {
  '401':
    'Unauthorized (token mode): no token, or a malformed, expired or foreign one; see `WWW-Authenticate`. Nothing was stored.',
  '403': 'Forbidden: the token lacks the scope or the task (local mode: the client is not on this machine). Nothing was stored.',
  '404': 'Not found: no such task or subtask. Nothing was stored.',
  '413': 'Payload too large: the request body is over MAX_BODY_BYTES. Nothing was stored.',
  '422': 'Validation failed: `details` names each offending field by its JSON pointer. Nothing was stored.',
  '426': 'Upgrade required: this route speaks WebSocket only.',
  '429':
    'Rate limited: the task is over RATE_LIMIT_LOGS_PER_SECOND (nothing was stored), or, for a stream, the client holds MAX_CONNECTIONS_PER_CLIENT open ones; retry after `Retry-After` seconds. `RateLimit-Limit` is the burst, `RateLimit-Remaining` the lines that fit now, `RateLimit-Reset` the seconds until a whole burst fits.',
  '503': 'Unavailable: a store is down or did not answer in time. Retry later.',
  '507': 'Insufficient storage: the log history (Redis) is out of memory. Nothing was stored; retry later.',
}

/** An error body as the server sends it, as a named OpenAPI example. */
const errorExample = (summary: string, error: string, message: string, details?: { path: string; message: string }[]) => ({
  summary,
  value: details ? { error, message, details } : { error, message },
})

/** The first field of a body that takes one of fixed values (a log's `level`), by its JSON pointer, in lists too. */
function enumField(schema: Json | undefined, pointer = ''): { pointer: string; values: string[] } | undefined {
  if (Array.isArray(schema?.enum)) return { pointer, values: schema.enum }
  if (schema?.type === 'array') return enumField(schema.items, `${pointer}/0`)
  for (const [name, property] of Object.entries<Json>(schema?.properties ?? {})) {
    const found = enumField(property, `${pointer}/${name}`)
    if (found) return found
  }
}

/** How http/error-handler.ts names a parameter in its message. */
const PARAMETER_PLACES: Record<string, string> = { path: 'path parameter', query: 'query parameter', header: 'header' }

/**
 * Error bodies an operation really gives, by status, as named examples. `operation` is as
 * generated, its parameter schemas still holding the messages the server answers with (`error`).
 */
function errorExamples(path: string, operation: Json, status: string): Record<string, Json> | undefined {
  const ids = (operation.parameters ?? []).filter((p: Json) => p.in === 'path').map((p: Json) => p.name as string)
  const id = ids[ids.length - 1]
  const what = id === 'subtask_id' ? 'Subtask' : 'Task'
  const storesLogs = operation.requestBody && path.includes('/log')
  switch (status) {
    case '401':
      return {
        no_token: errorExample('No token (token mode)', 'unauthorized', NO_TOKEN),
        expired: errorExample('Expired token', 'unauthorized', TOKEN_EXPIRED),
      }
    case '403': {
      const scope = operation['x-required-scope']
      return {
        ...(scope && scope !== 'any'
          ? { missing_scope: errorExample('Token without the scope', 'forbidden', lacksScope(scope)) }
          : {}),
        not_local: errorExample('Local mode, another machine', 'forbidden', LOCAL_ONLY),
      }
    }
    case '404':
      return { not_found: errorExample(`Unknown ${what.toLowerCase()}`, 'not_found', `${what} ${EXAMPLE_ID} not found`) }
    case '413':
      return {
        payload_too_large: errorExample(
          'Body too large',
          'payload_too_large',
          'Request body is 9000000 bytes; at most 8388608 are accepted',
        ),
      }
    case '422': {
      const examples: Record<string, Json> = {}
      for (const { name, in: place, schema } of operation.parameters ?? []) {
        const message = schema?.error
        if (typeof message !== 'string' || !PARAMETER_PLACES[place]) continue
        examples[`invalid_${name}`] = errorExample(
          `Invalid ${name}`,
          'validation',
          `Invalid ${PARAMETER_PLACES[place]} ${name}: ${message}`,
          [{ path: `/${name}`, message }],
        )
      }
      if (operation.requestBody) {
        const field = enumField(operation.requestBody.content['application/json']?.schema)
        if (field) {
          const message = `must be one of ${field.values.join(', ')}`
          examples.invalid_body = errorExample(
            `Invalid ${field.pointer.slice(1)}`,
            'validation',
            `Invalid request body at ${field.pointer}: ${message}`,
            [{ path: field.pointer, message }],
          )
        }
        examples.not_json = errorExample('Body is not JSON', 'validation', 'Request body is not valid JSON', [
          { path: '/', message: 'Malformed JSON' },
        ])
      }
      return examples
    }
    case '426':
      return {
        upgrade_required: errorExample(
          'Plain HTTP request',
          'upgrade_required',
          'This endpoint speaks WebSocket: connect with a WebSocket client',
        ),
      }
    case '429':
      if (path.includes('/ws/') || path.endsWith('/stream'))
        return { too_many_streams: errorExample('Too many open streams', 'rate_limited', tooManyStreams(10_000)) }
      return {
        rate_limited: errorExample(
          'Task over its log rate limit',
          'rate_limited',
          `Task ${EXAMPLE_ID} is over its log rate limit (10000 lines/s, bursts of 100000); nothing was stored, retry after 1 s`,
        ),
      }
    case '503':
      return storesLogs
        ? {
            unavailable: errorExample(
              'Redis down',
              'unavailable',
              'Log history (Redis) is unavailable; nothing was stored, retry later',
            ),
          }
        : {
            unavailable: errorExample(
              'Database down',
              'unavailable',
              'Task database is unavailable; nothing was stored, retry later',
            ),
          }
    case '507':
      return {
        insufficient_storage: errorExample(
          'Redis out of memory',
          'insufficient_storage',
          'Log history (Redis) is out of memory; nothing was stored, retry later',
        ),
      }
  }
}

/** Descriptions of success statuses whose route gives none. */
const SUCCESS_DESCRIPTIONS: Record<string, string> = { '200': 'OK', '201': 'Created' }

/** A media type's example: its schema's first, at the media type, where Swagger UI takes a "Try it out" body from. */
function withExample(media: Json): Json {
  const schema = toJsonSchema(media.schema)
  const example = media.example ?? (media.examples ? undefined : schema?.examples?.[0])
  return { ...media, schema, ...(example === undefined ? {} : { example }) }
}

function completeResponses(path: string, operation: Json): Json {
  const responses: Json = {}
  for (const [status, response] of Object.entries<Json>(operation.responses ?? {})) {
    const generated = !response.description || response.description.startsWith('Response for status')
    const isError = Number(status) >= 400
    const description = generated
      ? (ERROR_DESCRIPTIONS[status] ?? SUCCESS_DESCRIPTIONS[status] ?? `Status ${status}`)
      : response.description
    const content = response.content
      ? Object.fromEntries(
          Object.entries<Json>(response.content).map(([type, media]) => {
            const examples =
              isError &&
              media.schema?.properties?.error &&
              !media.example &&
              !media.examples &&
              errorExamples(path, operation, status)
            return [type, withExample(examples ? { ...media, examples } : media)]
          }),
        )
      : undefined
    responses[status] = { ...response, description, ...(content ? { content } : {}) }
  }
  return responses
}

function completeOperation(path: string, operation: Json): Json {
  const parameters = operation.parameters?.map(({ examples, example, ...parameter }: Json) => {
    const schema = toJsonSchema(parameter.schema)
    // Swagger UI's "Try it out" sends every example it shows: an optional filter (`since`,
    // `subtask_id`) with one would hide the very logs asked for, so only required ones have one.
    // A parameter's `examples` is a map of named examples; a list there shows as "Examples: 0".
    const shown = parameter.required ? (example ?? (Array.isArray(examples) ? examples[0] : schema?.examples?.[0])) : undefined
    if (!parameter.required) delete schema?.examples
    return {
      ...parameter,
      // Swagger UI shows the parameter's description, not its schema's.
      description: parameter.description ?? schema?.description,
      schema,
      ...(shown === undefined ? {} : { example: shown }),
    }
  })
  const requestBody = operation.requestBody && {
    ...operation.requestBody,
    content: Object.fromEntries(
      Object.entries<Json>(operation.requestBody.content).map(([type, media]) => [type, withExample(media)]),
    ),
  }
  return {
    ...operation,
    ...(parameters ? { parameters } : {}),
    ...(requestBody ? { requestBody } : {}),
    responses: completeResponses(path, operation),
  }
}

/**
 * The routes of the app a plugin is used by (the plugin's own and every other): what the
 * generator reads too. Elysia declares the method protected, for plugins.
 */
export const globalRoutes = (app: AnyElysia) =>
  (app as unknown as { getGlobalRoutes(): { method: string; path: string; hooks?: unknown }[] }).getGlobalRoutes()

/** `/api/v1/tasks/:task_id` as OpenAPI writes it. */
const toOpenApiPath = (path: string) => path.replace(/:([^/]+)/g, '{$1}')

/**
 * The plugin replaces a route's own `detail.parameters` and `detail.responses` with those it
 * derives from the route's schemas; routes that document more (the WebSocket route's query, the
 * SSE stream's body) get theirs back, merged over the derived ones.
 */
function restoreRouteDetails(app: AnyElysia, paths: Json): void {
  for (const route of globalRoutes(app)) {
    const detail = (route.hooks as Json | undefined)?.detail
    const operation = paths[toOpenApiPath(route.path)]?.[route.method.toLowerCase()]
    if (!detail || !operation) continue
    if (detail.parameters) operation.parameters = detail.parameters
    for (const [status, response] of Object.entries<Json>(detail.responses ?? {})) {
      const derived: Json = operation.responses?.[status] ?? {}
      const merged = { ...derived, ...response }
      if (derived.content && response.content) {
        merged.content = { ...derived.content }
        for (const [type, media] of Object.entries<Json>(response.content))
          merged.content[type] = { ...derived.content[type], ...media }
      }
      operation.responses = { ...operation.responses, [status]: merged }
    }
  }
}

/**
 * The app's OpenAPI 3.1 document. `documentation` holds the document's own fields (info, tags,
 * named schemas); routes under `exclude` (the docs themselves) are left out.
 */
export function openApiDocument(app: AnyElysia, documentation: Json, exclude: RegExp): Json {
  const { paths, components } = toOpenAPISchema(app, { paths: [exclude] }, undefined, undefined, OPENAPI_VERSION) as Json
  restoreRouteDetails(app, paths)
  const schemas = { ...components.schemas, ...documentation.components?.schemas }
  return {
    openapi: OPENAPI_VERSION,
    ...documentation,
    // Relative to the page's own origin: "Try it out" calls the server that serves the document.
    servers: [{ url: '/', description: 'This server' }],
    // In token mode every operation needs a bearer token, unless it says otherwise (`security: []`).
    security: [{ bearer: [] }],
    paths: Object.fromEntries(
      Object.entries<Json>(paths).map(([path, methods]) => [
        path,
        Object.fromEntries(
          Object.entries<Json>(methods).map(([method, operation]) => [method, completeOperation(path, operation)]),
        ),
      ]),
    ),
    components: {
      ...documentation.components,
      schemas: Object.fromEntries(Object.entries(schemas).map(([name, s]) => [name, toJsonSchema(s)])),
    },
  }
}
