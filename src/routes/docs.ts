import { Elysia, type AnyElysia } from 'elysia'
import type { TSchema } from '@sinclair/typebox'
import { globalRoutes, openApiDocument } from './docs-openapi'
// Embedded in a binary built with `bun build --compile`; served from node_modules otherwise.
import swaggerCss from 'swagger-ui-dist/swagger-ui.css' with { type: 'file' }
import swaggerBundle from 'swagger-ui-dist/swagger-ui-bundle.js' with { type: 'file' }
import {
  ClientAction,
  ErrorFrame,
  LogFrame,
  PingAction,
  PongFrame,
  ServerFrame,
  StatusChange,
  StatusFrame,
  SubscribeAction,
  SubscribedFrame,
  UnsubscribeAction,
  UnsubscribedFrame,
} from '../schemas/frames'
import { LogMessage } from '../schemas/log'

const asset = (path: string, type: string) =>
  new Response(Bun.file(path), { headers: { 'content-type': type, 'cache-control': 'public, max-age=86400' } })

// Swagger UI served from the installed swagger-ui-dist package, so the docs work with no internet access.
const page = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <meta name="viewport" content="width=device-width, initial-scale=1" />
  <title>tasklog API</title>
  <link rel="stylesheet" href="/swagger/assets/swagger-ui.css" />
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/swagger/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: '/swagger/json', dom_id: '#swagger-ui', deepLinking: true, validatorUrl: null })
  </script>
</body>
</html>`

/**
 * Named schemas for `components.schemas`. Routes' own schemas are inlined by the plugin; these
 * describe the WebSocket messages, which no route's request or response carries.
 */
const namedSchemas: Record<string, TSchema> = {
  LogMessage,
  StatusChange,
  ServerFrame,
  SubscribedFrame,
  UnsubscribedFrame,
  LogFrame,
  StatusFrame,
  PongFrame,
  ErrorFrame,
  ClientAction,
  PingAction,
  SubscribeAction,
  UnsubscribeAction,
}

/** The schemas as JSON, each one that contains another named one referring to it by `$ref`, so code generators name the types alike. */
const components = (schemas: Record<string, TSchema>) => {
  const refs = new Map(Object.entries(schemas).map(([name, schema]) => [schema, { $ref: `#/components/schemas/${name}` }]))
  const toJson = (schema: TSchema) => JSON.parse(JSON.stringify(schema, (key, value) => (key && refs.get(value)) || value))
  return Object.fromEntries(Object.entries(schemas).map(([name, schema]) => [name, toJson(schema)]))
}

/** The bearer scheme Swagger UI's "Authorize" fills in; each operation names its scope (auth/scopes.ts `requires`). */
const BEARER_SCHEME = {
  bearer: {
    type: 'http' as const,
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description:
      'Token mode (AUTH_SECRET set): a JWT from `bun run src/index.ts token` or POST /api/v1/tokens. Local mode answers loopback clients without one.',
  },
}

const documentation = {
  info: {
    title: 'tasklog',
    version: '0.1.0',
    description:
      'Real-time log streaming for distributed task execution. Workers POST log lines; watchers follow a task live over WebSocket (`/api/v1/ws/tasks/{task_id}/logs`) or Server-Sent Events.',
  },
  tags: [
    { name: 'tasks', description: 'Tasks and their decomposition into subtasks' },
    { name: 'subtasks', description: 'Subtask status and worker assignment' },
    { name: 'logs', description: 'Log ingest and history' },
    { name: 'stream', description: 'Live log streams' },
    { name: 'ops', description: 'Health, readiness and metrics' },
    { name: 'tokens', description: 'Minting narrower bearer tokens' },
  ],
  components: { schemas: components(namedSchemas), securitySchemes: BEARER_SCHEME },
}

/** Each app's document, made on its first request (its routes are all registered by then). */
const documents = new WeakMap<AnyElysia, { routes: number; document: object }>()

function documentOf(app: AnyElysia): object {
  const routes = globalRoutes(app).length
  let cached = documents.get(app)
  if (cached?.routes !== routes) {
    cached = { routes, document: openApiDocument(app, documentation, /^\/swagger/) }
    documents.set(app, cached)
  }
  return cached.document
}

/**
 * The listening apps by their server. This plugin is one object shared by every app that uses
 * it (tests start many in one process), so a request finds its own app through its server.
 */
const apps = new WeakMap<object, AnyElysia>()

const docs = new Elysia({ name: 'docs' })

/** `/swagger/json` describes the app that answers it, every route but these. */
export const docsRoutes = docs
  .onStart((app) => {
    if (app.server) apps.set(app.server, app)
  })
  .get('/swagger/json', ({ server }) => documentOf((server && apps.get(server)) ?? docs), { detail: { hide: true } })
  // Handlers, not Response values: Elysia hands a Response value to Bun as a static route, and
  // one Response object served by a server that has stopped is not served by the next app.
  .get('/swagger', () => new Response(page, { headers: { 'content-type': 'text/html; charset=utf-8' } }), {
    detail: { hide: true },
  })
  .get('/swagger/assets/swagger-ui.css', () => asset(swaggerCss, 'text/css; charset=utf-8'), { detail: { hide: true } })
  .get('/swagger/assets/swagger-ui-bundle.js', () => asset(swaggerBundle, 'text/javascript; charset=utf-8'), {
    detail: { hide: true },
  })
